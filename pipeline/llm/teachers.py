"""Teacher models (OpenAI, Claude) that write the assistant turns again from the same numbers.

- Several examples per request, answered as JSON ``{"answers": [{"id", "feedback"}]}``;
  a batch answer that cannot be parsed, or that misses an item, falls back to one
  request per missing example.
- At most ``concurrency`` requests in flight per teacher (a semaphore).
- 429 and 5xx answers and connection errors are retried with exponential backoff
  (the server's ``retry-after`` wins when it sends one); other errors stop at once.
- Every answer is cached on disk under a hash of the request, so a re-run sends
  nothing it has sent before.
- An answer is kept only when every number it quotes is in the example's user turn
  (or is the difference of two of them); the rest are counted as rejected.
- Usage (requests, retries, cache hits, tokens, estimated cost) is counted per teacher.

The API key is held by the SDK client only: it never enters a log line, an error
message, the cache or an output file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.config import DEFAULT_TEACHER_MODELS, TEACHER_KEYS, TEACHERS
from pipeline.errors import LLMError
from pipeline.llm.prompts import system_prompt
from pipeline.llm.validate import ungrounded_numbers
from pipeline.storage import atomic_write

logger = logging.getLogger(__name__)

PROVIDERS = TEACHERS
KEY_VARIABLES = TEACHER_KEYS
DEFAULT_MODELS = DEFAULT_TEACHER_MODELS
# List prices in USD per million tokens (input, output), for the cost estimate only.
# A model not listed gets no estimate; the longest matching prefix wins (dated snapshots).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-3-5-haiku": (0.80, 4.00),
}
TEACHER_TASK = (
    "\n\nYou are writing the answers of a training dataset. For each item, write the feedback a coach would give "
    "for that item's measurements, in two to five sentences. Quote numbers exactly as the measurements write "
    "them and use no other numbers."
)
BATCH_FORMAT = (
    ' Answer with JSON only, in the form {"answers": [{"id": "<item id>", "feedback": "<text>"}]}, '
    "with one answer for every item."
)
SINGLE_FORMAT = " Answer with the feedback text only."


def price_for(model: str) -> tuple[float, float] | None:
    matches = [name for name in PRICES_PER_MTOK if model == name or model.startswith(name + "-")]
    return PRICES_PER_MTOK[max(matches, key=len)] if matches else None


@dataclass(frozen=True)
class TeacherSettings:
    provider: str  # "openai" or "claude"
    model: str
    base_url: str | None = None
    batch_size: int = 8  # examples per request
    concurrency: int = 4  # requests in flight
    max_attempts: int = 5  # per request, the first one included
    backoff_s: float = 1.0  # first retry delay; doubles per attempt
    max_backoff_s: float = 30.0
    timeout_s: float = 120.0
    temperature: float = 0.7  # OpenAI only (the Claude API takes no sampling parameters)
    max_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider: expected one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if self.batch_size < 1 or self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("batch_size, concurrency and max_attempts must be >= 1")


@dataclass
class Usage:
    """What one teacher did and cost."""

    model: str
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    cache_hits: int = 0
    failed_requests: int = 0  # gave up after the last attempt
    batches: int = 0
    batch_fallbacks: int = 0  # batch answers that could not be used whole
    single_requests: int = 0
    answers: int = 0  # examples with a kept answer
    rejected: int = 0  # answers that quoted numbers the measurements do not hold
    unanswered: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    @property
    def cost_usd(self) -> float | None:
        price = price_for(self.model)
        if price is None:
            return None
        return (self.input_tokens * price[0] + self.output_tokens * price[1]) / 1e6

    def line(self) -> str:
        cost = self.cost_usd
        cost_text = f"about ${cost:.4f}" if cost is not None else f"no price known for {self.model}"
        return (
            f"{self.answers} answers kept, {self.rejected} rejected (ungrounded numbers), {self.unanswered} unanswered; "
            f"{self.requests} requests ({self.retries} retried, {self.failed_requests} failed), "
            f"{self.cache_hits} from the cache; {self.batches} batches, {self.batch_fallbacks} fell back to "
            f"{self.single_requests} single requests; {self.input_tokens} input + {self.output_tokens} output tokens, "
            f"{cost_text}"
        )

    def to_dict(self) -> dict:
        # not dataclasses.asdict: it deep-copies every field, and the lock cannot be copied
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        return data | {"cost_usd_estimate": self.cost_usd, "line": self.line()}


class ResponseCache:
    """Answers on disk, one JSON file per request hash."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(request: dict) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        path = self.folder / key[:2] / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, data: dict) -> None:
        path = self.folder / key[:2] / f"{key}.json"
        atomic_write(path, lambda fh: json.dump(data, fh, ensure_ascii=False), text=True)


class _GaveUp(Exception):
    """A request failed on its last attempt (the reason is one line)."""


def parse_batch_answer(text: str, ids: list[str]) -> dict[str, str]:
    """The usable answers of a batch: ``{id: feedback}`` for the ids asked about."""
    cleaned = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end < start:
        return {}
    try:
        data = json.loads(cleaned[start : end + 1])
    except json.JSONDecodeError:
        return {}
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(answers, list):
        return {}
    wanted = set(ids)
    found: dict[str, str] = {}
    for answer in answers:
        if not isinstance(answer, dict):
            continue
        key, feedback = answer.get("id"), answer.get("feedback")
        if key in wanted and isinstance(feedback, str) and feedback.strip() and key not in found:
            found[key] = feedback.strip()
    return found


class Teacher:
    """One provider and model; ``rewrite(items)`` -> kept answers by item id."""

    def __init__(self, settings: TeacherSettings, api_key: str, cache_dir: str | Path, sleep=time.sleep) -> None:
        self.settings = settings
        self.usage = Usage(settings.model)
        self.cache = ResponseCache(Path(cache_dir) / settings.provider)
        self._secret = api_key
        self._gate = threading.BoundedSemaphore(settings.concurrency)
        self._sleep = sleep
        self._abort: LLMError | None = None
        self.failures: list[str] = []  # "<item id>: <reason>" for examples left without an answer
        if settings.provider == "openai":
            import openai

            self._client = openai.OpenAI(
                api_key=api_key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s
            )
            self._errors = openai
        else:
            import anthropic

            self._client = anthropic.Anthropic(
                api_key=api_key, base_url=settings.base_url, max_retries=0, timeout=settings.timeout_s
            )
            self._errors = anthropic

    @property
    def name(self) -> str:
        return f"{self.settings.provider}:{self.settings.model}"

    # -- one request ---------------------------------------------------------------
    def _request(self, system: str, user: str, json_answer: bool) -> dict:
        s = self.settings
        if s.provider == "openai":
            request = {
                "model": s.model,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                "temperature": s.temperature,
                "max_tokens": s.max_tokens,
            }
            if json_answer:
                request["response_format"] = {"type": "json_object"}
            return request
        # No temperature: the pinned anthropic SDK (API version 2026-10-21) has no sampling parameters,
        # and ``messages.create(temperature=...)`` raises TypeError before anything is sent.
        return {
            "model": s.model,
            "system": system,
            "messages": [{"role": "user", "content": user}],
            "max_tokens": s.max_tokens,
        }

    def _send(self, request: dict) -> tuple[str, int, int]:
        if self.settings.provider == "openai":
            response = self._client.chat.completions.create(**request)
            text = response.choices[0].message.content or "" if response.choices else ""
            usage = response.usage
            return text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
        response = self._client.messages.create(**request)
        text = "".join(block.text for block in response.content if getattr(block, "type", "") == "text")
        return text, response.usage.input_tokens or 0, response.usage.output_tokens or 0

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _retry_after(self, exc: Exception) -> float | None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                return float(headers[name]) * scale
            except (KeyError, TypeError, ValueError):
                continue
        return None

    def complete(self, system: str, user: str, json_answer: bool = False) -> str:
        """The answer text, from the cache or the API (with retries)."""
        request = self._request(system, user, json_answer)
        key = ResponseCache.key({"provider": self.settings.provider, "base_url": self.settings.base_url, **request})
        cached = self.cache.get(key)
        if cached is not None:
            self.usage.add(cache_hits=1)
            return cached["text"]
        s, errors = self.settings, self._errors
        reason = "no attempt made"
        for attempt in range(1, s.max_attempts + 1):
            if self._abort is not None:
                raise self._abort
            try:
                with self._gate:
                    self.usage.add(requests=1)
                    text, tokens_in, tokens_out = self._send(request)
            except errors.APIStatusError as exc:
                status = exc.status_code
                if status in (401, 403):
                    variable = KEY_VARIABLES[s.provider]
                    self._abort = LLMError(f"{self.name}: the API refused the key (HTTP {status}); check {variable}")
                    raise self._abort from None
                if status != 429 and status < 500:
                    message = self._redact(str(getattr(exc, "message", "") or exc)).splitlines()[0]
                    self.usage.add(failed_requests=1)  # not retried: this attempt was the last
                    raise _GaveUp(f"HTTP {status}: {message}") from None
                reason = f"HTTP {status}" + (" (rate limited)" if status == 429 else " (server error)")
                wait = self._retry_after(exc)
            except errors.APIConnectionError as exc:  # timeouts included
                reason, wait = f"{type(exc).__name__}: {self._redact(str(exc))}", None
            else:
                self.usage.add(input_tokens=tokens_in, output_tokens=tokens_out)
                self.cache.put(key, {"request": request, "text": text, "usage": [tokens_in, tokens_out]})
                return text
            if attempt == s.max_attempts:
                break
            delay = wait if wait is not None else s.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
            delay = min(delay, s.max_backoff_s)
            logger.warning(
                "%s: %s; attempt %d of %d, next in %.2f s", self.name, reason, attempt, s.max_attempts, delay
            )
            self.usage.add(retries=1)
            self._sleep(delay)
        self.usage.add(failed_requests=1)
        raise _GaveUp(f"{reason} on all {s.max_attempts} attempts")

    # -- examples -------------------------------------------------------------------
    def rewrite(
        self, items: list[tuple[str, str]], sport: str, progress: Callable[[int], None] | None = None
    ) -> dict[str, str]:
        """``items``: (id, user turn). Returns the kept answers by id; ``self.failures`` lists what failed."""
        system = system_prompt(sport) + TEACHER_TASK
        user_text = dict(items)
        kept: dict[str, str] = {}
        lock = threading.Lock()
        batches = [items[i : i + self.settings.batch_size] for i in range(0, len(items), self.settings.batch_size)]

        def keep(item_id: str, text: str) -> None:
            if ungrounded_numbers(text, user_text[item_id]):
                self.usage.add(rejected=1)
                return
            with lock:
                kept[item_id] = text
            self.usage.add(answers=1)

        def run(batch: list[tuple[str, str]]) -> None:
            ids = [item_id for item_id, _ in batch]
            answers: dict[str, str] = {}
            self.usage.add(batches=1)
            try:
                body = json.dumps({"items": [{"id": i, "measurements": t} for i, t in batch]}, ensure_ascii=False)
                answers = parse_batch_answer(self.complete(system + BATCH_FORMAT, body, json_answer=True), ids)
            except _GaveUp as exc:
                logger.warning("%s: a batch of %d failed (%s); asking one by one", self.name, len(batch), exc)
            missing = [item for item in batch if item[0] not in answers]
            if missing:
                self.usage.add(batch_fallbacks=1)
            for item_id, _ in batch:
                if item_id in answers:
                    keep(item_id, answers[item_id])
            for item_id, text in missing:
                self.usage.add(single_requests=1)
                try:
                    answer = self.complete(system + SINGLE_FORMAT, text).strip()
                except _GaveUp as exc:
                    self.usage.add(unanswered=1)
                    with lock:
                        self.failures.append(f"{item_id}: {exc}")
                    continue
                if answer:
                    keep(item_id, answer)
                else:
                    self.usage.add(unanswered=1)
            if progress is not None:
                progress(len(batch))

        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="teacher") as pool:
            for future in [pool.submit(run, batch) for batch in batches]:
                future.result()
        return kept

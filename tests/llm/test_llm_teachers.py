"""The teacher models (OpenAI, Claude) and OpenAI fine-tuning, against the fake API server over real HTTP."""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_server import FakeLLMServer

from pipeline.errors import LLMError
from pipeline.llm.openai_finetune import openai_finetune
from pipeline.llm.prompts import system_prompt
from pipeline.llm.teachers import (
    BATCH_FORMAT,
    SINGLE_FORMAT,
    TEACHER_TASK,
    ResponseCache,
    Teacher,
    TeacherSettings,
    Usage,
    parse_batch_answer,
    price_for,
)
from pipeline.llm.validate import OPENAI_MIN_EXAMPLES, ungrounded_numbers

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
SPORT = "squat"
NUMBER = re.compile(r"\d+(?:\.\d+)?")


# -- data ------------------------------------------------------------------------------------------


def measurements(k: int) -> str:
    """A user turn as ``pipeline.llm.prompts.user_turn`` writes it for a squat window (numbers vary with k)."""
    rng = random.Random(1000 + k)
    start = 1.2 + 2.4 * k
    end = start + 3.6
    frames = rng.randint(70, 110)
    left_knee, right_knee = rng.randint(84, 112), rng.randint(84, 112)
    left_hip, right_hip = rng.randint(60, 90), rng.randint(60, 90)
    tops = [rng.randint(160, 178) for _ in range(4)]
    lows = [start + rng.uniform(0.5, 3.0) for _ in range(4)]
    speed_mean = rng.uniform(0.10, 0.30)
    return (
        f"Sport: squat. Segment: window, person {k % 2}, {start:.2f} s to {end:.2f} s.\n"
        f"Seen in {frames} frames ({rng.randint(80, 99)}% of the analysed frames), "
        f"mean landmark visibility {rng.uniform(0.7, 0.97):.2f}.\n"
        "Joint angles in degrees, lowest-highest: "
        f"left knee {left_knee}-{tops[0]} (range {tops[0] - left_knee}, lowest at {lows[0]:.2f} s); "
        f"right knee {right_knee}-{tops[1]} (range {tops[1] - right_knee}, lowest at {lows[1]:.2f} s); "
        f"left hip {left_hip}-{tops[2]} (range {tops[2] - left_hip}, lowest at {lows[2]:.2f} s); "
        f"right hip {right_hip}-{tops[3]} (range {tops[3] - right_hip}, lowest at {lows[3]:.2f} s).\n"
        f"Centre of mass: speed mean {speed_mean:.2f}, peak {speed_mean + rng.uniform(0.2, 0.6):.2f} body heights/s.\n"
        f"Events: {rng.randint(2, 5)} repetitions."
    )


def make_items(n: int = 20) -> list[tuple[str, str]]:
    return [(f"clip{k // 5:02d}-seg{k % 5}", measurements(k)) for k in range(n)]


ITEMS = make_items()
IDS = [item_id for item_id, _ in ITEMS]
TEXT = dict(ITEMS)


def batch_feedback(text: str) -> str:
    """What the fake coach writes for one item of a batch: two numbers quoted from the measurements."""
    low, high = re.search(r"left knee (\d+)-(\d+)", text).groups()
    return f"Your left knee bent to {low} degrees and straightened to {high}. Keep that depth on every repetition."


def single_feedback(text: str) -> str:
    frames = re.search(r"Seen in (\d+) frames", text).group(1)
    return f"Over {frames} frames the squat looked steady; sit a little deeper next time."


# -- the fake coach behind the server ---------------------------------------------------------------


def _content(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(block.get("text", "") for block in value if isinstance(block, dict))
    return ""


class Coach:
    """A responder that speaks the teacher protocol, with knobs to misbehave."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict] = []  # {"provider", "kind", "system", "ids" | "text", "body"}
        self.broken_batches_with: set[str] = set()  # batches holding one of these ids get broken JSON
        self.leave_out: set[str] = set()  # ids left out of batch answers
        self.ungrounded: set[str] = set()  # ids whose batch answer adds a number the measurements lack
        self.delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    def __call__(self, provider: str, body: dict) -> str:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            return self._answer(provider, body)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, provider: str, body: dict) -> str:
        messages = body["messages"]
        if provider == "anthropic":
            system = _content(body.get("system"))
        else:
            assert messages[0]["role"] == "system"
            system = _content(messages[0]["content"])
        user = _content(messages[-1]["content"])
        try:
            request = json.loads(user)
        except ValueError:
            request = None
        if isinstance(request, dict) and "items" in request:
            ids = [item["id"] for item in request["items"]]
            with self.lock:
                self.calls.append({"provider": provider, "kind": "batch", "system": system, "ids": ids, "body": body})
            if self.broken_batches_with & set(ids):
                return '{"answers": [{"id": "' + ids[0] + '", "feedback": "Your knee'
            answers = []
            for item in request["items"]:
                if item["id"] in self.leave_out:
                    continue
                feedback = batch_feedback(item["measurements"])
                if item["id"] in self.ungrounded:
                    feedback += " Next time aim for 95 degrees."
                answers.append({"id": item["id"], "feedback": feedback})
            return json.dumps({"answers": answers})
        with self.lock:
            self.calls.append({"provider": provider, "kind": "single", "system": system, "text": user, "body": body})
        return single_feedback(user)

    def of_kind(self, kind: str) -> list[dict]:
        return [call for call in self.calls if call["kind"] == kind]


@pytest.fixture
def coach() -> Coach:
    return Coach()


@pytest.fixture
def server(coach: Coach) -> Iterator[FakeLLMServer]:
    with FakeLLMServer(responder=coach) as srv:
        yield srv


# Settings both teachers share in these tests (fast backoff, a short timeout).
COMMON_SETTINGS = dict(batch_size=8, concurrency=2, max_attempts=3, backoff_s=0.1, timeout_s=10.0)


def openai_settings(server: FakeLLMServer, **changes) -> TeacherSettings:
    values = dict(provider="openai", model="gpt-4.1-mini", base_url=server.openai_base_url, **COMMON_SETTINGS)
    return TeacherSettings(**(values | changes))


def claude_settings(server: FakeLLMServer, **changes) -> TeacherSettings:
    values = dict(provider="claude", model="claude-haiku-4-5", base_url=server.anthropic_base_url, **COMMON_SETTINGS)
    return TeacherSettings(**(values | changes))


class Sleeps(list):
    """A ``sleep`` that records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# -- happy path --------------------------------------------------------------------------------------


def test_openai_batches_answers_and_usage(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    sleeps, progress = Sleeps(), []
    teacher = Teacher(openai_settings(server), server.openai_key, tmp_path / "cache", sleep=sleeps)
    kept = teacher.rewrite(ITEMS, SPORT, progress=progress.append)

    assert kept == {item_id: batch_feedback(text) for item_id, text in ITEMS}
    assert teacher.failures == []
    assert sorted(progress) == [4, 8, 8]
    assert sleeps == []
    assert server.count(CHAT) == 3
    batches = coach.of_kind("batch")
    assert sorted(call["ids"] for call in batches) == sorted([IDS[0:8], IDS[8:16], IDS[16:20]])
    assert coach.of_kind("single") == []
    for call in batches:
        assert call["system"] == system_prompt(SPORT) + TEACHER_TASK + BATCH_FORMAT
        assert call["body"]["model"] == "gpt-4.1-mini"
        assert call["body"]["response_format"] == {"type": "json_object"}
        assert (call["body"]["temperature"], call["body"]["max_tokens"]) == (0.7, 4096)
        sent = json.loads(call["body"]["messages"][1]["content"])
        assert sent == {"items": [{"id": i, "measurements": TEXT[i]} for i in call["ids"]]}

    usage = teacher.usage
    assert (usage.requests, usage.batches, usage.answers) == (3, 3, 20)
    assert (usage.retries, usage.cache_hits, usage.failed_requests) == (0, 0, 0)
    assert (usage.batch_fallbacks, usage.single_requests, usage.rejected, usage.unanswered) == (0, 0, 0, 0)
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cost_usd == pytest.approx((usage.input_tokens * 0.40 + usage.output_tokens * 1.60) / 1e6)
    summary = usage.to_dict()
    assert summary["cost_usd_estimate"] == usage.cost_usd
    assert summary["line"].startswith("20 answers kept, 0 rejected (ungrounded numbers), 0 unanswered; 3 requests")
    assert "_lock" not in summary

    unknown = Teacher(openai_settings(server, model="acme-coach-1"), server.openai_key, tmp_path / "cache")
    assert len(unknown.rewrite(ITEMS[:3], SPORT)) == 3
    assert unknown.usage.input_tokens > 0
    assert unknown.usage.cost_usd is None
    assert unknown.usage.to_dict()["cost_usd_estimate"] is None
    assert "no price known for acme-coach-1" in unknown.usage.line()


def test_price_for_and_settings() -> None:
    assert price_for("gpt-4.1-mini") == (0.40, 1.60)
    assert price_for("gpt-4.1-mini-2025-04-14") == (0.40, 1.60)  # a dated snapshot: the longest prefix wins
    assert price_for("gpt-4.1-2025-04-14") == (2.00, 8.00)
    assert price_for("gpt-4o-mini") == (0.15, 0.60)
    assert price_for("claude-sonnet-4-5-20250929") == (3.00, 15.00)
    assert price_for("ft:gpt-4.1-mini:org::abc123") is None
    assert price_for("gpt-4.1mini") is None
    assert Usage("gpt-4o", input_tokens=1_000_000, output_tokens=500_000).cost_usd == pytest.approx(7.50)
    with pytest.raises(ValueError, match="provider"):
        TeacherSettings(provider="gemini", model="x")
    with pytest.raises(ValueError, match="batch_size"):
        TeacherSettings(provider="openai", model="x", batch_size=0)


# -- retries -----------------------------------------------------------------------------------------


def test_rate_limit_and_server_error_are_retried(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    server.fail_next(CHAT, 429, retry_after_ms=250)
    server.fail_next(CHAT, 500, retry_after_ms=None)  # no retry-after: exponential backoff with jitter
    sleeps = Sleeps()
    settings = openai_settings(server, concurrency=1, backoff_s=0.1)
    teacher = Teacher(settings, server.openai_key, tmp_path / "cache", sleep=sleeps)
    kept = teacher.rewrite(ITEMS, SPORT)

    assert kept == {item_id: batch_feedback(text) for item_id, text in ITEMS}
    assert server.count(CHAT) == 3 + 2
    assert [r.status for r in server.requests] == [429, 500, 200, 200, 200]
    assert len(sleeps) == 2
    assert sleeps[0] == pytest.approx(0.25)  # retry-after-ms (250) wins over retry-after (1 s)
    assert 0.1 <= sleeps[1] <= 0.2  # second attempt: backoff_s * 2 * [0.5, 1]
    usage = teacher.usage
    assert (usage.requests, usage.retries, usage.failed_requests, usage.answers) == (5, 2, 0, 20)
    assert usage.batch_fallbacks == 0


def test_retry_after_is_capped(server: FakeLLMServer, tmp_path: Path) -> None:
    server.fail_next(CHAT, 429, retry_after_ms=60_000)
    sleeps = Sleeps()
    settings = openai_settings(server, concurrency=1, max_backoff_s=0.5)
    teacher = Teacher(settings, server.openai_key, tmp_path / "cache", sleep=sleeps)
    assert len(teacher.rewrite(ITEMS[:4], SPORT)) == 4
    assert sleeps == [0.5]


def test_exhausted_retries_are_counted_not_raised(
    server: FakeLLMServer, coach: Coach, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 3 x 503 fail the first batch on every attempt, 3 more fail the first single request as well.
    server.fail_next(CHAT, 503, times=6, retry_after_ms=None)
    sleeps = Sleeps()
    settings = openai_settings(server, concurrency=1, max_attempts=3, backoff_s=0.1)
    teacher = Teacher(settings, server.openai_key, tmp_path / "cache", sleep=sleeps)
    with caplog.at_level(logging.WARNING, logger="pipeline.llm.teachers"):
        kept = teacher.rewrite(ITEMS, SPORT)

    first = IDS[0]
    assert set(kept) == set(IDS) - {first}
    assert all(kept[i] == single_feedback(TEXT[i]) for i in IDS[1:8])  # the rest of the failed batch, one by one
    assert all(kept[i] == batch_feedback(TEXT[i]) for i in IDS[8:])
    assert teacher.failures == [f"{first}: HTTP 503 (server error) on all 3 attempts"]
    assert [call["text"] for call in coach.of_kind("single")] == [TEXT[i] for i in IDS[1:8]]
    assert all(
        call["system"] == system_prompt(SPORT) + TEACHER_TASK + SINGLE_FORMAT for call in coach.of_kind("single")
    )
    assert server.count(CHAT) == 3 + 3 + 7 + 2
    usage = teacher.usage
    assert (usage.requests, usage.retries, usage.failed_requests) == (15, 4, 2)
    assert (usage.batches, usage.batch_fallbacks, usage.single_requests) == (3, 1, 8)
    assert (usage.answers, usage.unanswered, usage.rejected) == (19, 1, 0)
    assert len(sleeps) == 4
    assert 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2  # backoff doubles per attempt
    assert 0.05 <= sleeps[2] <= 0.1 and 0.1 <= sleeps[3] <= 0.2
    assert "a batch of 8 failed (HTTP 503 (server error) on all 3 attempts); asking one by one" in caplog.text


def test_client_error_is_not_retried(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    server.fail_next(CHAT, 400, message="This model's maximum context length is exceeded.")
    sleeps = Sleeps()
    teacher = Teacher(openai_settings(server, concurrency=1), server.openai_key, tmp_path / "cache", sleep=sleeps)
    kept = teacher.rewrite(ITEMS, SPORT)

    assert set(kept) == set(IDS)
    assert sleeps == []
    assert server.count(CHAT) == 1 + 8 + 2
    usage = teacher.usage
    assert (usage.requests, usage.retries, usage.failed_requests) == (11, 0, 1)
    assert (usage.batch_fallbacks, usage.single_requests, usage.answers) == (1, 8, 20)


def test_connection_errors_are_retried_then_counted(tmp_path: Path) -> None:
    with FakeLLMServer() as gone:
        base_url, key = gone.openai_base_url, gone.openai_key
    sleeps = Sleeps()
    settings = TeacherSettings(
        provider="openai", model="gpt-4.1-mini", base_url=base_url, batch_size=8, max_attempts=2, timeout_s=5.0
    )
    teacher = Teacher(settings, key, tmp_path / "cache", sleep=sleeps)
    kept = teacher.rewrite(ITEMS[:3], SPORT)

    assert kept == {}
    assert len(teacher.failures) == 3
    assert all("APIConnectionError" in failure and "on all 2 attempts" in failure for failure in teacher.failures)
    usage = teacher.usage
    assert (usage.requests, usage.retries, usage.failed_requests) == (8, 4, 4)
    assert (usage.single_requests, usage.unanswered, usage.answers) == (3, 3, 0)
    assert len(sleeps) == 4


# -- batch answers that cannot be used whole ---------------------------------------------------------


def test_malformed_batch_answer_falls_back_to_single_requests(
    server: FakeLLMServer, coach: Coach, tmp_path: Path
) -> None:
    coach.broken_batches_with = {IDS[0]}
    teacher = Teacher(openai_settings(server), server.openai_key, tmp_path / "cache", sleep=Sleeps())
    kept = teacher.rewrite(ITEMS, SPORT)

    assert set(kept) == set(IDS)
    assert all(kept[i] == single_feedback(TEXT[i]) for i in IDS[:8])
    assert all(kept[i] == batch_feedback(TEXT[i]) for i in IDS[8:])
    assert sorted(call["text"] for call in coach.of_kind("single")) == sorted(TEXT[i] for i in IDS[:8])
    assert all("response_format" not in call["body"] for call in coach.of_kind("single"))
    usage = teacher.usage
    assert (usage.batch_fallbacks, usage.single_requests, usage.answers, usage.requests) == (1, 8, 20, 11)
    assert server.count(CHAT) == 11


def test_batch_answer_missing_one_id(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    missing = IDS[11]
    coach.leave_out = {missing}
    teacher = Teacher(openai_settings(server), server.openai_key, tmp_path / "cache", sleep=Sleeps())
    kept = teacher.rewrite(ITEMS, SPORT)

    assert [call["text"] for call in coach.of_kind("single")] == [TEXT[missing]]
    assert kept[missing] == single_feedback(TEXT[missing])
    assert all(kept[i] == batch_feedback(TEXT[i]) for i in IDS if i != missing)
    usage = teacher.usage
    assert (usage.batch_fallbacks, usage.single_requests, usage.answers, usage.requests) == (1, 1, 20, 4)


def test_ungrounded_answer_is_rejected(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    bad = IDS[14]  # most items hold 95 as a difference of two numbers; this one does not
    assert ungrounded_numbers("Next time aim for 95 degrees.", TEXT[bad]) == ["95"]
    coach.ungrounded = {bad}
    teacher = Teacher(openai_settings(server), server.openai_key, tmp_path / "cache", sleep=Sleeps())
    kept = teacher.rewrite(ITEMS, SPORT)

    assert bad not in kept
    assert set(kept) == set(IDS) - {bad}
    usage = teacher.usage
    assert (usage.rejected, usage.answers, usage.unanswered) == (1, 19, 0)
    assert (usage.batch_fallbacks, usage.single_requests) == (0, 0)  # a rejected answer is not asked again
    assert teacher.failures == []


def test_derived_numbers_are_grounded() -> None:
    text = TEXT[IDS[0]]
    low, high = (int(n) for n in re.search(r"left knee (\d+)-(\d+)", text).groups())
    assert ungrounded_numbers(f"You moved through {high - low} degrees.", text) == []
    assert ungrounded_numbers("You moved through 9999 degrees.", text) == ["9999"]
    assert ungrounded_numbers(f"You moved through {high - low} degrees.", text, derived=False) == []  # range printed


# -- cache -------------------------------------------------------------------------------------------


def test_cache_answers_a_rerun_without_requests(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    coach.leave_out = {IDS[3]}  # so a single request is cached too
    cache = tmp_path / "cache"
    first = Teacher(openai_settings(server), server.openai_key, cache, sleep=Sleeps())
    kept = first.rewrite(ITEMS, SPORT)
    assert len(kept) == 20
    sent = server.count(CHAT)
    assert sent == 4
    files = sorted(p for p in cache.rglob("*.json"))
    assert len(files) == 4
    assert all(p.parent.parent == cache / "openai" and p.parent.name == p.stem[:2] for p in files)
    stored = json.loads(files[0].read_text(encoding="utf-8"))
    assert set(stored) == {"request", "text", "usage"}

    second = Teacher(openai_settings(server), server.openai_key, cache, sleep=Sleeps())
    assert second.rewrite(ITEMS, SPORT) == kept
    assert server.count(CHAT) == sent
    usage = second.usage
    assert (usage.cache_hits, usage.requests, usage.answers) == (4, 0, 20)
    assert (usage.batch_fallbacks, usage.single_requests) == (1, 1)
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)
    assert usage.cost_usd == 0

    other_model = Teacher(openai_settings(server, model="gpt-4.1-nano"), server.openai_key, cache, sleep=Sleeps())
    assert len(other_model.rewrite(ITEMS, SPORT)) == 20
    assert (other_model.usage.cache_hits, other_model.usage.requests) == (0, 4)
    assert server.count(CHAT) == sent + 4


def test_cache_key_and_unreadable_entry(tmp_path: Path) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "knee 92"}], "temperature": 0.7}
    assert ResponseCache.key(request) == ResponseCache.key(dict(reversed(request.items())))
    assert ResponseCache.key(request) != ResponseCache.key(request | {"temperature": 0.2})
    cache = ResponseCache(tmp_path)
    key = ResponseCache.key(request)
    assert cache.get(key) is None
    cache.put(key, {"text": "Deep squat at 92."})
    assert cache.get(key) == {"text": "Deep squat at 92."}
    (tmp_path / key[:2] / f"{key}.json").write_text('{"text": ', encoding="utf-8")
    assert cache.get(key) is None


# -- concurrency -------------------------------------------------------------------------------------


def test_concurrency_limits_requests_in_flight(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    coach.delay_s = 0.2
    items = make_items(24)
    teacher = Teacher(openai_settings(server, batch_size=4, concurrency=2), server.openai_key, tmp_path / "c")
    started = time.monotonic()
    kept = teacher.rewrite(items, SPORT)
    elapsed = time.monotonic() - started

    assert len(kept) == 24
    assert server.count(CHAT) == 6
    assert coach.max_in_flight == 2
    assert elapsed < 6 * 0.2  # the batches did overlap


# -- Claude ------------------------------------------------------------------------------------------


def test_claude_retries_and_answers(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    server.fail_next(MESSAGES, 429, retry_after_ms=120)
    server.fail_next(MESSAGES, 529, retry_after_ms=80)
    sleeps = Sleeps()
    teacher = Teacher(claude_settings(server, concurrency=1), server.anthropic_key, tmp_path / "cache", sleep=sleeps)
    kept = teacher.rewrite(ITEMS, SPORT)

    assert kept == {item_id: batch_feedback(text) for item_id, text in ITEMS}
    assert server.count(MESSAGES) == 5
    assert server.count(CHAT) == 0
    assert [r.status for r in server.requests] == [429, 529, 200, 200, 200]
    assert sleeps == [pytest.approx(0.12), pytest.approx(0.08)]
    for call in coach.of_kind("batch"):
        assert call["provider"] == "anthropic"
        assert call["system"] == system_prompt(SPORT) + TEACHER_TASK + BATCH_FORMAT
        assert [m["role"] for m in call["body"]["messages"]] == ["user"]
        assert call["body"]["model"] == "claude-haiku-4-5"
        assert call["body"]["max_tokens"] == 4096
        assert "temperature" not in call["body"]  # API version 2026-10-21 has no sampling parameters
    usage = teacher.usage
    assert (usage.requests, usage.retries, usage.answers, usage.failed_requests) == (5, 2, 20, 0)
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cost_usd == pytest.approx((usage.input_tokens * 1.00 + usage.output_tokens * 5.00) / 1e6)
    assert list((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / "claude"]


def test_claude_fallback_to_single_requests(server: FakeLLMServer, coach: Coach, tmp_path: Path) -> None:
    coach.broken_batches_with = {IDS[19]}
    teacher = Teacher(claude_settings(server), server.anthropic_key, tmp_path / "cache", sleep=Sleeps())
    kept = teacher.rewrite(ITEMS, SPORT)
    assert set(kept) == set(IDS)
    assert all(kept[i] == single_feedback(TEXT[i]) for i in IDS[16:])
    assert (teacher.usage.batch_fallbacks, teacher.usage.single_requests) == (1, 4)
    assert all(call["system"].endswith(SINGLE_FORMAT) for call in coach.of_kind("single"))


@pytest.mark.parametrize(
    ("provider", "variable", "wrong_key"),
    [
        ("claude", "ANTHROPIC_API_KEY", "sk-ant-wrong-9f8e7d6c5b4a"),
        ("openai", "OPENAI_API_KEY", "sk-wrong-1a2b3c4d5e6f"),
    ],
)
def test_refused_key_aborts_without_the_key(
    server: FakeLLMServer, tmp_path: Path, provider: str, variable: str, wrong_key: str
) -> None:
    settings = (claude_settings if provider == "claude" else openai_settings)(server, batch_size=2, concurrency=2)
    teacher = Teacher(settings, wrong_key, tmp_path / "cache", sleep=Sleeps())
    with pytest.raises(LLMError) as caught:
        teacher.rewrite(ITEMS, SPORT)  # 10 batches

    message = str(caught.value)
    assert variable in message
    assert "HTTP 401" in message
    assert wrong_key not in message and wrong_key not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert 1 <= len(server.requests) <= 2  # at most the requests already in flight: the run stops
    assert all(r.status == 401 for r in server.requests)
    assert teacher.usage.retries == 0


def test_forbidden_key_also_aborts(server: FakeLLMServer, tmp_path: Path) -> None:
    server.fail_next(CHAT, 403, retry_after_ms=None)
    teacher = Teacher(openai_settings(server, concurrency=1), server.openai_key, tmp_path / "cache", sleep=Sleeps())
    with pytest.raises(LLMError, match="HTTP 403.*OPENAI_API_KEY"):
        teacher.rewrite(ITEMS, SPORT)
    assert server.count(CHAT) == 1


# -- no key leaks ------------------------------------------------------------------------------------


def test_keys_never_reach_logs_or_cache(
    server: FakeLLMServer, coach: Coach, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "anthropic", "httpx", "httpx2", "httpcore", "pipeline"):
        caplog.set_level(logging.DEBUG, logger=name)
    cache = tmp_path / "cache"
    coach.leave_out = {IDS[2]}
    server.fail_next(CHAT, 429, retry_after_ms=5)
    server.fail_next(MESSAGES, 529, retry_after_ms=5)
    wrong_openai, wrong_claude = "sk-wrong-openai-77aa88bb", "sk-ant-wrong-99cc00dd"

    for settings, key in (
        (openai_settings(server), server.openai_key),
        (claude_settings(server), server.anthropic_key),
    ):
        teacher = Teacher(settings, key, cache, sleep=Sleeps())
        assert len(teacher.rewrite(ITEMS, SPORT)) == 20
        assert teacher.usage.retries == 1
        assert key not in teacher.usage.line() and key not in json.dumps(teacher.usage.to_dict())
    for settings, key in (
        (openai_settings(server, model="x-1"), wrong_openai),
        (claude_settings(server), wrong_claude),
    ):
        with pytest.raises(LLMError) as caught:
            Teacher(settings, key, cache, sleep=Sleeps()).rewrite(make_items(21)[20:], SPORT)
        assert key not in str(caught.value)

    # The keys were really sent (so the checks below mean something) ...
    sent = [r.headers.get("authorization", "") for r in server.requests]
    for key in (server.openai_key, server.anthropic_key, wrong_openai, wrong_claude):
        assert f"Bearer {key}" in sent
    # ... and the SDKs' debug logging really was on.
    assert any(r.name.startswith("openai") and r.levelno == logging.DEBUG for r in caplog.records)
    assert any(r.name.startswith("anthropic") and r.levelno == logging.DEBUG for r in caplog.records)
    assert "rate limited" in caplog.text and "server error" in caplog.text

    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 2 * 4
    for key in (server.openai_key, server.anthropic_key, wrong_openai, wrong_claude):
        assert key not in caplog.text
        assert all(record.getMessage().find(key) < 0 for record in caplog.records)
        for path in files:
            assert key.encode() not in path.read_bytes(), path


# -- parse_batch_answer ------------------------------------------------------------------------------


def test_parse_batch_answer_cases() -> None:
    ids = ["a", "b", "c"]
    plain = json.dumps({"answers": [{"id": "a", "feedback": "Deep at 92."}, {"id": "b", "feedback": "Even."}]})
    assert parse_batch_answer(plain, ids) == {"a": "Deep at 92.", "b": "Even."}
    assert parse_batch_answer(f"```json\n{plain}\n```", ids) == {"a": "Deep at 92.", "b": "Even."}
    assert parse_batch_answer(f"```\n{plain}\n```\n", ids) == {"a": "Deep at 92.", "b": "Even."}
    assert parse_batch_answer(f"Here are the answers:\n{plain}\nHope this helps!", ids) == {
        "a": "Deep at 92.",
        "b": "Even.",
    }
    duplicate = {"answers": [{"id": "a", "feedback": "First."}, {"id": "a", "feedback": "Second."}]}
    assert parse_batch_answer(json.dumps(duplicate), ids) == {"a": "First."}
    unknown = {"answers": [{"id": "z", "feedback": "Who?"}, {"id": "c", "feedback": "  Padded.  "}]}
    assert parse_batch_answer(json.dumps(unknown), ids) == {"c": "Padded."}
    odd = {
        "answers": [
            {"id": "a", "feedback": 92},
            {"id": "b", "feedback": None},
            {"id": "c", "feedback": ["list"]},
            {"id": "a", "feedback": "   "},
            "not an object",
            {"feedback": "no id"},
            {"id": "b", "feedback": "Kept."},
        ]
    }
    assert parse_batch_answer(json.dumps(odd), ids) == {"b": "Kept."}
    for broken in ("", "no json here", '{"answers": [', "[1, 2]", '{"answer": []}', '{"answers": {"a": "x"}}', "}{"):
        assert parse_batch_answer(broken, ids) == {}, broken


# -- OpenAI fine-tuning ------------------------------------------------------------------------------


def write_examples(path: Path, n: int) -> Path:
    rows = []
    for item_id, text in make_items(n):
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": system_prompt(SPORT)},
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": batch_feedback(text) + f" ({item_id})"},
                ]
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_openai_finetune_uploads_creates_and_follows_the_job(server: FakeLLMServer, tmp_path: Path) -> None:
    train = write_examples(tmp_path / "train.jsonl", 12)
    val = write_examples(tmp_path / "val.jsonl", 3)
    out = tmp_path / "llm_models"
    sleeps, said = Sleeps(), []
    record = openai_finetune(
        train,
        val,
        out,
        api_key=server.openai_key,
        base_model="gpt-4o-mini-2024-07-18",
        base_url=server.openai_base_url,
        poll_s=0,
        suffix="squat-coach",
        seed=7,
        progress=said.append,
        sleep=sleeps,
    )

    assert len(server.files) == 2
    uploads = {name: (purpose, content) for name, purpose, content in server.files.values()}
    assert uploads == {"train.jsonl": ("fine-tune", train.read_bytes()), "val.jsonl": ("fine-tune", val.read_bytes())}
    assert list(server.jobs) == [record["job_id"]]
    job = server.jobs[record["job_id"]]
    assert (job["model"], job["suffix"], job["seed"]) == ("gpt-4o-mini-2024-07-18", "squat-coach", 7)
    assert job["training_file"] == record["training_file"] and server.files[job["training_file"]][0] == "train.jsonl"
    assert (
        job["validation_file"] == record["validation_file"] and server.files[job["validation_file"]][0] == "val.jsonl"
    )

    assert record["status"] == "succeeded"
    assert record["fine_tuned_model"] == job["fine_tuned_model"]
    assert record["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18:")
    assert record["train_examples"] == 12
    assert record["trained_tokens"] == job["trained_tokens"] > 0
    assert sleeps == [0, 0, 0]  # three polls: queued, running, succeeded
    messages = [event["message"] for event in record["events"]]
    assert messages == [
        f"Created fine-tuning job: {record['job_id']}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
        f"New fine-tuned model created: {record['fine_tuned_model']}",
    ]
    path = out / f"openai-{record['job_id']}.json"
    assert record["record"] == str(path)
    assert json.loads(path.read_text(encoding="utf-8")) == record
    assert [p.name for p in out.iterdir()] == [path.name]  # no temporary files left
    assert any("created on gpt-4o-mini-2024-07-18" in line for line in said)
    assert server.openai_key not in path.read_text(encoding="utf-8")


def test_openai_finetune_without_waiting(server: FakeLLMServer, tmp_path: Path) -> None:
    train = write_examples(tmp_path / "train.jsonl", OPENAI_MIN_EXAMPLES)
    sleeps = Sleeps()
    record = openai_finetune(
        train,
        tmp_path / "no-val.jsonl",  # absent: no validation file
        tmp_path / "out",
        api_key=server.openai_key,
        base_url=server.openai_base_url,
        wait=False,
        sleep=sleeps,
        progress=lambda _: None,
    )
    assert record["status"] not in ("succeeded", "failed", "cancelled")
    assert record["validation_file"] is None and len(server.files) == 1
    assert record["events"] == [] and sleeps == []
    assert server.count(f"/v1/fine_tuning/jobs/{record['job_id']}", "GET") == 0
    saved = json.loads((tmp_path / "out" / f"openai-{record['job_id']}.json").read_text(encoding="utf-8"))
    assert saved["status"] == record["status"] and saved["fine_tuned_model"] is None


def test_openai_finetune_refuses_a_small_training_file(server: FakeLLMServer, tmp_path: Path) -> None:
    train = write_examples(tmp_path / "train.jsonl", OPENAI_MIN_EXAMPLES - 1)
    val = write_examples(tmp_path / "val.jsonl", 3)
    with pytest.raises(LLMError, match=f"at least {OPENAI_MIN_EXAMPLES} needed"):
        openai_finetune(
            train, val, tmp_path / "out", api_key=server.openai_key, base_url=server.openai_base_url, sleep=Sleeps()
        )
    assert server.requests == []
    assert server.files == {} and server.jobs == {}
    assert not (tmp_path / "out").exists()

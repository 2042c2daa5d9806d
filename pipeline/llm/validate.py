"""Checks on chat-format JSONL before anything is uploaded or trained, and the
number-grounding check shared by the tests and the teacher answers."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = {"role", "content", "name", "weight"}
TOP_KEYS = {"messages", "tools", "parallel_tool_calls"}
OPENAI_MIN_EXAMPLES = 10  # OpenAI fine-tuning refuses smaller training files
MAX_EXAMPLE_TOKENS = 16_384  # the smallest context among the fine-tunable models
CHARS_PER_TOKEN = 4.0  # estimate for English text and numbers
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def example_tokens(example: dict) -> int:
    """Estimated tokens of one example: its texts plus a few per message for the chat format."""
    return sum(estimate_tokens(m.get("content") or "") + 4 for m in example.get("messages", [])) + 2


@dataclass
class ValidationReport:
    path: str
    examples: int = 0
    tokens: int = 0
    assistant_tokens: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def first_errors(self, n: int = 3) -> str:
        more = f" (and {len(self.errors) - n} more)" if len(self.errors) > n else ""
        return "; ".join(self.errors[:n]) + more


def check_chat_example(data: object) -> str | None:
    """What is wrong with one parsed line of chat JSONL, or None when it is a valid example.

    The one definition of a valid example, shared by the validator and the local trainer: an object with a
    non-empty ``messages`` list of known roles with text content, an optional system prompt first, then user and
    assistant turns alternating, starting with the user and ending with the assistant's answer.
    """
    if not isinstance(data, dict):
        return "not a JSON object"
    unknown = set(data) - TOP_KEYS
    if unknown:
        return f"unknown key(s) {', '.join(sorted(unknown))}"
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"message {k} is not an object"
        if set(message) - MESSAGE_KEYS:
            return f"message {k} has unknown key(s) {', '.join(sorted(set(message) - MESSAGE_KEYS))}"
        if message.get("role") not in ROLES:
            return f"message {k} has role {message.get('role')!r} (expected one of {', '.join(ROLES)})"
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"message {k} ({message['role']}) has no text content"
        if message["role"] == "system" and k != 0:
            return f"message {k}: a system message may only come first"
    turns = [m["role"] for m in messages if m["role"] != "system"]
    if "assistant" not in turns:
        return "no assistant turn: the last message must be the assistant's answer"
    if turns[-1] != "assistant":
        return "the last message must be the assistant's answer"
    if any(a == b for a, b in zip(turns, turns[1:])):
        return "user and assistant messages must alternate"
    if turns[0] != "user":
        return "the first message after the system prompt must be the user's"
    return None


def parse_chat_line(line: str) -> tuple[dict | None, str | None]:
    """One line of chat JSONL as ``(example, None)``, or ``(None, problem)`` when it is not valid JSON or not a
    valid example (see :func:`check_chat_example`)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg})"
    problem = check_chat_example(data)
    return (None, problem) if problem else (data, None)


def validate_chat_jsonl(path: str | os.PathLike, min_examples: int = 1) -> ValidationReport:
    """Check every line of ``path``; errors name the line. ``min_examples``: the
    fewest examples the file must hold (``OPENAI_MIN_EXAMPLES`` before an upload)."""
    path = Path(path)
    report = ValidationReport(str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        report.errors.append(f"{path}: cannot read ({exc})")
        return report
    for number, line in enumerate(lines, start=1):
        data, problem = parse_chat_line(line)
        if data is None:
            report.errors.append(f"{path}:{number}: {problem}")
            continue
        tokens = example_tokens(data)
        if tokens > MAX_EXAMPLE_TOKENS:
            report.errors.append(f"{path}:{number}: about {tokens} tokens, more than {MAX_EXAMPLE_TOKENS}")
        report.examples += 1
        report.tokens += tokens
        report.assistant_tokens += sum(
            estimate_tokens(m["content"]) for m in data["messages"] if m["role"] == "assistant"
        )
    if report.examples < min_examples:
        report.errors.append(f"{path}: {report.examples} valid example(s), at least {min_examples} needed")
    return report


# -- grounding ------------------------------------------------------------------------
def numbers(text: str) -> list[str]:
    """The numbers written in ``text`` (unsigned: ranges are written with a hyphen)."""
    return _NUMBER.findall(text)


def _decimals(token: str) -> int:
    return len(token.split(".", 1)[1]) if "." in token else 0


def ungrounded_numbers(answer: str, reference: str, derived: bool = True) -> list[str]:
    """Numbers in ``answer`` that ``reference`` does not hold. A number counts as
    held when it equals one there, or (``derived``) the difference of two of them,
    at the precision the answer writes it."""
    held = [float(n) for n in numbers(reference)]
    missing = []
    for token in numbers(answer):
        value, tolerance = float(token), 0.5 * 10 ** -_decimals(token) + 1e-9
        if any(abs(value - h) <= tolerance for h in held):
            continue
        if derived and any(abs(value - abs(a - b)) <= tolerance for a in held for b in held):
            continue
        missing.append(token)
    return missing

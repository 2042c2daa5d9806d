"""Training data: reading chat JSONL, rendering each conversation with the tokenizer's chat template, tokenising
it with labels on the assistant turns only (the loss covers the answers, not the prompts), and padding batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import LLMError
from pipeline.llm.validate import parse_chat_line

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


def read_chat_jsonl(path: Path) -> list[list[dict]]:
    """The conversations of a chat JSONL file; every problem is an LLMError naming ``path:line``.

    A line is checked by :func:`pipeline.llm.validate.check_chat_example`, as the validator does; blank lines are
    skipped. Only the role and content of each message are kept.
    """
    if not path.is_file():
        raise LLMError(f"training data {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            example, problem = parse_chat_line(line)
            if example is None:
                raise LLMError(f"{path}:{number}: {problem}")
            conversations.append([{"role": m["role"], "content": m["content"]} for m in example["messages"]])
    return conversations


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):  # some versions hand back a list for a single conversation
        text = text[0]
    return text


def _assistant_spans(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]]:
    """Character spans of the assistant turns in the rendered conversation ``full``.

    A turn spans from the end of the rendered prompt before it (with the generation prompt) to the end of the
    conversation rendered up to it, so the end-of-turn token is learned too. Where the template does not render
    prefixes consistently, the span is the message content found in ``full``.
    """
    spans = []
    search_from = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        upto = _render(tokenizer, messages[: index + 1])
        if upto.startswith(prompt) and full.startswith(upto) and len(upto) > len(prompt):
            spans.append((len(prompt), len(upto)))
            search_from = len(upto)
            continue
        start = full.find(message["content"], search_from)
        if start < 0 or not message["content"]:
            continue
        spans.append((start, start + len(message["content"])))
        search_from = start + len(message["content"])
    return spans


def encode_conversations(
    tokenizer: Any, conversations: list[list[dict]], max_length: int
) -> tuple[list[dict], int, int]:
    """Token ids and labels (IGNORE_INDEX outside the assistant turns) per conversation.

    Returns ``(examples, truncated, dropped)``: examples longer than ``max_length`` are truncated and counted;
    those left without any assistant token are dropped (and counted in both).
    """
    examples, truncated, dropped = [], 0, 0
    for messages in conversations:
        full = _render(tokenizer, messages)
        spans = _assistant_spans(tokenizer, messages, full)
        encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoding["input_ids"])
        labels = [
            token if any(start < span_end and end > span_start for span_start, span_end in spans) else IGNORE_INDEX
            for token, (start, end) in zip(ids, encoding["offset_mapping"])
        ]
        if len(ids) > max_length:
            truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if sum(label != IGNORE_INDEX for label in labels[1:]) == 0:
            dropped += 1
            continue
        examples.append({"input_ids": ids, "labels": labels})
    return examples, truncated, dropped


def collate(examples: list[dict], pad_id: int) -> dict[str, Any]:
    """A padded batch of tensors: ``input_ids``, ``labels`` (IGNORE_INDEX on padding) and ``attention_mask``."""
    import torch

    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"], dtype=torch.long)
        labels[row, :length] = torch.tensor(example["labels"], dtype=torch.long)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


@dataclass
class EncodedData:
    """The tokenised training and validation sets, with how many examples were truncated and dropped."""

    examples: list[dict]
    truncated: int
    dropped: int
    val_examples: list[dict]
    val_truncated: int
    val_dropped: int

    def log_line(self, max_length: int) -> dict:
        """The ``data`` line of the training log."""
        return {
            "type": "data",
            "examples": len(self.examples),
            "val_examples": len(self.val_examples),
            "truncated_examples": self.truncated,
            "val_truncated_examples": self.val_truncated,
            "dropped_examples": self.dropped,
            "val_dropped_examples": self.val_dropped,
            "max_length": max_length,
        }


def encode_splits(
    tokenizer: Any, train: list[list[dict]], val: list[list[dict]], max_length: int, train_path: Path
) -> EncodedData:
    """Both sets encoded, with a warning for truncated or dropped examples; an LLMError if no training example
    keeps an assistant token."""
    examples, truncated, dropped = encode_conversations(tokenizer, train, max_length)
    val_examples, val_truncated, val_dropped = encode_conversations(tokenizer, val, max_length)
    if truncated or val_truncated:
        logger.warning(
            "%d training and %d validation examples are longer than max_length=%d tokens and were truncated",
            truncated,
            val_truncated,
            max_length,
        )
    if dropped or val_dropped:
        logger.warning(
            "%d training and %d validation examples kept no assistant token after truncation and were dropped",
            dropped,
            val_dropped,
        )
    if not examples:
        raise LLMError(
            f"no example of {train_path} keeps an assistant token within max_length={max_length}: raise max_length"
        )
    return EncodedData(examples, truncated, dropped, val_examples, val_truncated, val_dropped)

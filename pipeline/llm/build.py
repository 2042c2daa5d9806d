"""Writing the dataset: per-video examples, the train/val split and the dataset card.

Layout of the dataset folder (``llm_training_data/`` by default)::

    videos/<name>.jsonl            chat-format examples from the measured data (one per segment)
    videos/<name>.segments.jsonl   per example: segment, frame range, every quoted fact and how it was measured
    videos/<name>.<teacher>.jsonl  the same segments with a teacher model's feedback (--use_openai, --use_claude)
    videos/<name>.info.json        counts, and the segments left out with the reason
    train.jsonl, val.jsonl         this run's examples, split by video (no video in both)
    dataset.json, dataset_card.md  counts, token estimate, source videos, split, settings
    .cache/                        teacher answers, keyed by request
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from pipeline import storage
from pipeline.analysis.analyzer import Analysis
from pipeline.analysis.store import AnalysisStore
from pipeline.config import DEFAULT_VAL_FRACTION
from pipeline.errors import LLMError
from pipeline.llm.coach import feedback
from pipeline.llm.dataset import ExtractorSettings, PoseDataExtractor
from pipeline.llm.prompts import system_prompt, user_turn
from pipeline.llm.validate import ValidationReport, validate_chat_jsonl


def video_files(folder: storage.Location, name: str, source: str = "rules") -> tuple[str, str]:
    """The examples file of one video and source, and the segments file (shared by the sources)."""
    examples = f"{name}.jsonl" if source == "rules" else f"{name}.{source}.jsonl"
    return storage.join(folder, "videos", examples), storage.join(folder, "videos", f"{name}.segments.jsonl")


def info_file(folder: storage.Location, name: str) -> str:
    """What was written for one video and what was left out (``videos/<name>.info.json``)."""
    return storage.join(folder, "videos", f"{name}.info.json")


def write_jsonl(path: storage.Location, rows: list[dict]) -> None:
    """One JSON object per line, written atomically."""
    storage.atomic_write(
        path, lambda fh: fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), text=True
    )


def read_jsonl(path: storage.Location) -> list[dict]:
    with storage.open_file(path, "r", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_video_examples(
    source: Analysis | AnalysisStore,
    folder: str | os.PathLike,
    name: str,
    fps: float,
    sport: str,
    settings: ExtractorSettings | None = None,
) -> dict:
    """Segments of one analysed video -> ``videos/<name>.jsonl`` and its segments file. Returns counts."""
    extractor = PoseDataExtractor(settings, sport)
    segments = extractor.segments(source, name, fps)
    system = system_prompt(sport)
    examples, meta = [], []
    for k, segment in enumerate(segments):
        examples.append(
            {
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user_turn(segment, sport)},
                    {"role": "assistant", "content": feedback(segment, sport)},
                ]
            }
        )
        meta.append({"example": k, **segment.to_dict()})
    examples_path, segments_path = video_files(folder, name)
    info = {"examples": len(examples), "left_out": extractor.skipped, "sport_type": sport}
    write_jsonl(segments_path, meta)
    storage.write_json(info_file(folder, name), info, indent=None, sort_keys=False)
    write_jsonl(examples_path, examples)
    return info | {"path": examples_path}


def assign_splits(videos: list[str], val_fraction: float = DEFAULT_VAL_FRACTION, seed: str = "") -> dict[str, str]:
    """``train`` or ``val`` per video, from a hash of its name: the same video always
    lands on the same side. There is always a training video; with two or more
    videos (and ``val_fraction`` > 0) there is always a validation video too."""
    if not videos:
        return {}
    score = {v: int(hashlib.sha256(f"{seed}{v}".encode()).hexdigest()[:12], 16) / 16**12 for v in videos}
    split = {v: "val" if score[v] < val_fraction else "train" for v in videos}
    if "train" not in split.values():
        split[max(videos, key=score.get)] = "train"
    if len(videos) >= 2 and val_fraction > 0 and "val" not in split.values():
        split[min(videos, key=score.get)] = "val"
    return split


def assemble_dataset(
    folder: str | os.PathLike,
    videos: list[str],
    sources: tuple[str, ...] = ("rules",),
    val_fraction: float = DEFAULT_VAL_FRACTION,
    settings: dict | None = None,
    extras: dict | None = None,
) -> dict:
    """``train.jsonl`` / ``val.jsonl`` from the per-video files of ``videos``, both
    validated, and the dataset card. Returns the card's data (``dataset.json``)."""
    split = assign_splits(videos, val_fraction)
    rows: dict[str, list[dict]] = {"train": [], "val": []}
    per_video = []
    left_out: dict[str, int] = {}
    for video in videos:
        info_path = info_file(folder, video)
        if storage.exists(info_path):
            for reason, n in storage.read_json(info_path)["left_out"].items():
                left_out[reason] = left_out.get(reason, 0) + n
        counts = {}
        for source in sources:
            path, _ = video_files(folder, video, source)
            if not storage.exists(path):
                if source == "rules":
                    raise LLMError(f"{path} is missing: the examples of {video} were not written")
                continue
            examples = read_jsonl(path)
            counts[source] = len(examples)
            rows[split[video]] += examples
        per_video.append({"video": video, "split": split[video], "examples": counts})
    reports: dict[str, ValidationReport] = {}
    for name, examples in rows.items():
        path = storage.join(folder, f"{name}.jsonl")
        write_jsonl(path, examples)
        reports[name] = validate_chat_jsonl(path, min_examples=0)
        if not reports[name].ok:
            raise LLMError(f"{path} failed validation: {reports[name].first_errors()}")
    card = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "format": "chat JSONL: {messages: [system, user, assistant]} (OpenAI fine-tuning and common open-source trainers)",
        "splits": {
            name: {"path": storage.join(folder, f"{name}.jsonl"), "examples": r.examples, "tokens_estimate": r.tokens}
            for name, r in reports.items()
        },
        "sources": list(sources),
        "videos": per_video,
        "val_fraction": val_fraction,
        "split_rule": "by video, from a hash of its name; a video's segments are all in one split",
        "left_out": left_out,
        "settings": settings or {},
        **(extras or {}),
    }
    storage.write_json(storage.join(folder, "dataset.json"), card)
    storage.write_text(storage.join(folder, "dataset_card.md"), card_markdown(card))
    return card


def card_markdown(card: dict) -> str:
    splits = card["splits"]
    lines = [
        "# Pose coaching dataset",
        "",
        f"Built {card['created']} by the pose pipeline from {len(card['videos'])} video(s).",
        "",
        "Each example is one movement segment of one person (the whole track, a window, a jump, a drop or one "
        "repetition). The user turn lists what was measured (joint angles, angular speeds, centre-of-mass speed "
        "and height, ground contact, events with their times); the assistant turn is feedback derived from those "
        "numbers only. `videos/<name>.segments.jsonl` records, for every number, the statistic, the series and the "
        "frames it was computed from, so each one can be checked against the pose JSON.",
        "",
        "| split | examples | tokens (estimate) |",
        "|---|---|---|",
        *[f"| {name} | {s['examples']} | {s['tokens_estimate']} |" for name, s in splits.items()],
        "",
        "Token counts are estimates (about 4 characters per token).",
        "",
        "## Source videos",
        "",
        "| video | split | examples by source |",
        "|---|---|---|",
        *[
            f"| {v['video']} | {v['split']} | {', '.join(f'{k} {n}' for k, n in v['examples'].items()) or 'none'} |"
            for v in card["videos"]
        ],
        "",
        f"Split: {card['split_rule']} (validation share {card['val_fraction']}).",
    ]
    if len(card["videos"]) < 2:
        lines.append("With a single video every example is in the training split; `val.jsonl` is empty.")
    if card.get("left_out"):
        lines += [
            "",
            "## Left out",
            "",
            "Segments not turned into examples, by reason (see the extractor settings):",
            "",
        ]
        lines += [f"- {reason}: {n}" for reason, n in card["left_out"].items()]
    if card.get("synthetic"):
        lines += ["", "## Synthetic feedback", ""]
        for name, usage in card["synthetic"].items():
            lines.append(f"- {name}: {usage.get('line', '')}")
    lines += ["", "## Settings", "", "```json", json.dumps(card["settings"], indent=2), "```", ""]
    lines += [
        "## Limits",
        "",
        "- The numbers come from monocular pose estimation: angles are 3D estimates from one camera, and joints "
        "hidden from the camera are measured poorly (the coverage and visibility in each user turn say how well).",
        "- The rule-based feedback covers what the rules know; teacher rewrites are kept only when every number "
        "they quote is in (or is the difference of two numbers in) the user turn.",
        "",
    ]
    return "\n".join(lines)

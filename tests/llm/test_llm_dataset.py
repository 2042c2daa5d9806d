"""LLM training data from the real sample clip: format, grounding in the measured
data, the split, and the sport shaping.

The grounding check is independent of the extractor: every fact a segment
quotes is recomputed from the pose JSON (the per-frame angles, speeds, contacts,
events and times that the pipeline publishes), every number in a user turn must
be one of those facts, and every number in an assistant turn must be in its
user turn.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from pipeline.analysis.analyzer import Analyzer, TrackMeta
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.config import QUALITY_PRESETS
from pipeline.llm.build import assemble_dataset, assign_splits, read_jsonl, video_files, write_video_examples
from pipeline.llm.validate import numbers, ungrounded_numbers, validate_chat_jsonl
from pipeline.outputs.pose_json import read_pose_json, write_pose_json


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_video):
    """One CLI run on the sample clip: two people, fast preset, dataset and local training."""
    root = tmp_path_factory.mktemp("llm_run")
    hf_home = root / "hf-empty"
    hf_home.mkdir()
    result = run_cli(
        "--video", str(sample_video), "--output", "out", "--models", "models", "--llm_data", "data",
        "--llm_models", "trained", "--num_poses", "2", "--quality", "fast", "--no_video", "--no_report",
        "--train_llm",
        cwd=root,
        env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    return root, result


def _frames_by_number(document: dict) -> dict[int, dict]:
    return {frame["frame"]: frame for frame in document["frames"]}


def _person_values(frame: dict, person: int, series: str) -> list[float]:
    """The values of ``series`` for ``person`` in one pose JSON frame (empty when not detected)."""
    if not frame["analyzed"]:
        return []
    entry = next((p for p in frame["persons"] or [] if p["id"] == person), None)
    if entry is None:
        return []
    kind, _, key = series.partition(".")
    if kind in ("angles", "angular_velocity"):
        field = "angles" if kind == "angles" else "angular_velocity_deg_s"
        values = [entry[field][joint] for joint in key.split("|")]
    elif kind == "speed":
        values = [entry["speed_bh_s"][key]]
    elif kind == "com_height":
        values = [entry["com_height_bh"]]
    elif kind == "visibility":
        seen = [row[3] for row in entry["landmarks"] if row[3] is not None]
        values = [float(np.mean(seen))] if seen else []
    elif kind == "contact":
        values = [-1.0 if entry["ground_contact"] is None else float(entry["ground_contact"])]
    else:
        raise AssertionError(f"unknown series {series}")
    return [math.nan if v is None else float(v) for v in values]


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _close(value: float, text: str, slack_units: float = 1.0) -> bool:
    """``value`` written at ``text``'s precision, allowing ``slack_units`` of the last digit
    (the pose JSON rounds its series before we recompute from them)."""
    return abs(value - float(text)) <= slack_units * 10 ** -_decimals(text) + 1e-9


def recompute(fact: dict, segment: dict, document: dict, frames: dict[int, dict]) -> float | None:
    """A fact's value from the pose JSON, or None when the fact is checked otherwise (argmin)."""
    stat, series, (start, end) = fact["stat"], fact["series"], fact["frames"]
    person = segment["person"]
    if stat == "person":
        return person
    if stat == "time_s":
        return frames[start]["timestamp_ms"] / 1000
    if stat == "event":
        _, index, key = series.split(".")
        return document["events"][int(index)][key]
    in_range = [frames[f] for f in range(start, end) if f in frames]
    seen = [f for f in in_range if f["analyzed"] and any(p["id"] == person for p in f["persons"] or [])]
    if series == "seen":
        analysed = sum(1 for f in in_range if f["analyzed"])
        return len(seen) if stat == "count" else 100 * len(seen) / analysed
    if series.startswith("event."):
        kind = series.split(".")[1]
        return sum(
            1
            for e in document["events"]
            if e["person"] == person and e["type"] == kind and start <= e["start_frame"] and e["end_frame"] < end
        )
    values = np.array([v for f in seen for v in _person_values(f, person, series)], dtype=float)
    values = values[np.isfinite(values)]
    assert values.size, f"{fact['name']}: no values in the pose JSON for {series} in frames {start}-{end}"
    if stat == "share":
        known = values[values >= 0]
        return 100 * float((known > 0).mean())
    if stat == "argmin_s":
        return None
    return {
        "min": values.min,
        "max": values.max,
        "mean": values.mean,
        "range": lambda: values.max() - values.min(),
        "peak_abs": lambda: np.abs(values).max(),
    }[stat]()


def check_grounding(data_dir: Path, name: str, pose_json: str | Path) -> int:
    """Every fact against the pose JSON, every user number a fact, every assistant number in the user turn.
    Returns how many facts were checked."""
    document = json.loads(Path(pose_json).read_text())
    frames = _frames_by_number(document)
    examples_path, segments_path = video_files(data_dir, name)
    examples, segments = read_jsonl(examples_path), read_jsonl(segments_path)
    assert len(examples) == len(segments) > 0
    checked = 0
    for example, segment in zip(examples, segments):
        system, user, assistant = (m["content"] for m in example["messages"])
        assert numbers(system) == [], "the system prompt holds no numbers"
        facts = segment["facts"]
        texts = {f["text"] for f in facts}
        stray = [n for n in numbers(user) if n not in texts]
        assert stray == [], f"{segment['id']}: user turn numbers that are no fact: {stray}"
        assert ungrounded_numbers(assistant, user, derived=False) == [], f"{segment['id']}: {assistant}"
        for fact in facts:
            value = recompute(fact, segment, document, frames)
            checked += 1
            if value is not None:
                slack = 1.0 if fact["stat"] in ("event", "time_s", "count", "person") else 2.0
                assert _close(value, fact["text"], slack), f"{segment['id']} {fact['name']}: {fact['text']} vs {value}"
                continue
            # argmin_s: the frame at the quoted time holds the minimum (the JSON's rounding can move ties)
            start, end = fact["frames"]
            series_min = recompute(dict(fact, stat="min"), segment, document, frames)
            at_time = [
                v
                for f in range(start, end)
                if f in frames and _close(frames[f]["timestamp_ms"] / 1000, fact["text"], 0.5)
                for v in _person_values(frames[f], segment["person"], fact["series"])
                if math.isfinite(v)
            ]
            assert at_time and min(at_time) <= series_min + 0.02, f"{segment['id']} {fact['name']}"
    return checked


# -- the CLI run ---------------------------------------------------------------------------
def test_cli_writes_valid_dataset_and_card(run):
    root, result = run
    assert result.returncode == 0, result.stderr[-3000:]
    data = root / "data"
    for name in ("train", "val"):
        report = validate_chat_jsonl(data / f"{name}.jsonl", min_examples=0)
        assert report.ok, report.errors
    card = json.loads((data / "dataset.json").read_text())
    per_video = validate_chat_jsonl(video_files(data, "demo")[0])
    assert per_video.ok and per_video.examples >= 10
    assert card["splits"]["train"]["examples"] == per_video.examples  # one video: all in train
    assert card["splits"]["val"]["examples"] == 0
    assert card["videos"] == [{"video": "demo", "split": "train", "examples": {"rules": per_video.examples}}]
    assert card["splits"]["train"]["tokens_estimate"] == per_video.tokens
    markdown = (data / "dataset_card.md").read_text()
    assert "| train | " + str(per_video.examples) in markdown and "demo" in markdown
    info = json.loads((data / "videos" / "demo.info.json").read_text())
    assert info["examples"] == per_video.examples and card["left_out"] == info["left_out"]
    assert all(f"- {reason}: {n}" in markdown for reason, n in info["left_out"].items())
    assert f"LLM data: {per_video.examples} train + 0 val examples" in result.stdout
    kinds = {s["kind"] for s in read_jsonl(video_files(data, "demo")[1])}
    assert {"window", "jump", "repetition"} <= kinds


def test_every_number_is_grounded_in_the_pose_json(run):
    root, _ = run
    checked = check_grounding(root / "data", "demo", root / "models" / "demo_pose.json")
    assert checked > 300


def test_offline_local_training_from_the_cli(run):
    pytest.importorskip("peft")
    root, result = run
    records = sorted((root / "trained").glob("local-*/record.json"))
    assert len(records) == 1, result.stderr[-3000:]
    record = json.loads(records[0].read_text())
    assert record["base_model"] == "tiny-random"
    assert record["train_eval_loss_after"] < record["train_eval_loss_before"]
    assert "local LoRA on tiny-random" in result.stdout
    assert "not in the local Hugging Face cache" in result.stdout


# -- sports, in-process from the run's pose JSON ------------------------------------------------
@pytest.mark.parametrize("sport", sorted(SPORT_PROFILES))
def test_each_sport_shapes_the_examples_and_stays_grounded(run, tmp_path, sport):
    root, _ = run
    header, track = read_pose_json(root / "models" / "demo_pose.json")
    params = replace(QUALITY_PRESETS["fast"].analysis, sport_type=sport)
    video = header["video"]
    analysis = Analyzer(params)(track, TrackMeta(video["width"], video["height"], video["fps"]))
    pose_json = write_pose_json(tmp_path / "demo_pose.json", {"video": video}, analysis)
    counts = write_video_examples(analysis, tmp_path / "data", "demo", video["fps"], sport)
    assert counts["examples"] > 0
    assert check_grounding(tmp_path / "data", "demo", pose_json) > 100
    examples = read_jsonl(video_files(tmp_path / "data", "demo")[0])
    system = examples[0]["messages"][0]["content"]
    assert sport.replace("_", " ") in system
    users = [e["messages"][1]["content"] for e in examples]
    assert all(u.startswith(f"Sport: {sport.replace('_', ' ')}.") for u in users)
    # the profile's joints are the ones listed
    first_joint = SPORT_PROFILES[sport].angles[0].replace("_", " ")
    assert all(first_joint in u for u in users)


def test_sport_specific_feedback(run, tmp_path):
    """The same movement reads differently for a squat and for jumping jacks."""
    root, _ = run
    header, track = read_pose_json(root / "models" / "demo_pose.json")
    video = header["video"]
    texts = {}
    for sport in ("squat", "jumping_jacks"):
        params = replace(QUALITY_PRESETS["fast"].analysis, sport_type=sport)
        analysis = Analyzer(params)(track, TrackMeta(video["width"], video["height"], video["fps"]))
        write_video_examples(analysis, tmp_path / sport, "demo", video["fps"], sport)
        texts[sport] = " ".join(
            e["messages"][2]["content"] for e in read_jsonl(video_files(tmp_path / sport, "demo")[0])
        )
    assert "squat" in texts["squat"] or "Depth" in texts["squat"]
    assert "arms" in texts["jumping_jacks"]
    assert "arms" not in texts["squat"]


# -- split and assembly --------------------------------------------------------------------------
def test_split_by_video_is_deterministic_and_never_mixes(tmp_path):
    videos = [f"clip{i:02d}" for i in range(20)]
    split = assign_splits(videos, 0.2)
    assert split == assign_splits(list(reversed(videos)), 0.2)
    assert set(split.values()) == {"train", "val"}
    assert 1 <= sum(v == "val" for v in split.values()) <= 10
    assert assign_splits(["only"], 0.2) == {"only": "train"}
    assert set(assign_splits(["a", "b"], 0.2).values()) == {"train", "val"}
    assert set(assign_splits(["a", "b"], 0.0).values()) == {"train"}
    # adding videos leaves the others where they were
    more = assign_splits([*videos, "extra1", "extra2"], 0.2)
    assert all(more[v] == split[v] for v in videos)


def test_assemble_keeps_each_video_in_one_split(run, tmp_path):
    root, _ = run
    source = video_files(root / "data", "demo")[0]
    names = [f"video{i}" for i in range(6)]
    for name in names:
        target = Path(video_files(tmp_path, name)[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        rows = read_jsonl(source)
        for row in rows:  # tag each example with its video so the split can be checked
            row["messages"][1]["content"] = f"[{name}] " + row["messages"][1]["content"]
        target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    card = assemble_dataset(tmp_path, names, val_fraction=0.3)
    owners = {}
    for split in ("train", "val"):
        for row in read_jsonl(tmp_path / f"{split}.jsonl"):
            name = row["messages"][1]["content"].split("]")[0][1:]
            owners.setdefault(name, set()).add(split)
    assert all(len(sides) == 1 for sides in owners.values())
    assert set(owners) == set(names)
    assert {v["split"] for v in card["videos"]} == {"train", "val"}
    assert card["splits"]["train"]["examples"] + card["splits"]["val"]["examples"] == 6 * len(read_jsonl(source))


# -- validator ---------------------------------------------------------------------------------
GOOD = {
    "messages": [
        {"role": "system", "content": "coach"},
        {"role": "user", "content": "left knee 92-171"},
        {"role": "assistant", "content": "Depth is good: 92."},
    ]
}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"messages": GOOD["messages"][:2]}), "last message must be the assistant"),
        (json.dumps({"messages": [{"role": "coach", "content": "x"}]}), "role 'coach'"),
        (json.dumps({**GOOD, "metadata": {}}), "unknown key(s) metadata"),
        (
            json.dumps({"messages": [GOOD["messages"][0], {"role": "user", "content": " "}, GOOD["messages"][2]]}),
            "no text content",
        ),  # fmt: skip
        (
            json.dumps({"messages": [GOOD["messages"][1], GOOD["messages"][0], GOOD["messages"][2]]}),
            "system message may only come first",
        ),  # fmt: skip
        (json.dumps({"messages": [GOOD["messages"][1], GOOD["messages"][1], GOOD["messages"][2]]}), "alternate"),
    ],
)
def test_validator_names_the_line_and_the_problem(tmp_path, line, problem):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    report = validate_chat_jsonl(path)
    assert report.examples == 1
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{path}:2: ") and problem in report.errors[0]


def test_validator_counts_and_minimum(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text((json.dumps(GOOD) + "\n") * 3)
    report = validate_chat_jsonl(path, min_examples=10)
    assert report.examples == 3 and report.tokens > 0
    assert report.errors == [f"{path}: 3 valid example(s), at least 10 needed"]


def test_ungrounded_numbers():
    user = "left knee 92-171 (range 79, lowest at 3.10 s); speed 0.45"
    assert ungrounded_numbers("knee down to 92, up to 171, at 3.10 s", user) == []
    assert ungrounded_numbers("a difference of 79 degrees", user) == []
    assert ungrounded_numbers("aim for 90 degrees", user) == ["90"]
    assert ungrounded_numbers("3.1 s", user) == []  # same value, fewer decimals
    assert ungrounded_numbers("3.12 s", user) == ["3.12"]
    assert ungrounded_numbers("a gap of 13", user, derived=False) == ["13"]
    assert ungrounded_numbers("a gap of 13", "values 92 and 79") == []  # 92 - 79

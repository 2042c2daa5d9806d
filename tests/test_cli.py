"""The command line as a user runs it: exit codes and one-line errors."""

import csv
import json
import shutil
import time

import pytest
from conftest import error_lines, run_cli

from pipeline.outputs.pose_json import SCHEMA_VERSION


def test_missing_path_exits_2(tmp_path):
    proc = run_cli("--input", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [f"error: {tmp_path / 'nope'}: no such file or folder"]


def test_empty_folder_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no videos here")
    proc = run_cli("--input", "empty", cwd=tmp_path)
    assert proc.returncode == 2
    [line] = error_lines(proc.stderr)
    assert line.startswith("error: empty: no video files in this folder")


def test_unknown_option_exits_2(tmp_path):
    proc = run_cli("--input", ".", "--no-such-option", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unrecognized arguments" in proc.stderr


def test_non_video_file_fails_with_one_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n" * 100)
    proc = run_cli("--video", str(notes), "--quality", "fast", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"FAILED {notes}: not a readable video")
    assert not (tmp_path / "models" / "notes_pose.json").exists()


def test_bad_and_good_in_one_folder(tmp_path, sample_video):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(sample_video, folder / "sub" / "good.mp4")
    (folder / "broken.mp4").write_text("this is a text file named like a video\n")
    proc = run_cli(
        "--input", "clips", "--quality", "fast", "--workers", "2", "--memory-limit", "0.3", "--batch-size", "120",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [line] = error_lines(proc.stderr)
    assert line == "FAILED clips/broken.mp4: not a readable video (the decoder could not open it)"
    assert "1/2 video(s) succeeded" in proc.stdout
    good = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert len(good) == 1 and "230 frames" in good[0] and "models/good_pose.json" in good[0]
    document = json.loads((tmp_path / "models" / "good_pose.json").read_text())
    assert document["schema_version"] == SCHEMA_VERSION
    assert [f["frame"] for f in document["frames"]] == list(range(230))
    assert document["settings"]["memory_limit"] == 0.3
    assert document["settings"]["batch_size"] == 120
    # --quality fast: the lite model and the preset's analysis parameters
    assert document["model"]["name"] == "lite"
    assert document["settings"]["analysis"]["min_visibility"] == 0.3
    person = next(p for f in document["frames"] for p in f["persons"] or [])
    assert len(person["landmarks"]) == 33 and len(person["landmarks"][0]) == 5
    assert len(person["world_landmarks"]) == 33
    assert set(person["angles"]) >= {"left_knee", "right_elbow", "left_ankle", "right_shoulder", "left_hip"}
    leftovers = [p.name for p in (tmp_path / "models").iterdir() if p.name.endswith(".part")]
    assert leftovers == []
    # The batch summary names the failure with its reason and keeps the good video's rows.
    with open(tmp_path / "output" / "summary.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["video"], r["error"]) for r in failed] == [
        ("clips/broken.mp4", "not a readable video (the decoder could not open it)")
    ]
    assert {r["name"] for r in rows if r["status"] == "ok"} == {"good"}
    assert (tmp_path / "output" / "good_annotated.mp4").exists()


def test_progress_bars_show_rate_and_eta_per_video_and_for_the_batch():
    import io

    from pipeline.cli import ProgressDisplay
    from pipeline.orchestrator import ProgressEvent

    out = io.StringIO()
    display = ProgressDisplay(enabled=True, file=out)
    display(ProgressEvent("a.mp4", "planned", 0, 100, "a"))
    display(ProgressEvent("b.mp4", "planned", 40, 80, "b"))  # 40 frames from an earlier run
    display(ProgressEvent("a.mp4", "extract", 50, 100, "a"))
    assert display.batch.total == 180 and display.batch.n == 90
    assert display.bars["a.mp4"].n == 50
    display(ProgressEvent("a.mp4", "extract", 100, 100, "a"))
    display(ProgressEvent("a.mp4", "done", 100, 100, "a"))
    display(ProgressEvent("b.mp4", "failed", 40, 80, "b"))  # its missing frames leave the total
    assert display.batch.total == 140 and display.batch.n == 140 and not display.bars
    display.close()
    text = out.getvalue()
    assert "batch" in text and "frame/s" in text and "a: " in text
    assert "<" in text  # tqdm's elapsed<remaining (ETA)


def test_quiet_shows_no_bars():
    import io

    from pipeline.cli import ProgressDisplay
    from pipeline.orchestrator import ProgressEvent

    out = io.StringIO()
    display = ProgressDisplay(enabled=False, file=out)
    display(ProgressEvent("a.mp4", "planned", 0, 100, "a"))
    display(ProgressEvent("a.mp4", "extract", 50, 100, "a"))
    display.close()
    assert out.getvalue() == ""


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5", ""])
def test_a_bad_num_poses_is_one_line_and_exit_2_before_any_engine(tmp_path, sample_video, value):
    (tmp_path / "clips").mkdir()
    shutil.copy(sample_video, tmp_path / "clips" / "demo.mp4")
    started = time.perf_counter()
    proc = run_cli("--input", "clips", "--num_poses", value, cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [f"error: num_poses must be an integer >= 1 or 'auto', got {value!r}"]
    assert proc.stderr.count("\n") == 1  # the one line, nothing else
    assert time.perf_counter() - started < 20  # no engine was started: Ray alone takes longer
    assert not (tmp_path / "output").exists() and not (tmp_path / "models").exists()


@pytest.mark.parametrize("value", ["100", "-720"])
def test_a_too_small_video_height_is_one_line_and_exit_2(tmp_path, sample_video, value):
    proc = run_cli("--video", str(sample_video), "--video_height", value, cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [f"error: video_height must be >= 120 pixels, got {value}"]
    assert not (tmp_path / "output").exists()


def test_video_height_counts_in_the_output_key_only_when_given():
    from pipeline.config import PipelineConfig

    assert "video_height" not in PipelineConfig().output_key(100)  # earlier runs' work folders stay valid
    assert PipelineConfig(video_height=720).output_key(100)["video_height"] == 720

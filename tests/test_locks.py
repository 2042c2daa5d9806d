"""Two runs on one output folder: a video another run holds is skipped at once
with the holder's PID, nothing is computed twice, and summary.csv is written
from the manifests of the whole output folder, so it never contradicts them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import media
from conftest import REPO, run_cli

from pipeline.storage import FileLock

ARGS = ("--quality", "fast", "--batch_size", "24", "--workers", "2", "--quiet")
FOLDERS = ("--output", "out", "--models", "models", "--llm_data", "llm")


def _summary(folder: Path) -> list[dict]:
    with open(folder / "out" / "summary.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _skip_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("skipped ")]


def test_a_second_run_skips_the_video_the_first_holds_and_computes_nothing(tmp_path, sample_video):
    args = ("--video", str(sample_video), *FOLDERS, *ARGS)
    first = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline.py"), *args, "--stats", "first.json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    work = tmp_path / "out" / ".work" / "demo"
    deadline = time.monotonic() + 300
    while not work.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None and work.exists(), "the first run did not start its video"

    started = time.monotonic()
    second = run_cli(*args, "--stats", "second.json", cwd=tmp_path)
    second_s = time.monotonic() - started
    rows_after_second = _summary(tmp_path)
    first_still_running = first.poll() is None
    print(f"second run: {second_s:.1f} s")

    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode == 1, second.stderr[-3000:]  # not everything completed
    assert _skip_lines(second.stderr) == [f"skipped {sample_video}: another run (PID {first.pid}) is processing it"]
    assert "0/1 video(s) succeeded" in second.stdout and "1 held by another run" in second.stdout
    assert second_s < 30, second_s  # at once: the engines are not even started
    second_stats = json.loads((tmp_path / "second.json").read_text())
    assert second_stats["chunks"] == [] and "engines_start" not in second_stats["marks_s"]
    # The second run's summary.csv, written while the first still ran: the video is in progress.
    assert first_still_running
    assert [(r["name"], r["status"]) for r in rows_after_second] == [("demo", "in progress")]

    first_stats = json.loads((tmp_path / "first.json").read_text())
    assert sorted(c["index"] for c in first_stats["chunks"]) == list(range(10))  # each chunk computed once
    # The summary at the end agrees with the manifest.
    manifest = json.loads((work / "manifest.json").read_text())
    assert "failed" not in manifest
    result = manifest["complete"]["result"]
    rows = _summary(tmp_path)
    assert [r["status"] for r in rows] == ["ok"] * len(result["summary"]["persons"]) and rows
    assert {r["pose_json"] for r in rows} == {result["outputs"]["pose_json"]}
    assert {r["annotated_video"] for r in rows} == {result["outputs"]["annotated_video"]}
    assert (tmp_path / result["outputs"]["annotated_video"]).exists()


def test_a_held_video_is_skipped_before_the_engines_start(tmp_path, sample_video):
    lock = FileLock(tmp_path / "out" / ".work" / "demo.lock")
    assert lock.try_acquire() is None  # this process is the other run
    try:
        proc = run_cli("--video", str(sample_video), *FOLDERS, *ARGS, "--stats", "stats.json", cwd=tmp_path)
        rows = _summary(tmp_path)
    finally:
        lock.release()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert _skip_lines(proc.stderr) == [f"skipped {sample_video}: another run (PID {os.getpid()}) is processing it"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert "engines_start" not in stats["marks_s"] and stats["chunks"] == []
    assert [(r["name"], r["status"]) for r in rows] == [("demo", "in progress")]
    assert not (tmp_path / "models" / "demo_pose.json").exists()


def test_summary_csv_lists_every_video_of_the_output_folder(tmp_path, sample_video):
    """Each run rewrites summary.csv from every work folder: a video of an earlier
    run stays listed with its outcome."""
    clips = tmp_path / "clips"
    good = media.one_frame(clips, sample_video)
    broken = media.text_as_mp4(clips)
    common = (*FOLDERS, "--quality", "fast", "--workers", "1", "--no_video", "--no_report", "--quiet")
    assert run_cli("--video", str(good), *common, cwd=tmp_path).returncode == 0
    second = run_cli("--video", str(broken), *common, cwd=tmp_path)
    assert second.returncode == 1
    rows = _summary(tmp_path)
    assert {(r["name"], r["status"], r["video"]) for r in rows} == {
        (broken.stem, "failed", str(broken)),
        (good.stem, "ok", str(good)),
    }
    assert {r["error"] for r in rows if r["name"] == broken.stem} == {
        "not a readable video (the decoder could not open it)"
    }
    assert {r["frames"] for r in rows if r["name"] == good.stem} == {"1"}

"""The bad-input matrix: every case has one clear outcome.

Most cases run together in one batch, as a user's folder would: the broken
files fail alone with a one-line reason (stderr and summary.csv), the odd but
valid ones complete with every frame, and the exit code says something failed.
The file-system cases (unreadable file, missing path, output not writable, a
full disk) each get their own run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import media
import pytest
from conftest import REPO, error_lines, run_cli

FAILS = {
    "zero.mp4": "empty file (0 bytes)",
    "notes.mp4": "not a readable video (the decoder could not open it)",
    "truncated.mp4": "truncated or corrupt: the container lists 90 frames but holds data for 34",
    "audio.mp4": "no video stream (an audio-only file)",
}
# name in the batch -> (frames, annotated video width x height)
COMPLETES = {
    "empty_scene": (45, (640, 360)),
    "single": (1, (884, 498)),
    "odd_333x211": (30, (334, 212)),  # H.264 4:2:0 stores even sizes: one copied column and row
    "portrait": (40, (360, 640)),
    "vfr": (60, (640, 360)),
    "uhd": (8, (3840, 2160)),
    "a__clip": (20, (640, 360)),
    "b__clip": (20, (640, 360)),
    "damaged": (media.DAMAGED_FRAMES, (640, 360)),  # three frames cannot be decoded: listed, never dropped
    "noisy": (230, (1768, 994)),  # random bytes over the sample's data: concealed, every frame decodes
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, sample_video):
    root = tmp_path_factory.mktemp("bad_inputs")
    clips = root / "clips"
    media.zero_byte(clips)
    media.text_as_mp4(clips)
    media.truncated_mp4(clips, sample_video)
    media.audio_only(clips)
    media.no_person(clips, sample_video)
    media.one_frame(clips, sample_video)
    media.odd_size(clips, sample_video)
    media.portrait_rotated(clips, sample_video)
    media.variable_frame_rate(clips, sample_video)
    media.four_k(clips, sample_video)
    media.same_name_pair(clips / "pair", sample_video)
    media.damaged_packets(clips, sample_video)
    media.random_bytes(clips, sample_video)
    proc = run_cli("--input", "clips", "--quality", "fast", "--workers", "2", cwd=root)
    with open(root / "output" / "summary.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return root, proc, rows


def test_batch_exit_code_and_summary_line(batch):
    _, proc, _ = batch
    assert proc.returncode == 1, proc.stderr
    assert f"{len(COMPLETES)}/{len(COMPLETES) + len(FAILS)} video(s) succeeded" in proc.stdout
    assert "failed: " in proc.stdout and all(name in proc.stdout.splitlines()[-1] for name in FAILS)


@pytest.mark.parametrize("name", sorted(FAILS))
def test_broken_file_fails_alone_with_one_line(batch, name):
    root, proc, rows = batch
    reason = FAILS[name]
    assert f"FAILED clips/{name}: {reason}" in error_lines(proc.stderr)
    [row] = [r for r in rows if r["video"] == f"clips/{name}"]
    assert (row["status"], row["error"]) == ("failed", reason)
    stem = Path(name).stem
    assert not (root / "models" / f"{stem}_pose.json").exists()
    assert not list((root / "output").glob(f"{stem}_*"))


@pytest.mark.parametrize("name", sorted(COMPLETES))
def test_odd_but_valid_video_completes_with_every_frame(batch, name):
    root, _, rows = batch
    frames, (width, height) = COMPLETES[name]
    document = json.loads((root / "models" / f"{name}_pose.json").read_text())
    assert [f["frame"] for f in document["frames"]] == list(range(frames))
    assert all(r["status"] == "ok" for r in rows if r["name"] == name)
    with av.open(str(root / "output" / f"{name}_annotated.mp4")) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
    assert len(decoded) == frames
    assert (decoded[0].width, decoded[0].height) == (width, height)
    assert (root / "output" / f"{name}_report.html").stat().st_size > 1000


def test_undecodable_frames_are_listed_in_the_json_flags_and_summary_line(batch):
    root, proc, rows = batch
    document = json.loads((root / "models" / "damaged_pose.json").read_text())
    lost = list(media.UNDECODABLE_FRAMES)
    assert document["summary"]["undecodable_frames"] == lost
    assert [f["frame"] for f in document["frames"] if not f["decoded"]] == lost
    assert all(not f["analyzed"] and f["persons"] is None for f in document["frames"] if not f["decoded"])
    [flag] = [f for f in document["summary"]["flags"] if f["code"] == "undecodable_frames"]
    assert flag["message"] == "3 frame(s) could not be decoded: 19, 22, 24" and flag["person"] is None
    assert f"ok clips/damaged.mp4: {media.DAMAGED_FRAMES} frames (3 could not be decoded: see the flags)" in proc.stdout
    damaged_rows = [r for r in rows if r["name"] == "damaged"]
    assert damaged_rows and all(r["flags"].startswith(f"undecodable_frames: {flag['message']}") for r in damaged_rows)
    noisy = json.loads((root / "models" / "noisy_pose.json").read_text())
    assert noisy["summary"]["undecodable_frames"] == [] and all(f["decoded"] for f in noisy["frames"])


def test_damage_has_the_same_outcome_whatever_the_chunk_plan(batch, sample_video):
    """Chunks of 21 frames: the damage straddles a chunk start; the sample's noise falls in a middle chunk."""
    root, _, _ = batch
    run = root / "small_chunks"
    for make in (media.damaged_packets, media.random_bytes):
        make(run / "clips", sample_video)
    proc = run_cli("--input", "clips", "--quality", "fast", "--workers", "2", "--batch_size", "21", cwd=run)
    assert proc.returncode == 0, proc.stderr
    for name in ("damaged", "noisy"):
        chunked = json.loads((run / "models" / f"{name}_pose.json").read_text())
        default = json.loads((root / "models" / f"{name}_pose.json").read_text())
        assert chunked["settings"]["batch_size"] == 21 != default["settings"]["batch_size"]
        assert [f["frame"] for f in chunked["frames"]] == [f["frame"] for f in default["frames"]]
        assert chunked["summary"]["undecodable_frames"] == default["summary"]["undecodable_frames"]


def test_no_person_still_gives_full_outputs(batch):
    root, _, rows = batch
    document = json.loads((root / "models" / "empty_scene_pose.json").read_text())
    assert all(f["persons"] == [] for f in document["frames"])
    assert document["summary"]["persons_found"] == 0
    [row] = [r for r in rows if r["name"] == "empty_scene"]
    assert row["status"] == "ok" and row["person"] == ""


def test_portrait_is_analysed_upright(batch):
    root, _, _ = batch
    document = json.loads((root / "models" / "portrait_pose.json").read_text())
    assert document["video"]["rotation_deg"] == 90
    assert (document["video"]["width"], document["video"]["height"]) == (360, 640)
    with_person = [f for f in document["frames"] if f["persons"]]
    assert len(with_person) >= 35
    nose, ankle = with_person[0]["persons"][0]["landmarks"][0], with_person[0]["persons"][0]["landmarks"][27]
    assert nose[1] < ankle[1]  # head above feet: the rotation was applied before the model saw the frame


def test_variable_frame_rate_keeps_the_container_times(batch):
    root, _, _ = batch
    document = json.loads((root / "models" / "vfr_pose.json").read_text())
    assert document["video"]["variable_frame_rate"] is True
    times = [f["timestamp_ms"] for f in document["frames"]]
    assert times == pytest.approx([t * 1000 for t in media.vfr_timestamps_s()], abs=0.5)
    assert document["settings"]["batch_size"] == 60  # under the floor of a chunk: one, as any clip this short


def test_same_file_name_in_two_folders_gets_two_outputs(batch):
    root, _, _ = batch
    a = json.loads((root / "models" / "a__clip_pose.json").read_text())
    b = json.loads((root / "models" / "b__clip_pose.json").read_text())
    assert a["video"]["path"].endswith("a/clip.mp4") and b["video"]["path"].endswith("b/clip.mp4")
    assert a["frames"][0]["persons"] != b["frames"][0]["persons"]


def test_nonexistent_path_is_a_usage_error(tmp_path):
    proc = run_cli("--video", "missing.mp4", cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["error: missing.mp4: no such file"]


def test_unreadable_file_fails_alone_with_permission_denied(tmp_path, sample_video):
    """Root reads any file; as root the run goes without the capabilities that let it."""
    clips = tmp_path / "clips"
    locked = media.unreadable(clips, sample_video)
    media.same_name_pair(clips, sample_video)
    command = [sys.executable, str(REPO / "pipeline.py"), "--input", "clips", "--quality", "fast", "--no_video"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the capability to read any file")
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == ["FAILED clips/locked.mp4: permission denied (not readable)"]
    assert "2/3 video(s) succeeded" in proc.stdout
    assert locked.stat().st_mode & 0o777 == 0


@contextlib.contextmanager
def _mounted_tmpfs(folder: Path, options: str):
    """A small tmpfs at ``folder`` (root only); unmounted afterwards."""
    folder.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_output_folder_not_writable_stops_before_any_work(tmp_path, sample_video):
    if os.geteuid() == 0:
        context = _mounted_tmpfs(tmp_path / "readonly", "ro,size=1m")
    else:
        (tmp_path / "readonly").mkdir(mode=0o555)
        context = contextlib.nullcontext(tmp_path / "readonly")
    with context as readonly:
        proc = run_cli("--video", str(sample_video), "--output", str(readonly), cwd=tmp_path)
    assert proc.returncode == 2
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"error: output folder {readonly} is not writable (")


def test_not_enough_disk_for_the_annotated_video_is_found_before_writing(tmp_path, sample_video):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    with _mounted_tmpfs(tmp_path / "small", "size=4m") as small:
        proc = run_cli("--video", str(sample_video), "--output", str(small), "--quality", "fast", cwd=tmp_path)
        written = sorted(str(p.relative_to(small)) for p in small.rglob("*"))
    assert proc.returncode == 1, proc.stderr
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"FAILED {sample_video}: not enough disk space for the annotated video in {small}: about ")
    # Nothing else was started: the video's lock, its failure in the manifest, the summary and its lock.
    work = [".work", ".work/demo", ".work/demo.lock", ".work/demo/manifest.json", ".work/summary.flock"]
    assert written == [*work, "summary.csv"]
    assert not (tmp_path / "models" / "demo_pose.json").exists()

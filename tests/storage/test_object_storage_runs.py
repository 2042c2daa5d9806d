"""Runs with inputs and outputs on object storage: a real S3-compatible server (moto's
standalone server on 127.0.0.1), the real command line, real Dask and Ray.

The pose JSON of an ``s3://`` run equals the local run's byte for byte from its first
frame on; its header differs only where it names the locations. Credentials never reach
a log line or an output. A driver killed with SIGKILL resumes from the chunks it left on
object storage. Decoding through a file object reads only the byte ranges a chunk needs,
and the probe reads the same values from an object as from a file."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, run_cli, stop_leftovers
from s3_server import ACCESS_KEY, SECRET_KEY, pose_json_header, same_pose_json

from pipeline import storage
from pipeline.video.probe import _cached_table, probe_video, save_frame_table
from pipeline.video.reader import frame_table, iter_frames

ARGS = ("--quality", "fast", "--batch_size", "60", "--workers", "2", "--quiet")


def _put(s3, local: Path, location: str) -> None:
    s3.filesystem().put_file(str(local), location.removeprefix("s3://"))


def _get(s3, location: str) -> bytes:
    return s3.filesystem().cat_file(location.removeprefix("s3://"))


def _objects(s3, location: str) -> list[str]:
    fs = s3.filesystem()
    fs.invalidate_cache()
    return sorted(fs.find(location.removeprefix("s3://")))


def test_an_s3_run_equals_a_local_run_and_keeps_credentials_out(tmp_path, s3, s3_bucket, sample_video):
    bucket = s3_bucket
    _put(s3, sample_video, f"{bucket}/in/demo.mp4")
    (tmp_path / "broken.mp4").write_text("not a video\n")
    _put(s3, tmp_path / "broken.mp4", f"{bucket}/in/broken.mp4")
    out, models, llm = f"{bucket}/run/out", f"{bucket}/run/models", f"{bucket}/run/llm"
    driver = tmp_path / "driver"
    driver.mkdir()
    remote = run_cli(
        "--input", f"{bucket}/in", "--output", out, "--models", models, "--llm_data", llm, *ARGS,
        "--stats", str(tmp_path / "stats.json"), cwd=driver,
    )  # fmt: skip
    # One video fails alone, with its reason; the other completes; the exit code says so.
    assert remote.returncode == 1, remote.stderr
    assert f"FAILED {bucket}/in/broken.mp4: not a readable video" in remote.stderr
    assert f"ok {bucket}/in/demo.mp4" in remote.stdout
    assert not any((driver / name).exists() for name in ("output", "models", "llm_training_data"))

    local = tmp_path / "local"
    local.mkdir()
    plain = run_cli(
        "--video", str(sample_video), "--output", "out", "--models", "models", "--llm_data", "llm", *ARGS, cwd=local
    )
    assert plain.returncode == 0, plain.stderr

    same_pose_json(_get(s3, f"{models}/demo_pose.json"), (local / "models" / "demo_pose.json").read_bytes())
    for name in ("demo_annotated.mp4", "demo_angles.csv"):
        assert _get(s3, f"{out}/{name}") == (local / "out" / name).read_bytes(), name
    assert _get(s3, f"{llm}/videos/demo.jsonl") == (local / "llm" / "videos" / "demo.jsonl").read_bytes()
    card = json.loads(_get(s3, f"{llm}/dataset.json"))
    assert card["splits"]["train"]["path"] == f"{llm}/train.jsonl"  # records name the object, not a local copy

    objects = _objects(s3, bucket)
    names = [o.rsplit("/", 1)[-1] for o in objects]
    assert not [n for n in names if n.endswith(".part") or "_segments-" in n], objects  # no scratch left
    assert not [n for n in names if n.endswith(".lock")], objects  # locks are released (deleted)
    summary = _get(s3, f"{out}/summary.csv").decode()
    assert "demo," in summary and "broken," in summary

    # Credentials: in no log line and in no object the run wrote.
    for text in (remote.stdout, remote.stderr, (tmp_path / "stats.json").read_text()):
        assert ACCESS_KEY not in text and SECRET_KEY not in text
    for key in objects:
        data = s3.filesystem().cat_file(key)
        assert ACCESS_KEY.encode() not in data and SECRET_KEY.encode() not in data, key


def _chunk_times(s3, work: str) -> dict[str, str]:
    fs = s3.filesystem()
    fs.invalidate_cache()
    try:
        listed = fs.ls(work.removeprefix("s3://"), detail=True)
    except FileNotFoundError:
        return {}
    return {o["name"].rsplit("/", 1)[-1]: str(o["LastModified"]) for o in listed if "/chunk-" in o["name"]}


def test_a_driver_killed_with_sigkill_resumes_from_object_storage(tmp_path, s3, s3_bucket, sample_video):
    bucket = s3_bucket
    _put(s3, sample_video, f"{bucket}/in/demo.mp4")
    out, models = f"{bucket}/killed/out", f"{bucket}/killed/models"
    args = ("--video", f"{bucket}/in/demo.mp4", "--output", out, "--models", models, "--no_llm_data", *ARGS)
    args = (*args[:-8], "--quality", "fast", "--batch_size", "24", "--workers", "2", "--no_report", "--quiet")
    env = dict(**__import__("os").environ)
    child = subprocess.Popen(
        [sys.executable, str(REPO / "pipeline.py"), *args],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    work = f"{out}/.work/demo"
    deadline = time.monotonic() + 300
    while len(_chunk_times(s3, work)) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    family = psutil.Process(child.pid).children(recursive=True)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    stop_leftovers(family)
    before = _chunk_times(s3, work)
    assert 3 <= len(before) < 10, before
    assert not storage.exists(f"{models}/demo_pose.json")
    assert storage.exists(f"{out}/.work/demo.lock")  # the killed run's lock, left behind

    time.sleep(1.1)  # a rewritten chunk would get a later LastModified (whole seconds)
    resumed = run_cli(*args, cwd=tmp_path)  # takes the dead run's lock over at once (same host, PID gone)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)}/10 chunks from an earlier run" in resumed.stdout
    after = _chunk_times(s3, work)
    assert len(after) == 10
    assert {name: after[name] for name in before} == before  # finished chunks were not recomputed

    clean = run_cli(*(a.replace("/killed/", "/clean/") for a in args), cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    for name in ("models/demo_pose.json", "out/demo_annotated.mp4"):
        killed_bytes, clean_bytes = _get(s3, f"{bucket}/killed/{name}"), _get(s3, f"{bucket}/clean/{name}")
        if name.endswith(".json"):
            killed_bytes = killed_bytes.replace(b"/killed/", b"/clean/")
        assert killed_bytes == clean_bytes, name


def test_http_input_and_a_credential_as_storage_option(tmp_path, s3, s3_bucket, sample_video):
    """A signed https-style URL of the object (the server's presigned URL) is read like a file, and
    its signature stays out of every log line and output; a storage option that would carry a
    credential is refused without echoing it."""
    bucket = s3_bucket
    _put(s3, sample_video, f"{bucket}/in/demo.mp4")
    url = s3.filesystem().sign(f"{bucket.removeprefix('s3://')}/in/demo.mp4", expiration=600)
    plain, query = url.split("?", 1)
    assert plain.startswith("http://127.0.0.1:") and "Signature=" in query
    signature = query.split("Signature=", 1)[1].split("&", 1)[0]
    args = ("--video", url, "--output", "out", "--models", "models", "--no_video", "--no_llm_data", *ARGS)
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"ok {plain}:" in result.stdout
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [b for b in written if signature.encode() in b]
    assert signature not in result.stdout + result.stderr
    header, _ = pose_json_header((tmp_path / "models" / "demo_pose.json").read_bytes())
    assert header["video"]["path"] == plain

    # The endpoint as a storage option instead of S3_ENDPOINT_URL: it reaches the engines' workers too.
    optioned = run_cli(
        "--video", f"{bucket}/in/demo.mp4", "--output", f"{bucket}/optioned", "--models", f"{bucket}/optioned",
        "--storage_option", f"endpoint_url={s3.endpoint}", "--no_video", "--no_report", "--no_llm_data", *ARGS,
        cwd=tmp_path, env={"S3_ENDPOINT_URL": None},
    )  # fmt: skip
    assert optioned.returncode == 0, optioned.stderr
    assert _get(s3, f"{bucket}/optioned/demo_pose.json").endswith(b"]}\n")

    refused = run_cli("--video", url, "--storage_option", f"secret={SECRET_KEY}", cwd=tmp_path)
    assert refused.returncode == 2
    assert "would carry a credential" in refused.stderr and SECRET_KEY not in refused.stderr
    missing = run_cli("--video", f"{bucket}/in/nothing.mp4", cwd=tmp_path)
    assert missing.returncode == 2 and f"{bucket}/in/nothing.mp4: no such file" in missing.stderr


@pytest.fixture(scope="module")
def portrait_clip(tmp_path_factory, sample_video):
    import media

    return media.portrait_rotated(tmp_path_factory.mktemp("portrait"), sample_video)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory, sample_video):
    import media

    return media.variable_frame_rate(tmp_path_factory.mktemp("vfr"), sample_video)


@pytest.mark.parametrize("clip", ["sample_video", "portrait_clip", "vfr_clip"])
def test_the_probe_reads_an_object_as_it_reads_the_file(request, s3, s3_bucket, clip):
    """The probe of an object (PyAV through a file object) gives what the probe of the file
    (OpenCV and PyAV on the path) gives: rate, size after rotation, rotation, codec, frame table."""
    path = request.getfixturevalue(clip)
    location = f"{s3_bucket}/clips/{Path(path).name}"
    _put(s3, Path(path), location)
    local, remote = probe_video(path), probe_video(location)
    assert remote.path == location
    assert {**remote.to_dict(), "path": ""} == {**local.to_dict(), "path": ""}
    assert frame_table(location) == frame_table(str(path))


def test_a_chunk_decoded_from_an_object_reads_its_range_not_the_file(s3, s3_bucket, sample_video, monkeypatch):
    """Frames 200-209 decoded through the object equal those of the file, and the file object
    fetched a fraction of the object's bytes: a seek to the key frame, then read-ahead, in blocks
    smaller than the clip here."""
    import numpy as np

    location = f"{s3_bucket}/clips/demo.mp4"
    _put(s3, sample_video, location)
    size = sample_video.stat().st_size
    monkeypatch.setattr(storage, "READ_AHEAD_BYTES", 256 * 1024)  # the sample is smaller than one 4 MiB block
    frame_table(location)  # once per process and version of the object (the workers' cache)
    opened = []
    original = storage.readable

    @contextlib.contextmanager
    def recorded(where):
        with original(where) as fh:
            opened.append(fh.cache)  # (a closed file drops its cache)
            yield fh

    monkeypatch.setattr(storage, "readable", recorded)
    remote = list(iter_frames(location, 200, 210))
    monkeypatch.setattr(storage, "readable", original)
    fetched = [cache.total_requested_bytes for cache in opened]
    local = list(iter_frames(str(sample_video), 200, 210))
    assert [i for i, _ in remote] == list(range(200, 210))
    for (_, a), (_, b) in zip(remote, local):
        np.testing.assert_array_equal(a, b)
    assert len(fetched) == 1 and 0 < fetched[0] < size / 2, (fetched, size)


def test_with_the_stored_frame_table_a_worker_reads_only_its_range(s3, s3_bucket, sample_video, monkeypatch):
    """A worker with the run's stored frame table (what the driver writes into the work folder for
    a video on object storage) never demuxes the whole object: the only file it opens on the
    video is the one decoding its range."""
    location, stored = f"{s3_bucket}/clips/demo.mp4", f"{s3_bucket}/work/frames.npz"
    _put(s3, sample_video, location)
    local_table = frame_table(str(sample_video))
    save_frame_table(local_table, stored)
    monkeypatch.setattr(storage, "READ_AHEAD_BYTES", 256 * 1024)
    opened: list[tuple[str, object]] = []
    original = storage.readable

    @contextlib.contextmanager
    def recorded(where):
        with original(where) as fh:
            opened.append((where, fh.cache))
            yield fh

    monkeypatch.setattr(storage, "readable", recorded)
    _cached_table.cache_clear()  # a fresh worker process
    frames = list(iter_frames(location, 150, 160, table_at=stored))
    assert [i for i, _ in frames] == list(range(150, 160))
    assert frame_table(location, stored) == local_table
    assert [where for where, _ in opened] == [location]
    assert opened[0][1].total_requested_bytes < sample_video.stat().st_size / 2

"""The ordinary command on a real two-node cluster that shares no file system.

Node A (a network namespace) holds the S3-compatible server, the Ray head, the Dask
scheduler and one Dask worker; node B (another network namespace, in a private mount
namespace with its own /tmp and working folder, the driver's files and model cache
hidden) holds a Ray worker node and a Dask worker (``netns.two_nodes``). The driver runs
in A with ``s3://`` input and output and the two addresses. Its pose JSON equals a local
run of the same clip and settings byte for byte from the first frame on (the header differs
only where it names the locations and the engines), and ``--stats`` shows chunks computed
on node B. Then node B loses every process mid-run: the run completes on A, identically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_cli
from netns import two_nodes
from s3_server import ENGINE_FIELDS, LOCATION_FIELDS, same_pose_json

# Small chunks (10 on the sample), so both nodes get several and a kill lands mid-run.
ARGS = ("--quality", "fast", "--batch_size", "24", "--no_report", "--no_llm_data", "--quiet")
BUCKET = "two-nodes"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, sample_video) -> Path:
    """The same clip and settings on this machine's embedded engines (the reference)."""
    folder = tmp_path_factory.mktemp("local")
    result = run_cli("--video", str(sample_video), "--output", "out", "--models", "models", *ARGS, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, sample_video):
    with two_nodes(tmp_path_factory.mktemp("nodes")) as nodes:
        nodes.s3_call("mkdir", BUCKET)
        nodes.s3_call("put", sample_video, f"s3://{BUCKET}/in/demo.mp4")
        yield nodes


def _driver_args(cluster, run: str, stats: Path) -> tuple[str, ...]:
    return (
        "--video", f"s3://{BUCKET}/in/demo.mp4",
        "--output", f"s3://{BUCKET}/{run}/out", "--models", f"s3://{BUCKET}/{run}/models",
        "--ray_address", cluster.ray_address, "--dask_address", cluster.dask_address,
        "--stats", str(stats), *ARGS,
    )  # fmt: skip


def _fetch(cluster, location: str, dest: Path) -> bytes:
    cluster.s3_call("get", location, dest)
    return dest.read_bytes()


def _chunks_by_node(cluster, stats: dict) -> dict[str, list[int]]:
    nodes = {cluster.a: "a", cluster.b: "b"}
    found: dict[str, list[int]] = {"a": [], "b": []}
    for chunk in stats["chunks"]:
        host = chunk["dask_worker"].removeprefix("tcp://").rsplit(":", 1)[0]
        found[nodes[host]].append(chunk["index"])
    return found


def test_a_two_node_run_on_object_storage_equals_a_local_run(tmp_path, cluster, local_run):
    stats_path = tmp_path / "stats.json"
    result = cluster.run_cli(*_driver_args(cluster, "both", stats_path), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok s3://{BUCKET}/in/demo.mp4" in result.stdout
    on = _chunks_by_node(cluster, json.loads(stats_path.read_text()))
    assert on["b"], f"no chunk ran on node B: {on}"
    assert sorted(on["a"] + on["b"]) == list(range(10))

    pose = _fetch(cluster, f"s3://{BUCKET}/both/models/demo_pose.json", tmp_path / "pose.json")
    same_pose_json(pose, (local_run / "models" / "demo_pose.json").read_bytes(), LOCATION_FIELDS + ENGINE_FIELDS)
    video = _fetch(cluster, f"s3://{BUCKET}/both/out/demo_annotated.mp4", tmp_path / "video.mp4")
    assert video == (local_run / "out" / "demo_annotated.mp4").read_bytes()
    assert not list(tmp_path.glob("out")) and not list(tmp_path.glob("models"))  # nothing written locally

    # The cluster takes token authentication (Ray's guidance for networks it does not trust):
    # a driver without the token is refused, with the hint, before any work starts.
    stranger = cluster.run_cli(
        *_driver_args(cluster, "stranger", tmp_path / "stranger.json"), cwd=tmp_path, timeout=120,
        env={"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None},
    )  # fmt: skip
    assert stranger.returncode == 3, stranger.stderr[-2000:]
    assert "needs RAY_AUTH_MODE=token" in stranger.stderr


def test_node_b_killed_mid_run_the_run_completes_on_node_a(tmp_path, cluster, local_run):
    stats_path = tmp_path / "stats.json"
    driver = cluster.popen_cli(*_driver_args(cluster, "killed", stats_path), cwd=tmp_path, text=True)
    work = f"s3://{BUCKET}/killed/out/.work/demo/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        listed = cluster.s3_call("ls", work).stdout.split()
        if sum("/chunk-" in key for key in listed) >= 2:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the run ended before node B could be killed"
    killed_at = time.time()
    cluster.kill_node_b()
    assert driver.wait(timeout=600) == 0

    stats = json.loads(stats_path.read_text())
    on = _chunks_by_node(cluster, stats)
    assert sorted(on["a"] + on["b"]) == list(range(10))
    origin = stats["origin"]
    late = [c for c in stats["chunks"] if origin + c["finished"] > killed_at + 1]
    assert late and all(cluster.a in c["dask_worker"] for c in late), late  # after the kill, A did the work
    pose = _fetch(cluster, f"s3://{BUCKET}/killed/models/demo_pose.json", tmp_path / "pose.json")
    same_pose_json(pose, (local_run / "models" / "demo_pose.json").read_bytes(), LOCATION_FIELDS + ENGINE_FIELDS)
    video = _fetch(cluster, f"s3://{BUCKET}/killed/out/demo_annotated.mp4", tmp_path / "video.mp4")
    assert video == (local_run / "out" / "demo_annotated.mp4").read_bytes()

"""Real Dask and Ray processes: loopback only, and attaching to clusters started here."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import REPO, run_cli

from pipeline import PipelineConfig, VideoPipeline


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _listening(processes) -> list[tuple[int, str, str, int]]:
    found = []
    for proc in processes:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((proc.pid, proc.name(), conn.laddr.ip, conn.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_embedded_clusters_listen_on_loopback_only(tmp_path, sample_video):
    config = PipelineConfig(
        quality="fast", workers=2,
        models_dir=str(tmp_path), output_dir=str(tmp_path / "output"), llm_data_dir=str(tmp_path / "llm"),
    )  # fmt: skip
    me = psutil.Process()
    with VideoPipeline(config) as pipeline:
        batch = pipeline.process([sample_video])
        assert batch.success
        dask_pids = set(pipeline.dask.worker_pids())
        ray_pids = set(pipeline.ray.actor_pids())
        tree = [me, *me.children(recursive=True)]
        sockets = _listening(tree)
    pids = {pid for pid, *_ in sockets}
    names = {name for _, name, *_ in sockets}
    # the check saw the run's real processes: scheduler (this process), workers, Ray
    assert me.pid in pids
    assert dask_pids <= {p.pid for p in tree} and len(dask_pids) == 2
    assert ray_pids <= {p.pid for p in tree}
    assert any("gcs_server" in n or "raylet" in n for n in names), names
    exposed = [s for s in sockets if not _is_loopback(s[2])]
    assert exposed == [], f"listening beyond loopback: {exposed}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


@pytest.fixture
def external_clusters(tmp_path):
    """A Ray head (``ray start``) and a Dask scheduler plus one worker, on 127.0.0.1."""
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    bin_dir = Path(sys.executable).parent
    ray_tmp = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    started: list[subprocess.Popen] = []
    subprocess.run(
        [str(bin_dir / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={ray_tmp}", "--disable-usage-stats"],
        env=env, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ray_pids = [p.pid for p in psutil.process_iter(["cmdline"]) if str(ray_tmp) in " ".join(p.info["cmdline"] or [])]
    scheduler_file = tmp_path / "scheduler.json"
    started.append(
        subprocess.Popen(
            [
                str(bin_dir / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    )
    _wait_for(scheduler_file)
    started.append(
        subprocess.Popen(
            [
                str(bin_dir / "dask"),
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    )
    dask_address = json.loads(scheduler_file.read_text())["address"]
    from dask.distributed import Client

    with Client(dask_address, timeout="30s") as client:
        client.wait_for_workers(1, timeout=60)
    dask_pids = [p.pid for p in started]
    dask_pids += [c.pid for p in started for c in psutil.Process(p.pid).children(recursive=True)]
    yield {"ray": f"127.0.0.1:{port}", "dask": dask_address, "ray_pids": ray_pids, "dask_pids": dask_pids}
    for proc in reversed(started):
        proc.terminate()
    for proc in reversed(started):
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for pid in ray_pids:  # only the processes of the head started above
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).terminate()
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in ray_pids if psutil.pid_exists(p)], timeout=30)
    for proc in alive:
        proc.kill()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_attach_to_existing_clusters(tmp_path, sample_video, external_clusters):
    assert external_clusters["ray_pids"], "ray start left no process to check"
    env = {"RAY_AUTH_MODE": "token"} if (Path.home() / ".ray" / "auth_token").exists() else {}
    args = ["--video", str(sample_video), "--quality", "fast", "--batch_size", "100"]
    attached = run_cli(
        *args, "--models", "attached", "--dask_address", external_clusters["dask"],
        "--ray-address", external_clusters["ray"], "--stats", "attached.json", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert attached.returncode == 0, attached.stderr[-3000:]
    # the named Ray cluster does the analysis (a short clip's Dask shortcut is for the embedded Ray's start)
    phases = json.loads((tmp_path / "attached.json").read_text())["phases_s"]["videos"]["demo"]
    assert "analysis" in phases and "analysis_on" not in phases, phases
    embedded = run_cli(*args, "--models", "embedded", cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr[-3000:]

    from pipeline.outputs.pose_json import read_pose_json

    head_a, track_a = read_pose_json(tmp_path / "attached" / "demo_pose.json")
    head_e, track_e = read_pose_json(tmp_path / "embedded" / "demo_pose.json")
    assert head_a["settings"]["dask_address"] == external_clusters["dask"]
    assert head_a["settings"]["ray_address"] == external_clusters["ray"]
    assert head_e["settings"]["dask_address"] is None
    assert np.array_equal(track_a.frame_index, np.arange(230))
    assert np.array_equal(track_a.image_xyzv, track_e.image_xyzv, equal_nan=True)
    assert head_a["summary"] == head_e["summary"]
    # the attached run left the clusters running; the test stops exactly what it started
    assert all(psutil.pid_exists(pid) for pid in external_clusters["ray_pids"])


def test_embedded_dask_leaves_port_8787_alone():
    """The scheduler's HTTP server (health checks; the dashboard is off) takes an ephemeral
    loopback port: a run next to another that holds 8787 prints no port warning."""
    import warnings

    from pipeline.engines.dask_engine import DaskEngine

    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken by someone else: just as good
            holder.bind(("127.0.0.1", 8787))
            holder.listen()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine = DaskEngine(None, 1)
            try:
                ports = {
                    c.laddr.port
                    for c in psutil.Process().net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1"
                }
                assert engine.client.submit(sum, [1, 2]).result(timeout=30) == 3
            finally:
                engine.close()
    assert not [w for w in caught if "8787" in str(w.message)]
    assert len(ports) >= 2  # the scheduler's two servers, both on loopback

"""A real two-"machine" Ray + Dask cluster on one host, for tests: two network namespaces.

``two_nodes(tmp_path)`` makes two network namespaces joined by a veth pair, with addresses
in a private /24 that exists only inside them (no route to anything else), and starts:

* node A, the head (namespace A, the host's file system): a moto S3 server, a Ray head
  (``ray start --head``, dashboard off), a Dask scheduler and one Dask worker, so that the
  head can finish a run alone;
* node B, a worker node (namespace B, plus a private mount namespace): a fresh tmpfs on
  ``/tmp`` and ``/dev/shm``, empty tmpfs over the driver's inputs, outputs and model cache
  (the repository's ``public/``, ``output/``, ``models/``, LLM folders and
  ``~/.cache/pose-pipeline``), its own working folder, a Ray worker node and a Dask worker.
  Its processes get the S3 credentials and endpoint in their environment, as a cloud node has.

A driver runs in namespace A (``cluster.run_cli(...)``, ``cluster.run_a(...)``), because A's
and B's addresses are reachable only from inside the namespaces. Every process is found
through its network namespace (``ip netns pids``), so daemonized Ray processes are found too;
they are stopped by PID (never ``ray stop``, which stops every Ray on the machine), and
the namespaces are deleted at the end, which removes the veth pair.

What listens where: Dask and moto bind to the node's address only (the Dask scheduler's and
workers' HTTP servers need ``--dashboard-address <ip>:0``, or they take 0.0.0.0). Ray's
gcs_server, raylet and worker processes bind to the wildcard whatever the flags (Ray binds to
loopback only when the node address is loopback); in a namespace the wildcard reaches only
``lo`` and the node's veth address. Multi-node Ray needs ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
unset or 1: with 0 a worker node refuses to join.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from conftest import alive
from s3_server import S3Server, moto_command

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Fixed ports: each namespace has its own port space, so nothing else on the machine can hold them.
S3_PORT = 9000
RAY_PORT = 6379
DASK_PORT = 8786
# Node B's working folder, on its own /tmp.
B_HOME = "/tmp/node-b"
# The environment a node must not inherit from the machine that runs the tests.
CLEARED = (
    "RAY_ADDRESS",
    "DASK_SCHEDULER_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
    "S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)
# ... and what node B does not get from the driver either: it has its own caches.
CLEARED_ON_B = ("POSE_PIPELINE_CACHE", "XDG_CACHE_HOME")

# Node B's mounts, then a process that keeps its mount namespace alive (``nsenter -t`` target).
# $PWD is the host folder for B's Ray session: entered before /tmp is covered and bound
# (``mount -c``: by the working folder, not by a path) at Ray's temp dir on B's own /tmp.
# A repository (and its virtual environment) under /tmp is bound back the same way, through
# the working folder of a process that entered it before /tmp was covered, with the empty
# folders over the driver's files: B runs the same code from the same paths.
_B_MOUNTS = r"""
set -eu
ray_tmp=$1; shift
mount --make-rprivate /
for dir in "$@"; do mount -t tmpfs -o mode=0755 posetest-hidden "$dir"; done
keeper=
case "$POSETEST_REPO/" in /tmp/*) (cd "$POSETEST_REPO" && exec sleep infinity) & keeper=$! ;; esac
for _ in $(seq 500); do  # until the keeper is in the repository (5 s at most)
  [ -z "$keeper" ] || [ "$(readlink "/proc/$keeper/cwd")" = "$POSETEST_REPO" ] && break
  sleep 0.01
done
mount -t tmpfs -o mode=1777 posetest-tmp /tmp
mount -t tmpfs -o mode=1777 posetest-shm /dev/shm
if [ -n "$keeper" ]; then
  mkdir -p "$POSETEST_REPO"
  mount -c --rbind "/proc/$keeper/cwd" "$POSETEST_REPO"
  kill "$keeper"
fi
mkdir -p "$ray_tmp" "$NODE_HOME"
mount -c --bind . "$ray_tmp"
cd "$NODE_HOME"
echo ready
exec sleep infinity
"""

# Run in namespace A: both engines see both nodes; prints {"ray": {...}, "dask": {...}}.
_AWAIT = r"""
import json, sys, time
a, b, dask_address, ray_address, timeout, exclude = sys.argv[1:7]
deadline = time.monotonic() + float(timeout)
exclude = set(json.loads(exclude))
from distributed import Client
with Client(dask_address, timeout="30s") as client:
    client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
dask = {node: [w for w in workers if w.rsplit(":", 1)[0] == "tcp://" + ip] for node, ip in (("a", a), ("b", b))}
assert all(len(found) == 1 for found in dask.values()), workers
import ray
ray.init(address=ray_address, log_to_driver=False, logging_level="WARNING")
while True:
    alive = [n for n in ray.nodes() if n["Alive"] and n["NodeID"] not in exclude]
    nodes = {node: [n["NodeID"] for n in alive if n["NodeManagerAddress"] == ip] for node, ip in (("a", a), ("b", b))}
    if all(len(found) == 1 for found in nodes.values()):
        break
    if time.monotonic() > deadline:
        raise TimeoutError(f"Ray nodes: {alive}")
    time.sleep(0.2)
ray.shutdown()
print(json.dumps({"ray": {k: v[0] for k, v in nodes.items()}, "dask": {k: v[0] for k, v in dask.items()}}))
"""

# Run in namespace A: one S3 operation on the cluster's server (the host cannot reach it).
_S3 = r"""
import os, sys, s3fs
op, *args = sys.argv[1:]
fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["S3_ENDPOINT_URL"]})
if op == "mkdir":
    fs.mkdir(args[0])
elif op == "put":
    fs.put(args[0], args[1], recursive=True)
elif op == "get":
    fs.get(args[0], args[1], recursive=True)
elif op == "ls":
    print("\n".join(fs.find(args[0])))
elif op == "rm":
    fs.rm(args[0], recursive=True)
else:
    raise SystemExit(f"unknown operation {op}")
"""

_USERS = re.compile(r'\("([^"]*)",pid=(\d+),')


def _run(args: Sequence[str], timeout: float = 30, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def netns_list() -> list[str]:
    """The names of the machine's network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "nsenter", "ss", "mount"):
        if shutil.which(tool) is None:
            return f"network namespaces: `{tool}` is not installed"
    return None


def _cache_dirs() -> list[Path]:
    """The pipeline's asset cache as the driver resolves it (pipeline.assets.cache_dir), and the default."""
    found = [Path.home() / ".cache" / "pose-pipeline"]
    if os.environ.get("POSE_PIPELINE_CACHE"):
        found.append(Path(os.environ["POSE_PIPELINE_CACHE"]))
    elif os.environ.get("XDG_CACHE_HOME"):
        found.append(Path(os.environ["XDG_CACHE_HOME"]) / "pose-pipeline")
    return found


def default_hidden() -> list[Path]:
    """What node B must not see of the driver's files: inputs, outputs and model cache."""
    names = ("public", "output", "models", "llm_training_data", "llm_models")
    return [REPO / name for name in names] + _cache_dirs()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _children_first(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    def depth(proc: psutil.Process) -> int:
        try:
            return len(proc.parents())
        except psutil.Error:
            return 0

    return sorted(procs, key=depth, reverse=True)


@dataclass
class Listener:
    namespace: str
    proto: str  # tcp, udp
    ip: str  # "10.231.7.1", "127.0.0.1", "*" (every address of the namespace), "[::]"
    port: int
    process: str
    pid: int

    @property
    def wildcard(self) -> bool:
        return self.ip in ("*", "0.0.0.0", "[::]", "[::ffff:0.0.0.0]")


@dataclass
class TwoNodes:
    """A running two-node cluster. Addresses exist only inside the namespaces: drive it from A."""

    ns_a: str
    ns_b: str
    a: str  # node A's address (head): S3, Ray GCS, Dask scheduler, a Dask worker
    b: str  # node B's address (worker node): a Ray worker node, a Dask worker
    veths: tuple[str, str]
    workdir: Path  # the harness's folder under tmp_path: logs/, node-a/ (A's working folder)
    ray_tmp: Path  # Ray's --temp-dir on A (short: socket paths); B's Ray session lives in logs/ray-b
    hidden: list[str]  # host folders node B sees as empty tmpfs
    cpus: tuple[int, int] = (1, 1)
    s3: S3Server | None = None  # the moto server in A (endpoint, pid; env() gives credentials + endpoint)
    env: dict[str, str] = field(default_factory=dict)  # what a driver needs on top of os.environ
    ray_nodes: dict[str, str] = field(default_factory=dict)  # "a"/"b" -> Ray node id
    dask_workers: dict[str, str] = field(default_factory=dict)  # "a"/"b" -> Dask worker address
    timings: dict[str, float] = field(default_factory=dict)  # seconds, per start phase
    _popens: list[subprocess.Popen] = field(default_factory=list, repr=False)
    _logfiles: list = field(default_factory=list, repr=False)
    _created: list[str] = field(default_factory=list, repr=False)
    _anchor_b: subprocess.Popen | None = field(default=None, repr=False)
    _seen: dict[int, psutil.Process] = field(default_factory=dict, repr=False)

    # ---- what a test uses ---------------------------------------------------------------

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.a}:{S3_PORT}"

    @property
    def ray_address(self) -> str:
        return f"{self.a}:{RAY_PORT}"

    @property
    def dask_address(self) -> str:
        return f"tcp://{self.a}:{DASK_PORT}"

    @property
    def engine_env(self) -> dict[str, str]:
        """``env`` plus ``RAY_ADDRESS`` and ``DASK_SCHEDULER_ADDRESS`` (attach through the environment)."""
        return {**self.env, "RAY_ADDRESS": self.ray_address, "DASK_SCHEDULER_ADDRESS": self.dask_address}

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def driver_env(self, env: dict[str, str | None] | None = None) -> dict[str, str]:
        """The full environment of a driver: os.environ without stale cluster settings, plus
        ``self.env``, plus ``env`` (a value of None unsets a variable)."""
        full = {k: v for k, v in os.environ.items() if k not in CLEARED}
        full.update(self.env)
        for name, value in (env or {}).items():
            if value is None:
                full.pop(name, None)
            else:
                full[name] = value
        return full

    def in_a(self, *cmd: str | os.PathLike) -> list[str]:
        """``cmd`` as a command line that runs in namespace A (the host's file system)."""
        return ["ip", "netns", "exec", self.ns_a, *map(str, cmd)]

    def in_b(self, *cmd: str | os.PathLike, cwd: str = B_HOME) -> list[str]:
        """``cmd`` as a command line that runs on node B (its network and mount namespaces), in ``cwd``."""
        if self._anchor_b is None or self._anchor_b.poll() is not None:
            raise RuntimeError("node B is not running")
        return ["nsenter", "-t", str(self._anchor_b.pid), "-m", "-n", "--", "env", "-C", cwd, *map(str, cmd)]

    def run_a(
        self,
        cmd: Sequence[str | os.PathLike],
        *,
        cwd: Path,
        env: dict[str, str | None] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` as a driver in namespace A, in ``cwd``, with ``driver_env(env)``; output captured."""
        return subprocess.run(
            self.in_a(*cmd), cwd=cwd, env=self.driver_env(env), capture_output=True, text=True, timeout=timeout
        )

    def popen_a(
        self, cmd: Sequence[str | os.PathLike], *, cwd: Path, env: dict[str, str | None] | None = None, **kwargs
    ) -> subprocess.Popen:
        """Start ``cmd`` as a driver in namespace A (not waited for); stopped at the end if still running."""
        proc = subprocess.Popen(self.in_a(*cmd), cwd=cwd, env=self.driver_env(env), **kwargs)
        self._popens.append(proc)
        return proc

    def python_a(
        self,
        code: str,
        *args: str | os.PathLike,
        cwd: Path,
        env: dict[str, str | None] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        """``python -c code args...`` as a driver in namespace A."""
        return self.run_a([sys.executable, "-c", code, *args], cwd=cwd, env=env, timeout=timeout)

    def cli_command(self, *args: str | os.PathLike) -> list[str]:
        return [sys.executable, str(REPO / "pipeline.py"), *map(str, args)]

    def run_cli(
        self, *args: str | os.PathLike, cwd: Path, env: dict[str, str | None] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """``python pipeline.py ARGS`` as a user on the head node would run it (conftest.run_cli, in A)."""
        return self.run_a(self.cli_command(*args), cwd=cwd, env=env, timeout=timeout)

    def popen_cli(
        self, *args: str | os.PathLike, cwd: Path, env: dict[str, str | None] | None = None, **kwargs
    ) -> subprocess.Popen:
        """``python pipeline.py ARGS`` in A, not waited for (for a test that kills node B mid-run)."""
        return self.popen_a(self.cli_command(*args), cwd=cwd, env=env, **kwargs)

    def run_b(self, cmd: Sequence[str | os.PathLike], *, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``cmd`` on node B (its view of the files, its network), with B's environment."""
        return subprocess.run(self.in_b(*cmd), env=self._node_env("b"), capture_output=True, text=True, timeout=timeout)

    def s3_call(self, op: str, *args: str | os.PathLike, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """One S3 operation through namespace A: ``mkdir BUCKET``, ``put LOCAL s3://..``,
        ``get s3://.. LOCAL``, ``ls s3://..`` (stdout: one key a line), ``rm s3://..``. Raises on failure."""
        result = self.python_a(_S3, op, *args, cwd=cwd or self.workdir, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"s3 {op} {args} failed: {result.stderr[-2000:]}")
        return result

    def pids(self, node: str) -> list[int]:
        """Every process now in node ``"a"`` or ``"b"`` (its network namespace)."""
        namespace = {"a": self.ns_a, "b": self.ns_b}[node]
        result = _run(["ip", "netns", "pids", namespace], check=False)
        return [int(word) for word in result.stdout.split()]

    def pids_a(self) -> list[int]:
        return self.pids("a")

    def pids_b(self) -> list[int]:
        return self.pids("b")

    def kill_node_b(self, timeout: float = 15) -> list[int]:
        """SIGKILL every process of node B at once (Ray's raylet and workers, the Dask nanny and
        worker, the mount anchor), as a machine that loses power; returns their PIDs once all are gone.
        B's mounts go with the last of them; the namespace and its address stay."""
        procs = self._processes(self.ns_b)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        deadline = time.monotonic() + timeout
        while self.pids_b() or alive(procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node B's processes did not die: {self.pids_b()}")
            for proc in self._processes(self.ns_b):  # anything that was starting meanwhile
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            time.sleep(0.05)
        self._reap()
        self._anchor_b = None
        return [proc.pid for proc in procs]

    def start_node_b(self, timeout: float = 120) -> None:
        """Start node B: its mounts, a Ray worker node and a Dask worker (again after ``kill_node_b``)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        dead = [self.ray_nodes["b"]] if "b" in self.ray_nodes else []
        ray_b_logs = self.logs / "ray-b"
        ray_b_logs.mkdir(parents=True, exist_ok=True)
        anchor_log = self.logs / "node-b.log"
        seen = anchor_log.stat().st_size if anchor_log.exists() else 0  # a restart appends to the log
        self._anchor_b = self._spawn(
            "node-b",
            ["ip", "netns", "exec", self.ns_b, "unshare", "-m", "--propagation", "private"]
            + ["bash", "-c", _B_MOUNTS, "node-b", str(self.ray_tmp), *self.hidden],
            env={**self._node_env("b"), "NODE_HOME": B_HOME, "POSETEST_REPO": str(REPO)},
            cwd=ray_b_logs,
        )
        while b"ready" not in anchor_log.read_bytes()[seen:]:
            self._check_alive(self._anchor_b, "node B's mounts", anchor_log, deadline)
            time.sleep(0.05)
        self.timings["b_mounts"] = time.monotonic() - t0
        env_b = self._node_env("b")
        self._spawn(
            "dask-worker-b",
            self.in_b(*self._dask_worker(self.b, "node-b"), "--local-directory", f"{B_HOME}/dask"),
            env=env_b,
        )
        ray_b = self._spawn(
            "ray-b",
            self.in_b(
                BIN / "ray",
                "start",
                f"--address={self.ray_address}",
                f"--node-ip-address={self.b}",
                f"--num-cpus={self.cpus[1]}",
                "--disable-usage-stats",
            ),  # fmt: skip
            env=env_b,
        )
        self._wait_exit(ray_b, "ray start (node B)", self.logs / "ray-b.log", deadline)
        self.timings["b_ray_start"] = time.monotonic() - t0
        self._await_cluster(deadline, exclude=dead)
        self.timings["b_ready"] = time.monotonic() - t0

    def listeners(self) -> list[Listener]:
        """Every listening TCP socket and bound UDP socket in both namespaces (``ss``)."""
        found = []
        for namespace in (self.ns_a, self.ns_b):
            out = _run(["ip", "netns", "exec", namespace, "ss", "-Hlntup"]).stdout
            for line in out.splitlines():
                parts = line.split()
                if len(parts) < 5:
                    continue
                ip, _, port = parts[4].rpartition(":")
                users = _USERS.findall(line) or [("?", "0")]
                for name, pid in users:
                    found.append(Listener(namespace, parts[0], ip.split("%")[0], int(port), name, int(pid)))
        return found

    def addresses(self, node: str) -> list[str]:
        """The IP addresses that exist in node ``"a"`` or ``"b"``: what its wildcard listeners reach."""
        namespace = {"a": self.ns_a, "b": self.ns_b}[node]
        out = _run(["ip", "-n", namespace, "-o", "addr", "show"]).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines()]

    # ---- internals ----------------------------------------------------------------------

    def _node_env(self, node: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        if node == "b":
            for name in CLEARED_ON_B:
                env.pop(name, None)
        env.update(self.env)
        return env

    def _dask_worker(self, host: str, name: str) -> list[str]:
        return [
            str(BIN / "dask"), "worker", self.dask_address, "--host", host, "--name", name,
            "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--dashboard-address", f"{host}:0",
        ]  # fmt: skip

    def _spawn(self, name: str, cmd: Sequence[str | os.PathLike], *, env: dict, cwd: Path | None = None):
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed at teardown
        self._logfiles.append(log)
        proc = subprocess.Popen(
            list(map(str, cmd)), env=env, cwd=cwd or self.workdir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._popens.append(proc)
        return proc

    def _check_alive(self, proc: subprocess.Popen, what: str, log: Path, deadline: float) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready in time; {log}:\n{_tail(log)}")

    def _wait_exit(self, proc: subprocess.Popen, what: str, log: Path, deadline: float) -> None:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{what} did not finish in time; {log}:\n{_tail(log)}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed ({proc.returncode}); {log}:\n{_tail(log)}")

    def _wait_listening(self, port: int, proc: subprocess.Popen, what: str, deadline: float) -> None:
        log = self.logs / f"{what}.log"
        while True:
            out = _run(["ip", "netns", "exec", self.ns_a, "ss", "-Hltn", f"sport = :{port}"], check=False).stdout
            if f"{self.a}:{port}" in out:
                return
            self._check_alive(proc, what, log, deadline)
            time.sleep(0.05)

    def _await_cluster(self, deadline: float, exclude: Sequence[str] = ()) -> None:
        timeout = max(5.0, deadline - time.monotonic())
        result = self.python_a(
            _AWAIT, self.a, self.b, self.dask_address, self.ray_address, f"{timeout:.0f}", json.dumps(list(exclude)),
            cwd=self.workdir, timeout=timeout + 30,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"the cluster did not come up: {result.stderr[-3000:]}")
        found = json.loads(result.stdout.strip().splitlines()[-1])
        self.ray_nodes = found["ray"]
        self.dask_workers = found["dask"]

    def _processes(self, namespace: str) -> list[psutil.Process]:
        """The processes in ``namespace``, children first; remembered for the final check."""
        result = _run(["ip", "netns", "pids", namespace], check=False)
        procs = []
        for word in result.stdout.split():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(int(word))
                self._seen.setdefault(proc.pid, proc)
                procs.append(proc)
        return _children_first(procs)

    def _reap(self) -> None:
        for proc in self._popens:
            proc.poll()

    def _create(self) -> None:
        for namespace in (self.ns_a, self.ns_b):
            result = _run(["ip", "netns", "add", namespace], check=False)
            if result.returncode != 0:
                reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"rc {result.returncode}"
                if re.search(r"not permitted|permission denied|read-only", reason, re.IGNORECASE):
                    pytest.skip(f"cannot create a network namespace: {reason}")
                raise RuntimeError(f"ip netns add {namespace}: {reason}")
            self._created.append(namespace)
        veth_a, veth_b = self.veths
        # made inside the namespaces: the pair never exists in the host's namespace
        _run(["ip", "-n", self.ns_a, "link", "add", veth_a, "type", "veth", "peer", "name", veth_b, "netns", self.ns_b])
        for namespace, dev, ip in ((self.ns_a, veth_a, self.a), (self.ns_b, veth_b, self.b)):
            _run(["ip", "-n", namespace, "addr", "add", f"{ip}/24", "dev", dev])
            _run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            _run(["ip", "-n", namespace, "link", "set", dev, "up"])

    def _start(self, timeout: float) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        self._create()
        self.timings["namespaces"] = time.monotonic() - t0
        node_a = self.workdir / "node-a"
        node_a.mkdir()
        env_a = self._node_env("a")
        s3 = self._spawn("s3", self.in_a(*moto_command(self.a, S3_PORT)), env=env_a, cwd=node_a)
        scheduler = self._spawn(
            "dask-scheduler",
            self.in_a(
                BIN / "dask",
                "scheduler",
                "--host",
                self.a,
                "--port",
                str(DASK_PORT),
                "--no-dashboard",
                "--dashboard-address",
                f"{self.a}:0",
            ),  # fmt: skip
            env=env_a,
            cwd=node_a,
        )
        ray_head = self._spawn(
            "ray-head",
            self.in_a(
                BIN / "ray",
                "start",
                "--head",
                f"--node-ip-address={self.a}",
                f"--port={RAY_PORT}",
                f"--num-cpus={self.cpus[0]}",
                "--include-dashboard=false",
                f"--temp-dir={self.ray_tmp}",
                "--disable-usage-stats",
            ),  # fmt: skip
            env=env_a,
            cwd=node_a,
        )
        self._wait_listening(DASK_PORT, scheduler, "dask-scheduler", deadline)
        self._spawn(
            "dask-worker-a",
            self.in_a(*self._dask_worker(self.a, "node-a"), "--local-directory", node_a / "dask"),
            env=env_a,
            cwd=node_a,
        )
        self._wait_listening(S3_PORT, s3, "s3", deadline)
        self.s3 = S3Server(self.s3_endpoint, s3.pid)
        self._wait_exit(ray_head, "ray start --head", self.logs / "ray-head.log", deadline)
        self.timings["head"] = time.monotonic() - t0
        self.start_node_b(timeout=max(10.0, deadline - time.monotonic()))
        self.timings["ready"] = time.monotonic() - t0

    def _teardown(self) -> list[str]:
        """Stop every process of both nodes by PID (children first; SIGTERM, then SIGKILL), delete
        the namespaces, and check nothing is left. Returns the problems found (empty: all clean)."""
        t0 = time.monotonic()
        problems: list[str] = []
        namespaces = [ns for ns in (self.ns_b, self.ns_a) if ns in self._created]
        procs = [proc for ns in namespaces for proc in self._processes(ns)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, lasting = psutil.wait_procs(procs, timeout=1.5)
        stubborn = []
        for proc in alive(lasting):
            with contextlib.suppress(psutil.Error):
                stubborn.append(f"{proc.pid} {proc.name()}")
        for _ in range(50):  # bounded: a process that was forking meanwhile is caught on a later round
            leftovers = alive([*lasting, *(p for ns in namespaces for p in self._processes(ns))])
            if not leftovers:
                break
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            _, lasting = psutil.wait_procs(leftovers, timeout=0.2)
        for proc in self._popens:  # ours that never reached a namespace (or are still exec'ing)
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"pid {proc.pid} ({proc.args[:4]}) did not exit")
        for log in self._logfiles:
            log.close()
        for ns in namespaces:
            if self.pids("a" if ns == self.ns_a else "b"):
                problems.append(f"processes left in {ns}: {self.pids('a' if ns == self.ns_a else 'b')}")
        for ns in namespaces:
            result = _run(["ip", "netns", "del", ns], check=False)
            if result.returncode != 0:
                problems.append(f"ip netns del {ns}: {result.stderr.strip()}")
        left = set(netns_list()) & {self.ns_a, self.ns_b}
        if left:
            problems.append(f"namespaces left: {sorted(left)}")
        links = _run(["ip", "-o", "link", "show"]).stdout
        problems += [
            f"veth left in the host namespace: {v}" for v in self.veths if f" {v}@" in links or f" {v}:" in links
        ]
        survivors = alive(self._seen.values())
        if survivors:
            problems.append(f"processes still running: {[p.pid for p in survivors]}")
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        self.timings["teardown"] = time.monotonic() - t0
        with contextlib.suppress(OSError):
            (self.logs / "timings.json").write_text(json.dumps(self.timings, indent=1))
            lines = [f"killed after SIGTERM: {', '.join(stubborn) or 'none'}", *problems]
            (self.logs / "teardown.txt").write_text("\n".join(lines) + "\n")
        return problems


@contextlib.contextmanager
def two_nodes(
    tmp_path: Path,
    *,
    cpus: tuple[int, int] = (1, 1),
    hide: Iterable[str | os.PathLike] | None = None,
    timeout: float = 150,
) -> Iterator[TwoNodes]:
    """A head node A and a worker node B, each in its own network namespace, for the ``with`` block.

    ``cpus``: Ray CPUs of A and B. ``hide``: host folders node B sees empty (default:
    ``default_hidden()``; missing ones are skipped, the default model cache is created first so it
    can be hidden). ``timeout`` bounds the start. Skips the test when namespaces cannot be made.
    Everything started is stopped by PID and the namespaces are deleted on exit, also on failure;
    leftovers fail the test (or are warned about when the block already failed).
    """
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    token = secrets.token_hex(3)
    subnet = f"10.231.{int(token[:2], 16)}"
    workdir = Path(tmp_path) / f"cluster-{token}"
    (workdir / "logs").mkdir(parents=True)
    default_cache = Path.home() / ".cache" / "pose-pipeline"
    if hide is None:
        with contextlib.suppress(OSError):
            default_cache.mkdir(parents=True, exist_ok=True)
        hide = default_hidden()
    hidden = sorted({str(Path(p).resolve()) for p in hide if Path(p).is_dir()})
    cluster = TwoNodes(
        ns_a=f"posetest-a-{token}",
        ns_b=f"posetest-b-{token}",
        a=f"{subnet}.1",
        b=f"{subnet}.2",
        veths=(f"pta-{token}", f"ptb-{token}"),
        workdir=workdir,
        ray_tmp=Path(tempfile.mkdtemp(prefix="pt", dir="/tmp")),
        hidden=hidden,
        cpus=cpus,
    )
    cluster.env = {
        **S3Server(cluster.s3_endpoint, 0).env(),  # credentials and endpoint, as a cloud node has them
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # 0 makes a worker node refuse to join
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    # Ray's guidance for a network it does not trust: token authentication on every node and
    # in the driver (a fresh token per cluster, in the environment: node B cannot read A's files).
    cluster.env["RAY_AUTH_MODE"] = "token"
    cluster.env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    ok = False
    try:
        cluster._start(timeout)
        yield cluster
        ok = True
    finally:
        problems = cluster._teardown()
        if problems and not ok:
            warnings.warn(f"two_nodes teardown: {'; '.join(problems)}", stacklevel=2)
    if problems:
        raise RuntimeError(f"two_nodes teardown left things behind: {'; '.join(problems)}")

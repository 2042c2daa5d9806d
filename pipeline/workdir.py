"""A video's work folder: what a run has finished, so a re-run after a crash
recomputes only what is missing, and the lock that keeps two runs apart.

Each video gets ``<output>/.work/<name>/`` with:

- ``manifest.json``: the input's fingerprint (resolved path, size, mtime, a
  hash of its first MiB), the extraction key (model, landmarker settings,
  chunk plan) and, once the video is complete, the output key and its result
  (``complete``); when the last attempt failed, its result too (``failed``);
- ``chunk-NNNNN.npz``: the landmarks of one finished chunk, written by the
  Dask worker that computed it (atomically), so a file that exists is complete;
- ``frames.npz``: the video's frame table, when the video is on object storage
  (the workers read it instead of the whole video);
- ``analysis/``: the stored analysis (``pipeline.analysis.store``), kept after
  success so a re-run that finds one output missing writes that output alone.

and ``<output>/.work/<name>.lock``, the video's lock (``pipeline.storage.locks``):
a run works on a video only while it holds it. The lock file sits next to the
folder, never in it, so emptying the folder cannot drop a lock.

A different input or extraction key empties the folder; a different output
key keeps the chunks and redoes the analysis and the outputs. Every file goes
through ``pipeline.storage``, so a process killed at any point leaves either the
old or the new file, never a partial one.

:func:`video_states` reads every work folder of an output folder: what
``summary.csv`` is written from.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.errors import redact
from pipeline.pose import BackendSettings, track_chunk
from pipeline.pose.handover import stitch
from pipeline.pose.types import ARRAY_NAMES, Handover, PoseChunk
from pipeline.video.plan import ChunkSpec

logger = logging.getLogger(__name__)

WORK_FOLDER = ".work"
MANIFEST = "manifest.json"
FRAME_TABLE = "frames.npz"
LOCK_SUFFIX = ".lock"
FORMAT_VERSION = 1
# The stored analysis' layout (``pipeline.analysis.store``); one of another layout is redone.
# 2: per-frame arrays in lanes, with the person id of each lane and frame.
ANALYSIS_FORMAT = 2
HEAD_BYTES = 1024**2


def fingerprint(path: str | os.PathLike) -> dict:
    """What identifies an input file's content without reading all of it: its location,
    size, modification time (a local file) or version tag (an object's ETag), and a hash
    of its first MiB."""
    digest = hashlib.sha256()
    if storage.is_local(path):
        file = Path(path).resolve()
        stat = file.stat()
        with open(file, "rb") as fh:
            digest.update(fh.read(HEAD_BYTES))
        return {
            "path": str(file),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "head_sha256": digest.hexdigest(),
        }
    size, tag = storage.version(path)
    with storage.open_file(path, "rb", block_size=HEAD_BYTES, cache_type="none") as fh:  # one ranged GET
        digest.update(fh.read(HEAD_BYTES))
    return {"path": redact(path), "size": size, "version": tag, "head_sha256": digest.hexdigest()}


# -- chunk artifacts -------------------------------------------------------------
@dataclass(frozen=True)
class ChunkRecord:
    """What the driver keeps of a finished chunk (the landmarks stay on disk)."""

    index: int
    start: int
    frames: int  # the chunk's own frames; its tail (``tail`` frames after them) is stored too
    frames_with_person: int
    path: str
    reused: bool = False
    tail: int = 0
    settled: bool = True  # the next chunk's tracker caught up within the tail
    slots: int = 1  # person slots the chunk used
    # Where and when the chunk was tracked (see ``stats.py``); zero for a reused chunk.
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0


def save_chunk(path: str | os.PathLike, index: int, chunk: PoseChunk) -> ChunkRecord:
    """Write ``chunk`` atomically; returns its record."""
    arrays = {name: getattr(chunk, name) for name in ARRAY_NAMES}
    if chunk.handover is not None:
        arrays["handover"] = chunk.handover.to_array()
    storage.atomic_write(path, lambda fh: np.savez(fh, **arrays))
    return _record(path, index, chunk)


def _record(path, index: int, chunk: PoseChunk, reused: bool = False) -> ChunkRecord:
    start = int(chunk.frame_index[0]) if chunk.num_frames else -1
    handover = chunk.handover or Handover(0, True)
    own = chunk.slice(0, chunk.num_frames - handover.tail)
    seen = int(own.detected.any(axis=1).sum())
    return ChunkRecord(
        index, start, own.num_frames, seen, os.fspath(path), reused, handover.tail, handover.settled, chunk.num_slots
    )


def load_chunk(path: str | os.PathLike) -> PoseChunk:
    with storage.open_file(path) as fh, np.load(fh) as data:
        handover = Handover.from_array(data["handover"]) if "handover" in data else None
        return PoseChunk(**{name: data[name] for name in ARRAY_NAMES if name in data}, handover=handover)


def load_stitched(records: list[ChunkRecord]) -> tuple[PoseChunk, dict]:
    """The chunks of one video as one track (``pipeline.pose.handover.stitch``), and the stitching report."""
    return stitch([load_chunk(r.path) for r in sorted(records, key=lambda r: r.index)])


def load_track(records: list[ChunkRecord]) -> PoseChunk:
    """The chunks of one video as one track, every frame once, in order."""
    return load_stitched(records)[0]


# -- work folders ------------------------------------------------------------------
class WorkFolder:
    """One video's folder under ``<output>/.work`` (a local path or a URL, like the output folder)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = storage.absolute(root)
        self.lock = storage.lock_for(self.root + LOCK_SUFFIX)

    @classmethod
    def for_video(cls, output_dir: str | os.PathLike, name: str) -> WorkFolder:
        return cls(storage.join(output_dir, WORK_FOLDER, name))

    @property
    def manifest_path(self) -> str:
        return storage.join(self.root, MANIFEST)

    @property
    def analysis_folder(self) -> str:
        return storage.join(self.root, "analysis")

    @property
    def frame_table_path(self) -> str:
        """The video's frame table, for workers that read the video from object storage."""
        return storage.join(self.root, FRAME_TABLE)

    def chunk_path(self, index: int) -> str:
        return storage.join(self.root, f"chunk-{index:05d}.npz")

    def manifest(self) -> dict | None:
        try:
            data = storage.read_json(self.manifest_path)
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
        if storage.is_local(self.root):
            root = storage.local_path(self.root)
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(".*.part"):  # left by a process killed while writing
                stale.unlink(missing_ok=True)
        storage.write_json(self.manifest_path, manifest)
        return manifest

    def clear(self) -> None:
        storage.remove_tree(self.root)

    def finished_chunks(self, starts: dict[int, int]) -> dict[int, ChunkRecord]:
        """Chunk files that load and start where the plan says (``starts``: index -> first frame)."""
        found = {}
        present = set(storage.list_names(self.root))
        for index, start in starts.items():
            path = self.chunk_path(index)
            if storage.name_of(path) not in present:
                continue
            try:
                chunk = load_chunk(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                logger.warning("%s: unreadable, recomputing it (%s)", path, exc)
                storage.remove(path)
                continue
            if chunk.num_frames and int(chunk.frame_index[0]) != start:
                storage.remove(path)
                continue
            found[index] = _record(path, index, chunk, reused=True)
        return found

    def completed(self, source: dict, output_key: dict) -> dict | None:
        """The recorded result when this input was finished with ``output_key``
        (whether its outputs still exist is the caller's question)."""
        manifest = self.manifest() or {}
        done = manifest.get("complete")
        if not done or manifest.get("source") != source or done.get("settings") != output_key:
            return None
        return done["result"]

    def same_chunks(self, source: dict, extract_key: dict) -> bool:
        """The folder's chunks are (or would be recomputed as) those of ``source`` and ``extract_key``."""
        manifest = self.manifest() or {}
        return manifest.get("source") == source and manifest.get("extract") == extract_key

    def mark_complete(self, output_key: dict, result: dict) -> None:
        manifest = self.manifest() or {"format": FORMAT_VERSION}
        manifest["complete"] = {"settings": output_key, "result": result}
        manifest.pop("failed", None)
        storage.write_json(self.manifest_path, manifest)

    def mark_failed(self, result: dict) -> None:
        """Record a failed attempt (what ``summary.csv`` shows); a complete record stays for resuming."""
        manifest = self.manifest() or {"format": FORMAT_VERSION}
        manifest["failed"] = result
        storage.write_json(self.manifest_path, manifest)

    @property
    def has_analysis(self) -> bool:
        """A complete stored analysis of the current layout (``ANALYSIS_FORMAT``) is here."""
        try:
            meta = storage.read_json(storage.join(self.analysis_folder, "meta.json"))
        except (OSError, ValueError):
            return False
        return meta.get("format") == ANALYSIS_FORMAT

    def drop_analysis(self) -> None:
        storage.remove_tree(self.analysis_folder)


# -- the whole output folder ---------------------------------------------------------
@dataclass(frozen=True)
class VideoState:
    """What the work folder of one video says now."""

    name: str
    status: str  # "ok", "failed", "in progress" (another process holds the lock), "incomplete" (a run stopped)
    result: dict | None = None  # the recorded VideoResult (``to_dict``), for "ok" and "failed"
    source: str = ""  # the input, when the manifest names it
    holder: storage.LockOwner | None = field(default=None, compare=False)


def video_states(output_dir: str | os.PathLike) -> list[VideoState]:
    """Every video with a work folder or a lock in ``output_dir``, by name.

    A video whose lock another process holds is "in progress", whatever its
    manifest says (that run may be redoing it); the caller holds no video lock.
    """
    root = storage.join(output_dir, WORK_FOLDER)
    entries = storage.list_names(root)
    names = {n.removesuffix(LOCK_SUFFIX) for n in entries if n.endswith(LOCK_SUFFIX)}
    names |= {n for n in entries if not n.endswith(LOCK_SUFFIX) and storage.exists(storage.join(root, n, MANIFEST))}
    states = []
    for name in sorted(names):
        work = WorkFolder(storage.join(root, name))
        manifest = work.manifest() or {}
        source = manifest.get("source", {}).get("path", "")
        holder = work.lock.holder()
        if holder is not None:
            states.append(VideoState(name, "in progress", None, source, holder))
        elif manifest.get("failed"):
            states.append(VideoState(name, "failed", manifest["failed"], source))
        elif manifest.get("complete"):
            states.append(VideoState(name, "ok", manifest["complete"]["result"], source))
        elif manifest:
            states.append(VideoState(name, "incomplete", None, source))
    return states


def extract_chunk(spec: ChunkSpec, settings: BackendSettings, artifact: str) -> ChunkRecord:
    """Task: decode ``spec``'s frames, track them with the pose backend of
    ``settings``, write the landmarks to ``artifact`` and return the chunk's small
    record. The landmarks never travel back to the driver."""
    started = time.time()
    record = save_chunk(artifact, spec.index, track_chunk(spec, settings))
    return replace(record, worker=f"{socket.gethostname()}:{os.getpid()}", started=started, finished=time.time())

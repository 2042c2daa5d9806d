"""The analysis on disk: written by the analyzer, read back by the output writers
a frame range at a time.

A stored analysis is a folder of ``.npy`` files (memory-mappable) plus
``meta.json`` (summary and events). It is written under a temporary name and
renamed, so a folder that exists is complete. Each read maps the files, copies
the rows asked for and unmaps them, so a reader's memory follows the range it
reads, not the video's length.

On object storage (a work folder at a URL) the files are written to a local
temporary folder and uploaded, ``meta.json`` last: a folder whose ``meta.json``
exists is complete there too. A reader copies the folder once into a local
cache (the last :data:`CACHED_ANALYSES` analyses of the process, by location and
``meta.json``'s version) and maps the copies: memory maps need a local file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline import storage
from pipeline.analysis.analyzer import Analysis
from pipeline.pose.types import ARRAY_NAMES, PoseChunk
from pipeline.workdir import ANALYSIS_FORMAT

ANALYSIS_ARRAYS = (
    "landmarks_px",
    "angles",
    "angular_velocity",
    "com_px",
    "com_height_bh",
    "velocity_px_s",
    "contact",
    "person",
)


# Stored analyses a process keeps local copies of, when they live on object storage.
CACHED_ANALYSES = 2
_copies: OrderedDict[tuple, tempfile.TemporaryDirectory] = OrderedDict()
_copies_lock = threading.Lock()


def _write_files(tmp: Path, analysis: Analysis) -> None:
    for name in ARRAY_NAMES:
        np.save(tmp / f"track.{name}.npy", getattr(analysis.track, name))
    for name in (*ANALYSIS_ARRAYS, "body_height_px"):
        np.save(tmp / f"{name}.npy", getattr(analysis, name))
    index = analysis.track.frame_index
    meta = {
        "format": ANALYSIS_FORMAT,
        "summary": analysis.summary,
        "events": list(analysis.events),
        "num_frames": int(index.shape[0]),
        "first_frame": int(index[0]) if index.shape[0] else 0,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, allow_nan=True), encoding="utf-8")


def save_analysis(folder: str | os.PathLike, analysis: Analysis) -> str:
    """Write ``analysis`` as ``.npy`` files plus ``meta.json``; atomic per folder
    (on object storage: complete once ``meta.json`` is there). Returns the folder."""
    if not storage.is_local(folder):
        return _upload_analysis(os.fspath(folder), analysis)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_files(tmp, analysis)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(folder)  # a failed write names no file: say where it went
        raise
    return str(folder)


def _upload_analysis(folder: str, analysis: Analysis) -> str:
    storage.remove_tree(folder)  # an older analysis' meta.json must not outlive its arrays
    with tempfile.TemporaryDirectory(prefix="pose-analysis-") as tmp:
        _write_files(Path(tmp), analysis)
        names = sorted(p.name for p in Path(tmp).iterdir())
        for name in [n for n in names if n != "meta.json"] + ["meta.json"]:
            storage.put_file(Path(tmp, name), storage.join(folder, name))
    return folder


def local_copy(folder: str) -> Path:
    """A local folder holding the stored analysis at ``folder``: the folder itself when it is
    local, else a copy in this process' cache (fetched once per version of ``meta.json``)."""
    if storage.is_local(folder):
        return storage.local_path(folder)
    key = (folder, storage.version(storage.join(folder, "meta.json")))
    with _copies_lock:
        if key in _copies:
            _copies.move_to_end(key)
            return Path(_copies[key].name)
        copy = tempfile.TemporaryDirectory(prefix="pose-analysis-")
        try:
            for name in storage.list_names(folder):
                storage.get_file(storage.join(folder, name), Path(copy.name, name))
        except BaseException:
            copy.cleanup()
            raise
        _copies[key] = copy
        while len(_copies) > CACHED_ANALYSES:
            _copies.popitem(last=False)[1].cleanup()
        return Path(copy.name)


class AnalysisStore:
    """Reads a saved analysis back, whole or a frame range at a time."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.location = os.fspath(folder)
        meta = storage.read_json(storage.join(self.location, "meta.json"))
        self.summary: dict = meta["summary"]
        self.events: tuple = tuple(meta["events"])
        self._folder: Path | None = None
        if "num_frames" in meta:
            self.num_frames, self.first_frame = int(meta["num_frames"]), int(meta["first_frame"])
        else:  # (stored before meta.json said it)
            index = np.load(self.folder / "track.frame_index.npy", mmap_mode="r")
            self.num_frames = int(index.shape[0])
            self.first_frame = int(index[0]) if self.num_frames else 0
            del index

    @property
    def folder(self) -> Path:
        """The local folder the arrays are mapped from (on object storage: fetched on first use)."""
        if self._folder is None:
            self._folder = local_copy(self.location)
        return self._folder

    def read(self, start: int | None = None, stop: int | None = None) -> Analysis:
        """Frames ``[start, stop)`` (frame numbers; default: all)."""
        start = self.first_frame if start is None else start
        stop = self.first_frame + self.num_frames if stop is None else stop
        rows = slice(max(0, start - self.first_frame), max(0, stop - self.first_frame))

        def rows_of(name: str) -> np.ndarray:
            return self.array(name, lambda mapped: mapped[rows])

        track = PoseChunk(**{name: rows_of(f"track.{name}") for name in ARRAY_NAMES})
        return Analysis(
            track=track,
            body_height_px=np.load(self.folder / "body_height_px.npy"),
            events=self.events,
            summary=self.summary,
            **{name: rows_of(name) for name in ANALYSIS_ARRAYS},
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

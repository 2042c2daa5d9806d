"""Which files a run processes, and the output name of each."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import InputError
from pipeline.video.probe import VIDEO_EXTENSIONS


def discover_videos(inputs: Iterable[str | Path] = (), videos: Iterable[str | Path] = ()) -> list[Path]:
    """Videos under each folder of ``inputs`` (recursive, by extension; a file is
    taken as is) plus every file of ``videos``. Raises InputError for a missing
    path or when nothing is found."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file():
            found.append(path)
            continue
        in_folder = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() and not p.name.startswith(".")
        )
        if not in_folder:
            extensions = " ".join(sorted(VIDEO_EXTENSIONS))
            raise InputError(f"{path}: no video files in this folder (looked for {extensions})")
        found.extend(in_folder)
    for item in videos:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if not path.is_file():
            raise InputError(f"{path}: not a file")
        found.append(path)
    if not found:
        raise InputError("no input given (use --input FOLDER or --video FILE)")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "video"


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A distinct, readable output stem per input: the file stem, or
    ``<parent>__<stem>`` where stems collide, or a short hash as a last resort."""
    stems = Counter(_clean(p.stem) for p in paths)
    names: dict[Path, str] = {}
    for path in paths:
        stem = _clean(path.stem)
        names[path] = stem if stems[stem] == 1 else f"{_clean(path.resolve().parent.name)}__{stem}"
    counts = Counter(names.values())
    for path, name in names.items():
        if counts[name] > 1:
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            names[path] = f"{name}-{digest}"
    return names

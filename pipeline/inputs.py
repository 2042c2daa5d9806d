"""Which files a run processes, and the output name of each.

An input is a local path or a URL: a folder on object storage (``s3://bucket/videos``)
is listed like a local one; an ``http(s)://`` URL names one file (a web server lists no folders).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pipeline import storage
from pipeline.config import PersonHeight
from pipeline.errors import ConfigError, InputError, redact
from pipeline.video.probe import VIDEO_EXTENSIONS

Input = Path | str  # a local path, or a URL (kept as the user wrote it)
REMOTE_FILE_ONLY = ("http", "https")  # protocols whose "folders" cannot be listed


def as_input(item: str | Path) -> Input:
    """A local path as a Path, a URL as a string."""
    return Path(item) if storage.is_local(item) else str(item)


def _is_video_name(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")


def _folder_videos(folder: Input) -> list[Input]:
    if isinstance(folder, Path):
        return sorted(p for p in folder.rglob("*") if _is_video_name(p.name) and p.is_file())
    return [f for f in storage.walk_files(folder) if _is_video_name(storage.name_of(f))]


def _kind(item: Input) -> str:
    """``file``, ``folder`` or ``missing``."""
    if isinstance(item, Path):
        return "file" if item.is_file() else "folder" if item.exists() else "missing"
    if storage.protocol_of(item) in REMOTE_FILE_ONLY:
        return "file"  # the probe says whether it is there
    try:
        return "file" if storage.is_file(item) else "folder" if storage.is_dir(item) else "missing"
    except PermissionError as exc:
        raise InputError(f"{redact(item)}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"{redact(item)}: cannot be listed ({exc.strerror or type(exc).__name__})") from exc


def discover_videos(inputs: Iterable[str | Path] = (), videos: Iterable[str | Path] = ()) -> list[Input]:
    """Videos under each folder of ``inputs`` (recursive, by extension; a file is
    taken as is) plus every file of ``videos``. Raises InputError for a missing
    path or when nothing is found."""
    found: list[Input] = []
    for raw in inputs:
        item = as_input(raw)
        kind = _kind(item)
        if kind == "missing":
            raise InputError(f"{redact(item)}: no such file or folder")
        if kind == "file":
            found.append(item)
            continue
        in_folder = _folder_videos(item)
        if not in_folder:
            extensions = " ".join(sorted(VIDEO_EXTENSIONS))
            raise InputError(f"{redact(item)}: no video files in this folder (looked for {extensions})")
        found.extend(in_folder)
    for raw in videos:
        item = as_input(raw)
        kind = _kind(item)
        if kind == "missing":
            raise InputError(f"{redact(item)}: no such file")
        if kind != "file":
            raise InputError(f"{redact(item)}: not a file")
        found.append(item)
    if not found:
        raise InputError("no input given (use --input FOLDER or --video FILE)")
    unique: dict[str, Input] = {}
    for item in found:
        unique.setdefault(storage.absolute(item), item)
    return list(unique.values())


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "video"


def _stem(item: Input) -> str:
    return Path(storage.name_of(redact(item))).stem


def _parent_name(item: Input) -> str:
    return storage.name_of(storage.parent_of(storage.absolute(redact(item))))


def output_names(paths: list[Input]) -> dict[Input, str]:
    """A distinct, readable output stem per input: the file stem, or
    ``<parent>__<stem>`` where stems collide, or a short hash as a last resort."""
    stems = Counter(_clean(_stem(p)) for p in paths)
    names: dict[Input, str] = {}
    for path in paths:
        stem = _clean(_stem(path))
        names[path] = stem if stems[stem] == 1 else f"{_clean(_parent_name(path))}__{stem}"
    counts = Counter(names.values())
    for path, name in names.items():
        if counts[name] > 1:
            digest = hashlib.sha1(storage.absolute(path).encode()).hexdigest()[:8]
            names[path] = f"{name}-{digest}"
    return names


def read_person_heights(location: str) -> tuple[PersonHeight, ...]:
    """A ``--person_height`` CSV: a header row with ``video`` and ``height_m``, and optionally
    ``person`` (an id from the pose JSON; empty: every person of the video without a row of
    their own). ``video`` is a file name (``clip.mp4``) or its stem (``clip``)."""
    try:
        with storage.open_file(location, "r", encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--person_height: cannot read {redact(str(location))}: {exc}") from exc
    where = redact(str(location))
    if not rows or not {"video", "height_m"} <= set(rows[0]):
        raise InputError(f"--person_height: {where} needs a header row with the columns video and height_m")
    heights = []
    for line, row in enumerate(rows, start=2):
        try:
            person = (row.get("person") or "").strip()
            heights.append(
                PersonHeight(
                    video=row["video"].strip(),
                    height_m=float(row["height_m"]),
                    person=int(person) if person else None,
                )
            )
        except (TypeError, ValueError, ConfigError) as exc:
            raise InputError(f"--person_height: {where} line {line}: {exc}") from exc
    keys = Counter((h.video, h.person) for h in heights)
    repeated = [
        f"{video} person {person}" if person is not None else video for (video, person), n in keys.items() if n > 1
    ]
    if repeated:
        raise InputError(f"--person_height: {where} gives more than one height for {', '.join(repeated)}")
    return tuple(heights)

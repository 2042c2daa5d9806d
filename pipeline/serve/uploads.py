"""Uploaded files: a safe name, the type from the file's first bytes, and a readable video."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from pipeline.errors import VideoError, one_line_reason
from pipeline.video.probe import VideoInfo, probe_video

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
MAX_NAME = 80  # characters of a stored name's stem


class UploadRejected(ValueError):
    """An upload refused before any work: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def safe_filename(name: str | None) -> str:
    """The upload's name reduced to its last component in ``[A-Za-z0-9._-]``: never a path,
    never hidden, never empty. The suffix is kept (lowercased) for the type check."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = re.sub(r"\.+", "_", stem)[:MAX_NAME].strip("._-") or "video"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def sniff(head: bytes) -> str | None:
    """The container named by a file's first bytes: mp4 (ISO/QuickTime), matroska, avi, or None."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def check_name(filename: str) -> None:
    if Path(filename).suffix.lower() not in VIDEO_SUFFIXES:
        raise UploadRejected(415, f"{filename}: not a video file name (accepted: {', '.join(VIDEO_SUFFIXES)})")


def check_video(path: Path, filename: str) -> VideoInfo:
    """The stored upload is a video container with a decodable first frame and all its frames'
    data (a truncated file is refused here): its VideoInfo, or UploadRejected with one line."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if sniff(head) is None:
        raise UploadRejected(415, f"{filename}: not a video (its first bytes are no MP4, MOV, MKV, WebM or AVI)")
    try:
        return probe_video(path)
    except VideoError as exc:
        raise UploadRejected(422, f"{filename}: {one_line_reason(exc)}") from None

"""``output/opensim/<name>/``: OpenSim files per person, for OpenSim, Pose2Sim and Sports2D.

- ``<name>_person<id>.mot``: the joint angles of every analysed person (OpenSim's
  Storage format, version 1): a header ending with ``endheader``, a row of column
  names (``time`` and ``ANGLE_NAMES``), then one tab-separated row per analysed
  frame. Degrees in this pipeline's convention (180 = straight, as the pose JSON
  and the angles CSV hold them, 2 decimals); ``NaN`` where an angle is unknown or
  the person is not shown in the frame.
- ``<name>_person<id>.trc``: the 33 landmarks as markers in metres, for persons
  with a known scale (``--person_height``). The header is the one OpenSim writes
  (``TRCFileAdapter``): ``PathFileType``, the rates and counts, ``Frame#  Time``
  and the marker names, ``X1 Y1 Z1 ...``, a blank line; every row and the two
  label rows end with a tab, so that a marker missing at the end of a row is read
  as missing too. Coordinates as Sports2D writes them for one camera: X to the
  right and Y up from the frame's bottom-left corner, ``Z = 0``; each value is the
  pose JSON's landmark (``x``, ``y``) times the frame size and the person's
  ``metres_per_px`` (6 decimals). A marker not shown is three empty fields.
  ``Frame#`` counts the rows from 1; ``OrigDataStartFrame`` is the first row's
  frame in the video, counted from 1 too; ``OrigNumFrames`` the video's frames.

Both have one row per analysed frame (all frames, or those ``--sample_fps``
kept) from the first to the last frame where the person is shown; time in
seconds from the frame's timestamp. The stored analysis is read a block of
frames at a time; each person's values (frames x 33 x 2 numbers) are gathered,
then written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from pipeline import storage
from pipeline.analysis.store import AnalysisStore
from pipeline.config import PipelineConfig
from pipeline.outputs.pose_json import DECIMALS
from pipeline.outputs.registry import OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.pose.skeleton import ANGLE_NAMES, LANDMARK_NAMES

TRC_KEYS = (
    "DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units", "OrigDataRate", "OrigDataStartFrame", "OrigNumFrames",
)  # fmt: skip
MISSING_ANGLE = "NaN"  # what OpenSim's table readers (STOFileAdapter) read as a missing value


class PersonRows:
    """One person's shown rows, gathered block by block: row numbers in the stored
    analysis, raw normalised landmarks ``x, y`` and joint angles."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.xy: list[np.ndarray] = []
        self.angles: list[np.ndarray] = []

    def add(self, rows: np.ndarray, xy: np.ndarray, angles: np.ndarray) -> None:
        self.rows.append(rows)
        self.xy.append(xy)
        self.angles.append(angles)

    def spread(self, sampled_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The analysed rows from the first to the last shown one, and the landmarks
        ``[R, L, 2]`` and angles ``[R, A]`` on them (NaN where the person is not shown)."""
        rows = np.concatenate(self.rows)
        span = sampled_rows[(sampled_rows >= rows[0]) & (sampled_rows <= rows[-1])]
        at = np.searchsorted(span, rows)
        xy = np.full((len(span), len(LANDMARK_NAMES), 2), np.nan)
        angles = np.full((len(span), len(ANGLE_NAMES)), np.nan)
        xy[at] = np.concatenate(self.xy)
        angles[at] = np.concatenate(self.angles)
        return span, xy, angles


def gather_persons(store: AnalysisStore, persons: Iterable[int]) -> dict[int, PersonRows]:
    """The shown rows of each of ``persons``, reading the analysis a block at a time."""
    found = {ident: PersonRows() for ident in persons}
    offset = 0
    for block in store.blocks():
        rows, lanes, ids = block.persons_shown()
        for ident, person in found.items():
            mine = ids == ident
            if mine.any():
                r, n = rows[mine], lanes[mine]
                # Rounded as the pose JSON rounds its landmarks: the file holds the JSON's values times the scale.
                xy = np.round(block.track.image_xyzv[r, n, :, :2].astype(np.float64), DECIMALS)
                person.add(r + offset, xy, block.angles[r, n].astype(np.float64))
        offset += block.track.num_frames
    return {ident: person for ident, person in found.items() if person.rows}


def _rate(value: float) -> str:
    return f"{round(value, 6):.10g}"


def mot_lines(file_name: str, times_s: np.ndarray, angles: np.ndarray) -> Iterable[str]:
    """The MOT file's lines (each ending with a newline)."""
    yield from (f"{file_name}\n", "version=1\n", f"nRows={len(times_s)}\n", f"nColumns={len(ANGLE_NAMES) + 1}\n")
    yield from ("inDegrees=yes\n", "endheader\n", "\t".join(("time", *ANGLE_NAMES)) + "\n")
    for time_s, values in zip(times_s.tolist(), angles.tolist()):
        cells = [MISSING_ANGLE if math.isnan(v) else f"{v:.2f}" for v in values]
        yield f"{time_s:.6f}\t" + "\t".join(cells) + "\n"


def trc_lines(
    file_name: str, rates: tuple[float, float], times_s: np.ndarray, xy_m: np.ndarray, origin: tuple[int, int]
) -> Iterable[str]:
    """The TRC file's lines. ``rates``: the data's and the camera's frames per second;
    ``xy_m [R, L, 2]``: X and Y in metres, NaN where missing; ``origin``: the first row's
    frame in the video (from 1) and the video's frame count."""
    data_rate, camera_rate = _rate(rates[0]), _rate(rates[1])
    values = (data_rate, camera_rate, len(times_s), len(LANDMARK_NAMES), "m", camera_rate, *origin)
    yield f"PathFileType\t4\t(X/Y/Z)\t{file_name}\n"
    yield "\t".join(TRC_KEYS) + "\n"
    yield "\t".join(str(v) for v in values) + "\n"
    yield "Frame#\tTime\t" + "".join(f"{name}\t\t\t" for name in LANDMARK_NAMES) + "\n"
    yield "\t\t" + "".join(f"X{i}\tY{i}\tZ{i}\t" for i in range(1, len(LANDMARK_NAMES) + 1)) + "\n"
    yield "\n"
    missing = np.isnan(xy_m).any(axis=-1).tolist()
    for number, (time_s, markers, gone) in enumerate(zip(times_s.tolist(), xy_m.tolist(), missing), start=1):
        cells = ["\t\t" if g else f"{x:.6f}\t{y:.6f}\t0" for (x, y), g in zip(markers, gone)]
        yield f"{number}\t{time_s:.6f}\t" + "\t".join(cells) + "\t\n"


def write_opensim(folder: str, name: str, header: dict, store: AnalysisStore) -> list[str]:
    """Every analysed person's MOT, and TRC where the person's scale is known, into
    ``folder``; files of this video's persons left there by an earlier run are removed.
    Returns the files written."""
    video = header["video"]
    width, height, fps = float(video["width"]), float(video["height"]), float(video["fps"])
    analysed = {p["id"]: p for p in store.summary["persons"] if p.get("analysed")}
    sampled = store.array("track.sampled")
    sampled_rows = np.flatnonzero(sampled)
    timestamp_ms = store.array("track.timestamp_ms")
    frame_index = store.array("track.frame_index")
    data_rate = fps * len(sampled_rows) / max(1, len(sampled))  # fps, or fewer with --sample_fps
    written = []
    for ident, person in gather_persons(store, analysed).items():
        rows, xy, angles = person.spread(sampled_rows)
        times_s = timestamp_ms[rows].astype(np.float64) / 1000.0
        stem = f"{name}_person{ident}"
        mot = storage.join(folder, f"{stem}.mot")
        written.append(storage.atomic_write(mot, _lines_writer(mot_lines(f"{stem}.mot", times_s, angles)), text=True))
        scale = analysed[ident].get("scale")
        if scale is None:
            continue
        metres_per_px = float(scale["metres_per_px"])
        xy_m = np.stack([xy[..., 0] * width * metres_per_px, (height - xy[..., 1] * height) * metres_per_px], axis=-1)
        origin = (int(frame_index[rows[0]]) + 1, int(video["frame_count"]))
        lines = trc_lines(f"{stem}.trc", (data_rate, fps), times_s, xy_m, origin)
        written.append(storage.atomic_write(storage.join(folder, f"{stem}.trc"), _lines_writer(lines), text=True))
    keep = {storage.name_of(path) for path in written}
    for old in storage.list_names(folder):
        if old.startswith(f"{name}_person") and old.endswith((".mot", ".trc")) and old not in keep:
            storage.remove(storage.join(folder, old))
    if not written:
        storage.ensure_writable(folder)  # (no one analysed) a local folder still exists: the output is there
    return written


def _lines_writer(lines: Iterable[str]):
    def write(fh) -> None:
        fh.writelines(lines)

    return write


def opensim_task(folder: str, name: str, header: dict, store: str) -> str:
    """Task: the OpenSim files of one video from the stored analysis."""
    write_opensim(folder, name, header, AnalysisStore(store))
    return folder


class OpenSimWriter(OutputWriter):
    name = "opensim"
    label = "OpenSim files"

    def enabled(self, config: PipelineConfig) -> bool:
        return config.opensim

    def location(self, config: PipelineConfig, name: str) -> str:
        return storage.join(config.output_dir, "opensim", name)

    def plan(self, video: VideoOutputs) -> OutputPlan:
        args = (self.target(video), video.name, video.header, video.store)
        return OutputPlan([OutputTask(opensim_task, args, f"opensim-{video.name}")])

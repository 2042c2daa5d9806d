"""``models/<name>_pose.json``: every frame of a video with its people, landmarks
and joint angles. Schema described in the README (section "Pose JSON")."""

from __future__ import annotations

import json
import math

import numpy as np

from pipeline import storage
from pipeline.analysis.analyzer import Analysis
from pipeline.analysis.body import VELOCITY_POINTS
from pipeline.analysis.store import AnalysisStore
from pipeline.config import PipelineConfig
from pipeline.outputs.registry import DiskNeed, OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.pose.skeleton import ANGLE_NAMES, LANDMARK_NAMES
from pipeline.pose.types import PoseChunk
from pipeline.video.probe import VideoInfo

SCHEMA_VERSION = "1.2"
DECIMALS = 5  # ~0.01 px on a 4K frame for normalised coordinates; 0.01 mm in world


def _value(v: float, decimals: int = 2) -> float | None:
    return None if math.isnan(v) else round(float(v), decimals)


def _values(values: list, decimals: int) -> list:
    """``_value`` of each of ``values`` (Python floats)."""
    return [None if math.isnan(v) else round(v, decimals) for v in values]


def _lists(rounded: np.ndarray, has_nan: bool) -> list:
    """Rounded rows as nested lists with NaN -> None (JSON null)."""
    rows = rounded.tolist()
    return [[None if math.isnan(v) else v for v in row] for row in rows] if has_nan else rows


def frame_entries(analysis: Analysis):
    """Yield one dict per frame, in order. The landmarks of every person shown are
    rounded at once (numpy, ``DECIMALS``); the other values one by one with Python's
    ``round`` (``_value``)."""
    track = analysis.track
    speed = analysis.speed_bh_s
    frames, lanes, ids = analysis.persons_shown()
    landmarks = np.concatenate([track.image_xyzv[frames, lanes], track.presence[frames, lanes][..., None]], axis=-1)
    landmarks = np.round(landmarks.astype(np.float64), DECIMALS)
    world = np.round(track.world_xyz[frames, lanes].astype(np.float64), DECIMALS)
    landmarks_nan, world_nan = np.isnan(landmarks).any(axis=(1, 2)), np.isnan(world).any(axis=(1, 2))
    first = np.searchsorted(frames, np.arange(track.num_frames + 1))  # each frame's persons: first[f]:first[f + 1]
    sampled = track.sampled.tolist()
    for f in range(track.num_frames):
        entry = {
            "frame": int(track.frame_index[f]),
            "timestamp_ms": round(float(track.timestamp_ms[f]), 3),
            "analyzed": bool(sampled[f]),
            "decoded": bool(track.decoded[f]),
            "persons": None,
        }
        if sampled[f]:
            persons = []
            for k in range(first[f], first[f + 1]):
                lane = int(lanes[k])
                contact = int(analysis.contact[f, lane])
                persons.append(
                    {
                        "id": int(ids[k]),
                        "landmarks": _lists(landmarks[k], landmarks_nan[k]),
                        "world_landmarks": _lists(world[k], world_nan[k]),
                        "angles": dict(zip(ANGLE_NAMES, _values(analysis.angles[f, lane].tolist(), 2))),
                        "angular_velocity_deg_s": dict(
                            zip(ANGLE_NAMES, _values(analysis.angular_velocity[f, lane].tolist(), 1))
                        ),
                        "com_px": _values(analysis.com_px[f, lane].tolist(), 1),
                        "com_height_bh": _value(analysis.com_height_bh[f, lane], 4),
                        "velocity_px_s": {
                            name: _values(pair, 1)
                            for name, pair in zip(VELOCITY_POINTS, analysis.velocity_px_s[f, lane].tolist())
                        },
                        "speed_bh_s": dict(zip(VELOCITY_POINTS, _values(speed[f, lane].tolist(), 3))),
                        "ground_contact": None if contact < 0 else bool(contact),
                    }
                )
            entry["persons"] = persons
        yield entry


def write_pose_json(path: storage.Location, header: dict, analysis: Analysis | AnalysisStore) -> str:
    """Write the document; frames are streamed to the file one by one (from a
    stored analysis, read a block of frames at a time). Returns its location."""
    blocks = analysis.blocks() if isinstance(analysis, AnalysisStore) else [analysis]
    document = {
        "schema_version": SCHEMA_VERSION,
        **header,
        "landmark_names": list(LANDMARK_NAMES),
        "landmark_fields": ["x", "y", "z", "visibility", "presence"],
        "world_landmark_fields": ["x_m", "y_m", "z_m"],
        "angle_names": list(ANGLE_NAMES),
        "velocity_points": list(VELOCITY_POINTS),
        "summary": analysis.summary,
        "events": list(analysis.events),
    }

    def write(fh) -> None:
        head = json.dumps(document, separators=(",", ":"))
        fh.write(head[:-1] + ',"frames":[')
        first = True
        for block in blocks:
            for entry in frame_entries(block):
                if not first:
                    fh.write(",\n")
                fh.write(json.dumps(entry, separators=(",", ":")))
                first = False
        fh.write("]}\n")

    return storage.atomic_write(path, write, text=True)


def read_pose_json(path: storage.Location) -> tuple[dict, PoseChunk]:
    """Load a pose JSON back into its header (everything but the frames) and a PoseChunk."""
    with storage.open_file(path, "r", encoding="utf-8") as fh:
        document = json.load(fh)
    frames = document.pop("frames")
    slots = max([1] + [p["id"] + 1 for f in frames for p in (f["persons"] or [])])
    fps = float(document["video"]["fps"])
    chunk = PoseChunk.empty(int(frames[0]["frame"]) if frames else 0, len(frames), slots, fps)
    for row, entry in enumerate(frames):
        chunk.timestamp_ms[row] = entry["timestamp_ms"]
        chunk.sampled[row] = entry["analyzed"]
        chunk.decoded[row] = entry.get("decoded", True)
        for person in entry["persons"] or []:
            landmarks = np.array(person["landmarks"], dtype=np.float64)
            chunk.image_xyzv[row, person["id"]] = landmarks[:, :4]
            chunk.presence[row, person["id"]] = landmarks[:, 4]
            chunk.world_xyz[row, person["id"]] = np.array(person["world_landmarks"], dtype=np.float64)
    return document, chunk


# -- the writer ---------------------------------------------------------------------
JSON_BYTES_PER_FRAME_SLOT = 6 * 1024  # disk estimate (generous; measured on the sample clip)


def pose_json_task(path: str, header: dict, store: str) -> str:
    """Task: the pose JSON, streamed from the stored analysis block by block."""
    return write_pose_json(path, header, AnalysisStore(store))


class PoseJsonWriter(OutputWriter):
    name = "pose_json"
    label = "pose JSON"

    def location(self, config: PipelineConfig, name: str) -> str:
        return storage.join(config.models_dir, f"{name}_pose.json")

    def disk_need(self, config: PipelineConfig, info: VideoInfo) -> DiskNeed:
        return DiskNeed(
            config.models_dir, self.label, info.frame_count * config.resolved_num_poses * JSON_BYTES_PER_FRAME_SLOT
        )

    def plan(self, video: VideoOutputs) -> OutputPlan:
        task = OutputTask(pose_json_task, (self.target(video), video.header, video.store), f"pose-json-{video.name}")
        return OutputPlan([task])

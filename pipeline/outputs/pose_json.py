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


def _rows(array: np.ndarray) -> list:
    """Rounded nested lists with NaN -> None (JSON null)."""
    rounded = np.round(array.astype(np.float64), DECIMALS)
    return [[None if math.isnan(v) else v for v in row] for row in rounded.tolist()]


def _value(v: float, decimals: int = 2) -> float | None:
    return None if math.isnan(v) else round(float(v), decimals)


def _named(names, values, decimals: int = 2) -> dict:
    return {name: _value(v, decimals) for name, v in zip(names, values.tolist())}


def frame_entries(analysis: Analysis):
    """Yield one dict per frame, in order."""
    track = analysis.track
    detected = track.detected
    speed = analysis.speed_bh_s
    for f in range(track.num_frames):
        entry = {
            "frame": int(track.frame_index[f]),
            "timestamp_ms": round(float(track.timestamp_ms[f]), 3),
            "analyzed": bool(track.sampled[f]),
            "decoded": bool(track.decoded[f]),
            "persons": None,
        }
        if track.sampled[f]:
            persons = []
            for slot in np.where(detected[f])[0]:
                landmarks = np.concatenate([track.image_xyzv[f, slot], track.presence[f, slot][:, None]], axis=1)
                contact = int(analysis.contact[f, slot])
                persons.append(
                    {
                        "id": int(slot),
                        "landmarks": _rows(landmarks),
                        "world_landmarks": _rows(track.world_xyz[f, slot]),
                        "angles": _named(ANGLE_NAMES, analysis.angles[f, slot]),
                        "angular_velocity_deg_s": _named(ANGLE_NAMES, analysis.angular_velocity[f, slot], 1),
                        "com_px": [_value(v, 1) for v in analysis.com_px[f, slot].tolist()],
                        "com_height_bh": _value(analysis.com_height_bh[f, slot], 4),
                        "velocity_px_s": {
                            name: [_value(v, 1) for v in pair]
                            for name, pair in zip(VELOCITY_POINTS, analysis.velocity_px_s[f, slot].tolist())
                        },
                        "speed_bh_s": _named(VELOCITY_POINTS, speed[f, slot], 3),
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

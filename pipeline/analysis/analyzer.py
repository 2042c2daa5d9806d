"""Analyzer: the assembled pose track of one video -> per-frame series and a summary.

A stateful callable (settings in ``__init__``, one track per call) so the same
class runs in a plain loop, in a test, or as a Ray actor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from pipeline.analysis.kinematics import joint_angles
from pipeline.analysis.tracking import link_identities
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.pose.types import PoseChunk


@dataclass(frozen=True)
class AnalysisParams:
    """Analysis settings; the ``--quality`` preset fills them."""

    min_visibility: float = 0.5  # below it a landmark does not contribute to an angle
    max_track_gap_frames: int = 30  # a person unseen longer may be replaced by another
    min_track_frames: int = 5  # shorter tracks are reported but not counted as persons


@dataclass(frozen=True)
class TrackMeta:
    """What the analyzer needs to know about the video (plain values)."""

    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class Analysis:
    """Result of analysing one track.

    ``track`` has the person slots linked (slot k is one person over time);
    ``angles`` is float32 ``[F, P, len(ANGLE_NAMES)]`` degrees from the world
    landmarks (3D, so independent of the camera's view), NaN where the person
    is absent or a landmark is not visible enough.
    """

    track: PoseChunk
    angles: np.ndarray
    summary: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = (self.track.num_frames, self.track.num_slots, len(ANGLE_NAMES))
        if self.angles.shape != expected:
            raise ValueError(f"angles: expected shape {expected}, got {self.angles.shape}")


class Analyzer:
    def __init__(self, params: AnalysisParams | None = None) -> None:
        self.params = params or AnalysisParams()

    def __call__(self, track: PoseChunk, meta: TrackMeta) -> Analysis:
        order = link_identities(track.image_xyzv, meta.width, meta.height, self.params.max_track_gap_frames)
        linked = track.reorder(order)
        angles = joint_angles(
            linked.world_xyz,
            visibility=linked.image_xyzv[..., 3],
            min_visibility=self.params.min_visibility,
        )
        return Analysis(track=linked, angles=angles, summary=summarize(linked, angles, meta, self.params))


def _stats(values: np.ndarray) -> dict | None:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    return {
        "min": round(float(values.min()), 2),
        "max": round(float(values.max()), 2),
        "mean": round(float(values.mean()), 2),
        "range": round(float(values.max() - values.min()), 2),
        "frames": int(values.size),
    }


def summarize(track: PoseChunk, angles: np.ndarray, meta: TrackMeta, params: AnalysisParams) -> dict:
    """Per-video and per-person summary (plain dict, JSON-ready)."""
    detected = track.detected
    analysed = int(track.sampled.sum())
    persons = []
    for slot in range(track.num_slots):
        frames = np.where(detected[:, slot])[0]
        if frames.size == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            visibility = float(np.nanmean(track.image_xyzv[frames, slot, :, 3]))
        persons.append(
            {
                "id": slot,
                "frames_detected": int(frames.size),
                "coverage": round(frames.size / max(1, analysed), 4),
                "first_frame": int(track.frame_index[frames[0]]),
                "last_frame": int(track.frame_index[frames[-1]]),
                "mean_visibility": round(visibility, 4),
                "counted": bool(frames.size >= params.min_track_frames),
                "angles_deg": {name: _stats(angles[frames, slot, k]) for k, name in enumerate(ANGLE_NAMES)},
            }
        )
    return {
        "frames": track.num_frames,
        "frames_analysed": analysed,
        "frames_with_person": int(detected.any(axis=1).sum()),
        "max_persons_in_frame": int(detected.sum(axis=1).max()) if track.num_frames else 0,
        "persons_found": sum(1 for p in persons if p["counted"]),
        "persons": persons,
    }

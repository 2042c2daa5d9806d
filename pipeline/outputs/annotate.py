"""Drawing on frames: skeletons, joint-angle labels, the event banner, frame time.

``Annotator`` holds the drawing settings; ``annotate(frame, view, row)`` returns
a drawn copy of the frame and never changes its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.analysis.analyzer import Analysis
from pipeline.pose.skeleton import ANGLE_NAMES, CONNECTIONS, JOINT_ANGLES

# BGR colours per person id (cycled), chosen to stay visible on grass and sky.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255),
    (255, 120, 0),
    (80, 220, 80),
    (220, 80, 220),
    (60, 60, 255),
    (255, 255, 0),
)
TAKEOFF_SHOWN_S = 0.3
LANDING_SHOWN_S = 0.8
REPETITION_SHOWN_S = 0.8


def banner(events, frame: int, fps: float) -> str | None:
    """The text of the event banner at ``frame`` (None when nothing happens).

    Per person the most recent flight state is shown (takeoff, flight, landing
    with the measured flight time and height), then a repetition count, then
    a ground contact.
    """
    states: dict[int, tuple[int, str]] = {}  # person -> (since frame, text) of the latest flight state
    others: list[tuple[int, str]] = []
    for e in events:
        kind, person = e["type"], e["person"]
        if kind in ("jump", "drop", "step_up"):
            takeoff, landing = e["takeoff_frame"], e["landing_frame"]
            label = kind.replace("_", " ").upper()
            state = None
            if takeoff <= frame < min(landing, takeoff + max(1, TAKEOFF_SHOWN_S * fps)):
                state = (takeoff, f"TAKEOFF ({label})")
            elif takeoff < frame < landing:
                state = (takeoff, f"FLIGHT {(frame - takeoff) / fps:.2f} s")
            elif landing <= frame < landing + LANDING_SHOWN_S * fps:
                height = f", {e['height_m']:.2f} m" if e.get("height_m") is not None else ""
                state = (landing, f"LANDING: flight {e['flight_time_s']:.2f} s{height}")
            if state and state[0] >= states.get(person, (-1, ""))[0]:
                states[person] = state
        elif kind == "repetition" and e["peak_frame"] <= frame < e["peak_frame"] + REPETITION_SHOWN_S * fps:
            others.append((1, f"REP {e['index']}"))
        elif kind == "contact" and e["start_frame"] <= frame < e["end_frame"]:
            others.append((2, f"CONTACT {e['contact_time_s']:.2f} s"))
    several = len({e["person"] for e in events}) > 1  # then each flight state says whose it is
    texts = [f"#{person} {state[1]}" if several else state[1] for person, state in sorted(states.items())]
    texts += [text for _, text in sorted(others)]
    return "  |  ".join(dict.fromkeys(texts)) if texts else None


@dataclass(frozen=True)
class Annotator:
    """Draws what the analysis found on the frames of one video."""

    fps: float
    frame_count: int
    angles: tuple[str, ...] = ("left_knee", "right_knee", "left_hip", "right_hip")
    min_visibility: float = 0.3

    def annotate(self, frame: np.ndarray, view: Analysis, row: int) -> np.ndarray:
        """Draw row ``row`` of ``view`` (an Analysis, whole or a slice) on a copy of ``frame``."""
        out = frame.copy()
        height, width = out.shape[:2]
        scale = max(0.5, min(width, height) / 720.0)
        thickness = max(1, int(round(2 * scale)))
        for slot in range(view.track.num_slots):
            points = view.landmarks_px[row, slot]
            if np.isnan(points[:, 0]).all():
                continue
            colour = PALETTE[slot % len(PALETTE)]
            self._skeleton(out, points, colour, thickness)
            self._angle_labels(out, points, view.angles[row, slot], scale, thickness)
            self._person_id(out, points, slot, colour, scale, thickness)
            com = view.com_px[row, slot]
            if np.isfinite(com).all():
                cv2.drawMarker(out, _pt(com), (255, 255, 255), cv2.MARKER_CROSS, int(18 * scale), thickness)
        frame_number = int(view.track.frame_index[row])
        text = banner(view.events, frame_number, self.fps)
        if not view.track.decoded[row]:
            text = "this frame could not be decoded"
        if text:
            _label(out, text, (int(12 * scale), int(40 * scale)), 0.9 * scale, thickness + 1, (0, 0, 0), (0, 215, 255))
        clock = f"{view.track.timestamp_ms[row] / 1000.0:7.2f} s  frame {frame_number + 1}/{self.frame_count}"
        _label(
            out, clock, (int(12 * scale), height - int(14 * scale)), 0.6 * scale, thickness, (255, 255, 255), (0, 0, 0)
        )
        return out

    @staticmethod
    def _skeleton(out: np.ndarray, points: np.ndarray, colour, thickness: int) -> None:
        for a, b in CONNECTIONS:
            if np.isfinite(points[[a, b]]).all():
                cv2.line(out, _pt(points[a]), _pt(points[b]), colour, thickness, cv2.LINE_AA)
        for p in points:
            if np.isfinite(p).all():
                cv2.circle(out, _pt(p), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)

    @staticmethod
    def _person_id(out: np.ndarray, points: np.ndarray, slot: int, colour, scale: float, thickness: int) -> None:
        """The person's id (``#0`` is the main subject) on the person's colour, above the highest landmark."""
        seen = points[np.isfinite(points).all(axis=1)]
        top = seen[np.argmin(seen[:, 1])]
        origin = (int(top[0] - 12 * scale), max(int(24 * scale), int(top[1] - 16 * scale)))
        _label(out, f"#{slot}", origin, 0.7 * scale, thickness, (0, 0, 0), colour)

    def _angle_labels(self, out: np.ndarray, points: np.ndarray, angles: np.ndarray, scale: float, thickness: int):
        """Each label sits on the outer side of its joint (away from the body's midline)."""
        midline = np.nanmean(points[[11, 12, 23, 24], 0])
        font_scale, weight = 0.5 * scale, max(1, thickness - 1)
        for name in self.angles:
            value = angles[ANGLE_NAMES.index(name)]
            vertex = points[JOINT_ANGLES[name][1]]
            if math.isnan(value) or not np.isfinite(vertex).all():
                continue
            text = f"{value:.0f} deg"
            (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, weight)
            x = vertex[0] + 10 * scale if not vertex[0] < midline else vertex[0] - 10 * scale - w
            _label(out, text, (int(x), int(vertex[1] + 5 * scale)), font_scale, weight, (255, 255, 255), (40, 40, 40))


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def _label(out: np.ndarray, text: str, origin, font_scale: float, thickness: int, fg, bg) -> None:
    """Text on a filled box (readable on any background)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), base = cv2.getTextSize(text, font, font_scale, thickness)
    x, y = origin
    cv2.rectangle(out, (x - 4, y - h - 4), (x + w + 4, y + base + 2), bg, -1)
    cv2.putText(out, text, (x, y), font, font_scale, fg, thickness, cv2.LINE_AA)

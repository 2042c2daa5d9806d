"""Drawing on frames: skeletons, joint-angle labels, the event banner, frame time.

``Annotator`` holds the drawing settings. ``draw(canvas, view, row)`` draws on a
canvas in place: a :class:`BgrCanvas` (an OpenCV image) or a :class:`YuvCanvas`
(a decoded frame's own 4:2:0 planes, which the annotated video is encoded from
without converting the picture to BGR and back). ``annotate(frame, view, row)``
returns a drawn copy of a BGR frame and never changes its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

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
        """Draw row ``row`` of ``view`` (an Analysis, whole or a slice) on a copy of ``frame`` (BGR)."""
        out = frame.copy()
        self.draw(BgrCanvas(out), view, row)
        return out

    def draw(self, canvas: Canvas, view: Analysis, row: int, zoom: tuple[float, float] = (1.0, 1.0)) -> None:
        """Draw row ``row`` of ``view`` on ``canvas``, in place. ``zoom``: the canvas's size over
        the input frame's, in x and y (the landmarks are in the input's pixels)."""
        width, height = canvas.size
        scale = max(0.5, min(width, height) / 720.0)
        thickness = max(1, int(round(2 * scale)))
        factor = None if zoom == (1.0, 1.0) else np.asarray(zoom, np.float32)
        ids = view.person[row]
        for lane in np.argsort(ids, kind="stable").tolist():  # persons in id order
            person = int(ids[lane])
            if person < 0:
                continue
            points, com = view.landmarks_px[row, lane], view.com_px[row, lane]
            if np.isnan(points[:, 0]).all():
                continue
            if factor is not None:
                points, com = points * factor, com * factor
            colour = PALETTE[person % len(PALETTE)]
            self._skeleton(canvas, points, colour, thickness)
            self._angle_labels(canvas, points, view.angles[row, lane], scale, thickness)
            self._person_id(canvas, points, person, colour, scale, thickness)
            if np.isfinite(com).all():
                canvas.cross(_pt(com), int(18 * scale), (255, 255, 255), thickness)
        frame_number = int(view.track.frame_index[row])
        text = banner(view.events, frame_number, self.fps)
        if not view.track.decoded[row]:
            text = "this frame could not be decoded"
        if text:
            canvas.label(text, (int(12 * scale), int(40 * scale)), 0.9 * scale, thickness + 1, (0, 0, 0), (0, 215, 255))
        clock = f"{view.track.timestamp_ms[row] / 1000.0:7.2f} s  frame {frame_number + 1}/{self.frame_count}"
        canvas.label(
            clock, (int(12 * scale), height - int(14 * scale)), 0.6 * scale, thickness, (255, 255, 255), (0, 0, 0)
        )

    @staticmethod
    def _skeleton(canvas: Canvas, points: np.ndarray, colour, thickness: int) -> None:
        for a, b in CONNECTIONS:
            if np.isfinite(points[[a, b]]).all():
                canvas.line(_pt(points[a]), _pt(points[b]), colour, thickness)
        for p in points:
            if np.isfinite(p).all():
                canvas.dot(_pt(p), thickness + 1, (255, 255, 255))

    @staticmethod
    def _person_id(canvas: Canvas, points: np.ndarray, person: int, colour, scale: float, thickness: int) -> None:
        """The person's id (``#0`` is the main subject) on the person's colour, above the highest landmark."""
        seen = points[np.isfinite(points).all(axis=1)]
        top = seen[np.argmin(seen[:, 1])]
        origin = (int(top[0] - 12 * scale), max(int(24 * scale), int(top[1] - 16 * scale)))
        canvas.label(f"#{person}", origin, 0.7 * scale, thickness, (0, 0, 0), colour)

    def _angle_labels(self, canvas: Canvas, points: np.ndarray, angles: np.ndarray, scale: float, thickness: int):
        """Each label sits on the outer side of its joint (away from the body's midline)."""
        midline = np.nanmean(points[[11, 12, 23, 24], 0])
        font_scale, weight = 0.5 * scale, max(1, thickness - 1)
        for name in self.angles:
            value = angles[ANGLE_NAMES.index(name)]
            vertex = points[JOINT_ANGLES[name][1]]
            if math.isnan(value) or not np.isfinite(vertex).all():
                continue
            text = f"{value:.0f} deg"
            (w, _), _ = cv2.getTextSize(text, FONT, font_scale, weight)
            x = vertex[0] + 10 * scale if not vertex[0] < midline else vertex[0] - 10 * scale - w
            canvas.label(text, (int(x), int(vertex[1] + 5 * scale)), font_scale, weight, (255, 255, 255), (40, 40, 40))


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


FONT = cv2.FONT_HERSHEY_SIMPLEX
BGR = tuple[int, int, int]


class Canvas(Protocol):
    """What the annotator draws with; colours are BGR."""

    size: tuple[int, int]  # width, height

    def line(self, a: tuple[int, int], b: tuple[int, int], colour: BGR, thickness: int) -> None: ...

    def dot(self, centre: tuple[int, int], radius: int, colour: BGR) -> None: ...

    def cross(self, centre: tuple[int, int], size: int, colour: BGR, thickness: int) -> None: ...

    def label(self, text: str, origin: tuple[int, int], font_scale: float, thickness: int, fg: BGR, bg: BGR) -> None:
        """Text on a filled box (readable on any background)."""


class BgrCanvas:
    """An OpenCV BGR image, drawn on in place."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.size = (image.shape[1], image.shape[0])

    def line(self, a, b, colour, thickness) -> None:
        cv2.line(self.image, a, b, colour, thickness, cv2.LINE_AA)

    def dot(self, centre, radius, colour) -> None:
        cv2.circle(self.image, centre, radius, colour, -1, cv2.LINE_AA)

    def cross(self, centre, size, colour, thickness) -> None:
        cv2.drawMarker(self.image, centre, colour, cv2.MARKER_CROSS, size, thickness)

    def label(self, text, origin, font_scale, thickness, fg, bg) -> None:
        (w, h), base = cv2.getTextSize(text, FONT, font_scale, thickness)
        x, y = origin
        cv2.rectangle(self.image, (x - 4, y - h - 4), (x + w + 4, y + base + 2), bg, -1)
        cv2.putText(self.image, text, (x, y), FONT, font_scale, fg, thickness, cv2.LINE_AA)


# Luma weights (Kr, Kb) of the YCbCr matrices a decoded frame may use (FFmpeg's AVColorSpace numbers).
YCBCR_MATRICES = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114), "bt2020": (0.2627, 0.0593)}


def ycbcr(colour: BGR, matrix: str = "bt601", full_range: bool = False) -> tuple[int, int, int]:
    """``colour`` (BGR, 0-255) as 8-bit Y, Cb, Cr in ``matrix``, limited (video) or full range."""
    kr, kb = YCBCR_MATRICES[matrix]
    b, g, r = (c / 255.0 for c in colour)
    y = kr * r + (1.0 - kr - kb) * g + kb * b
    pb, pr = 0.5 * (b - y) / (1.0 - kb), 0.5 * (r - y) / (1.0 - kr)
    luma, chroma = (255.0, 255.0) if full_range else (219.0, 224.0)
    offset = 0.0 if full_range else 16.0
    return (
        int(round(offset + luma * y)),
        int(round(128.0 + chroma * pb)),
        int(round(128.0 + chroma * pr)),
    )


class YuvCanvas:
    """A frame's 4:2:0 planes (I420: ``height * 3 / 2`` rows of ``width`` bytes, even sizes), drawn on in place.

    Each shape is drawn on the luma plane at full resolution and on both chroma
    planes at half resolution (OpenCV's fixed-point ``shift`` halves the same
    coordinates, so the two stay aligned), in the frame's own YCbCr matrix and
    range: the picture is never converted, only the drawn pixels change.
    """

    def __init__(self, i420: np.ndarray, matrix: str = "bt601", full_range: bool = False) -> None:
        rows, width = i420.shape
        height = rows * 2 // 3
        if height % 2 or width % 2 or rows != height * 3 // 2:
            raise ValueError(f"expected an I420 frame of even size, got an array of shape {i420.shape}")
        quarter = height * width // 4
        flat = i420.reshape(-1)
        self.y = i420[:height]
        self.u = flat[height * width : height * width + quarter].reshape(height // 2, width // 2)
        self.v = flat[height * width + quarter :].reshape(height // 2, width // 2)
        self.size = (width, height)
        self._matrix, self._full = matrix, full_range
        self._colours: dict[BGR, tuple[int, int, int]] = {}

    def _yuv(self, colour: BGR) -> tuple[int, int, int]:
        if colour not in self._colours:
            self._colours[colour] = ycbcr(colour, self._matrix, self._full)
        return self._colours[colour]

    def line(self, a, b, colour, thickness) -> None:
        y, u, v = self._yuv(colour)
        cv2.line(self.y, a, b, y, thickness, cv2.LINE_AA)
        half = max(1, int(round(thickness / 2)))
        cv2.line(self.u, a, b, u, half, cv2.LINE_AA, 1)
        cv2.line(self.v, a, b, v, half, cv2.LINE_AA, 1)

    def dot(self, centre, radius, colour) -> None:
        y, u, v = self._yuv(colour)
        cv2.circle(self.y, centre, radius, y, -1, cv2.LINE_AA)
        cv2.circle(self.u, centre, radius, u, -1, cv2.LINE_AA, 1)
        cv2.circle(self.v, centre, radius, v, -1, cv2.LINE_AA, 1)

    def cross(self, centre, size, colour, thickness) -> None:
        x, y = centre
        half = size // 2
        # the two strokes of OpenCV's MARKER_CROSS
        self.line((x - half, y), (x + half, y), colour, thickness)
        self.line((x, y - half), (x, y + half), colour, thickness)

    def label(self, text, origin, font_scale, thickness, fg, bg) -> None:
        (w, h), base = cv2.getTextSize(text, FONT, font_scale, thickness)
        x, y = origin
        width, height = self.size
        # The box, and around it the 2x2 blocks the chroma planes store it in, inside the frame.
        x0, y0 = max(0, x - 4), max(0, y - h - 4)
        x1, y1 = min(width, x + w + 5), min(height, y + base + 3)
        if x0 >= x1 or y0 >= y1:
            return
        bx0, by0, bx1, by1 = x0 & ~1, y0 & ~1, (x1 + 1) & ~1, (y1 + 1) & ~1
        box = np.zeros((by1 - by0, bx1 - bx0), np.float32)
        box[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] = 1.0
        ink = np.zeros(box.shape, np.uint8)
        cv2.putText(ink, text, (x - bx0, y - by0), FONT, font_scale, 255, thickness, cv2.LINE_AA)
        text_alpha = ink.astype(np.float32) * (1.0 / 255.0)
        for plane, fg_value, bg_value, step in zip(
            (self.y, self.u, self.v), self._yuv(fg), self._yuv(bg), (1, 2, 2), strict=True
        ):
            # within the box: the background blended with the text's anti-aliased ink; outside: unchanged
            inside = box * (bg_value + (fg_value - bg_value) * text_alpha)
            cover = box
            if step == 2:
                inside = cv2.resize(inside, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                cover = cv2.resize(box, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
            region = plane[by0 // step : by1 // step, bx0 // step : bx1 // step]
            region[:] = np.clip(np.rint(region * (1.0 - cover) + inside), 0, 255).astype(np.uint8)

"""PoseDataExtractor: a video's measured series -> movement segments with facts.

A *segment* is one person over a frame range: the whole track ("overview"),
consecutive windows of ``window_s`` ("window"), or one event with a margin
("jump", "drop", "repetition"). Its *facts* are the numbers the examples may
quote, each with how it was measured (statistic, series, frame range), so a
reader can recompute every one of them from the pose JSON:

- ``stat`` min / max / range / mean / argmin_s (time of the minimum) /
  peak_abs (largest absolute value) / share (percent of frames where the series
  is true) / count / time_s (time of a frame) / event (a field of an event);
- ``series`` ``angles.<joint>``, ``angular_velocity.<joint>``, ``speed.<point>``,
  ``com_height``, ``visibility``, ``contact``, ``seen``; several joints joined
  by ``|`` pool their values;
- ``frames`` ``[start, end)``: the analysed frames of that range in which the
  person was detected.

Everything here is pure numpy and reads a stored analysis a few arrays at a time.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field, fields

import numpy as np

from pipeline.analysis.analyzer import Analysis, lane_values
from pipeline.analysis.body import VELOCITY_POINTS
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.analysis.store import AnalysisStore
from pipeline.pose.skeleton import ANGLE_NAMES

ANGLE_SIGNALS = {"knee_angle", "hip_angle", "shoulder_angle", "elbow_angle"}


@dataclass(frozen=True)
class ExtractorSettings:
    window_s: float = 3.0  # length of a window segment
    event_margin_s: float = 0.5  # frames kept before a takeoff and after a landing
    min_seen_frames: int = 8  # a segment needs the person in at least this many analysed frames
    min_coverage: float = 0.5  # ... and in at least this share of its analysed frames


@dataclass(frozen=True)
class Fact:
    """One measured number as the examples quote it."""

    name: str
    value: float
    text: str  # the value as written in the user turn
    unit: str
    stat: str
    series: str
    frames: tuple[int, int]


_FACT_FIELDS = tuple(f.name for f in fields(Fact))


@dataclass
class Segment:
    id: str
    video: str
    person: int
    kind: str
    start_frame: int
    end_frame: int  # exclusive
    frames_seen: int
    frames_analysed: int
    facts: dict[str, Fact] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)  # the events this segment is about or contains

    def fact(self, name: str) -> Fact | None:
        return self.facts.get(name)

    def to_dict(self) -> dict:
        """Plain values, fields in order; ``facts`` as a list. Built by hand, not with
        ``asdict``: it deep-copies every fact and event (most of the examples' time)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["facts"] = [{name: getattr(fact, name) for name in _FACT_FIELDS} for fact in self.facts.values()]
        data["events"] = [dict(event) for event in self.events]  # plain dicts (their flags: strings)
        return data


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


class _Measured:
    """The arrays the extractor needs, read from a stored or in-memory analysis."""

    def __init__(self, source: Analysis | AnalysisStore) -> None:
        if isinstance(source, AnalysisStore):
            get = source.array
            self.frame_index = get("track.frame_index")
            self.t_s = get("track.timestamp_ms").astype(np.float64) / 1000.0
            self.sampled = get("track.sampled").astype(bool)
            first = get("track.image_xyzv", lambda m: m[..., 0, 0])
            visibility = get("track.image_xyzv", lambda m: m[..., 3])
            self.angles = get("angles")
            self.angular_velocity = get("angular_velocity")
            self.com_height = get("com_height_bh")
            velocity = get("velocity_px_s")
            body = get("body_height_px")
            self.contact = get("contact")
            self.person = get("person")
        else:
            track = source.track
            self.frame_index = track.frame_index
            self.t_s = track.timestamp_ms.astype(np.float64) / 1000.0
            self.sampled = track.sampled.astype(bool)
            first = track.image_xyzv[..., 0, 0]
            visibility = track.image_xyzv[..., 3]
            self.angles = source.angles
            self.angular_velocity = source.angular_velocity
            self.com_height = source.com_height_bh
            velocity = source.velocity_px_s
            body = source.body_height_px
            self.contact = source.contact
            self.person = source.person
        self.detected = ~np.isnan(first)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            self.visibility = np.nanmean(visibility, axis=-1)
            self.speed = np.linalg.norm(velocity, axis=-1) / lane_values(body, self.person)[..., None]
        self.first_frame = int(self.frame_index[0]) if len(self.frame_index) else 0

    def rows(self, person: int, start: int, end: int) -> np.ndarray:
        """Row positions of the analysed frames in ``[start, end)`` where ``person`` is detected."""
        lo, hi = max(0, start - self.first_frame), max(0, end - self.first_frame)
        mine = (self.person[lo:hi] == person) & self.detected[lo:hi]
        picked = np.flatnonzero(self.sampled[lo:hi] & mine.any(axis=1))
        return picked + lo

    def analysed(self, start: int, end: int) -> int:
        lo, hi = max(0, start - self.first_frame), max(0, end - self.first_frame)
        return int(self.sampled[lo:hi].sum())

    def series(self, name: str, person: int, rows: np.ndarray) -> np.ndarray:
        """Values of ``name`` (see the module docstring) at ``rows``; joined joints are pooled."""
        if "|" in name:
            head, joints = name.split(".", 1)
            return np.concatenate([self.series(f"{head}.{j}", person, rows) for j in joints.split("|")])
        kind, _, key = name.partition(".")
        lanes = np.argmax(self.person[rows] == person, axis=1)  # the person's lane in each row
        if kind == "angles":
            return self.angles[rows, lanes, ANGLE_NAMES.index(key)].astype(np.float64)
        if kind == "angular_velocity":
            return self.angular_velocity[rows, lanes, ANGLE_NAMES.index(key)].astype(np.float64)
        if kind == "speed":
            return self.speed[rows, lanes, VELOCITY_POINTS.index(key)].astype(np.float64)
        if kind == "com_height":
            return self.com_height[rows, lanes].astype(np.float64)
        if kind == "visibility":
            return self.visibility[rows, lanes].astype(np.float64)
        if kind == "contact":
            return self.contact[rows, lanes].astype(np.float64)
        raise ValueError(f"unknown series {name!r}")


class _FactBuilder:
    """Collects the facts of one segment; ``None`` when the data cannot give the number."""

    def __init__(self, data: _Measured, segment: Segment) -> None:
        self.data = data
        self.segment = segment
        self.frames = (segment.start_frame, segment.end_frame)
        self.rows = data.rows(segment.person, *self.frames)

    def add(self, name: str, value: float, decimals: int, unit: str, stat: str, series: str, frames=None) -> Fact:
        fact = Fact(name, float(value), _fmt(value, decimals), unit, stat, series, tuple(frames or self.frames))
        self.segment.facts[name] = fact
        return fact

    def stat(self, name: str, stat: str, series: str, decimals: int, unit: str, frames=None) -> Fact | None:
        rows = self.rows if frames is None else self.data.rows(self.segment.person, *frames)
        values = self.data.series(series, self.segment.person, rows)
        finite = np.isfinite(values)
        if not finite.any():
            return None
        v = values[finite]
        if stat == "argmin_s":
            # time of the minimum; pooled joints: the row of the lowest value among them
            pooled_rows = np.tile(rows, len(values) // max(1, len(rows)))[finite]
            value = self.data.t_s[pooled_rows[int(np.argmin(v))]]
        elif stat == "share":
            known = v >= 0
            if known.sum() < max(1, len(v) // 2):
                return None
            value = 100.0 * float((v[known] > 0).mean())
        else:
            value = {"min": v.min, "max": v.max, "mean": v.mean, "range": lambda: v.max() - v.min(),
                     "peak_abs": lambda: np.abs(v).max()}[stat]()  # fmt: skip
        return self.add(name, value, decimals, unit, stat, series, frames)

    def time(self, name: str, frame: int) -> Fact:
        row = min(max(0, frame - self.data.first_frame), len(self.data.t_s) - 1)
        return self.add(name, self.data.t_s[row], 2, "s", "time_s", "frame", (frame, frame + 1))

    def event(self, name: str, index: int, event: dict, key: str, decimals: int, unit: str) -> Fact | None:
        value = event.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return self.add(name, value, decimals, unit, "event", f"event.{index}.{key}")


class PoseDataExtractor:
    """Segments and facts of one analysed video; ``segments()`` is deterministic."""

    def __init__(self, settings: ExtractorSettings | None = None, sport_type: str = "general") -> None:
        if sport_type not in SPORT_PROFILES:
            raise ValueError(f"sport_type: expected one of {', '.join(SPORT_PROFILES)}, got {sport_type!r}")
        self.settings = settings or ExtractorSettings()
        self.sport_type = sport_type
        self.profile = SPORT_PROFILES[sport_type]
        self.skipped: Counter[str] = Counter()  # segments left out, by reason

    def segments(self, source: Analysis | AnalysisStore, video: str, fps: float) -> list[Segment]:
        data = _Measured(source)
        data.fps = fps
        summary = source.summary
        events = list(source.events)
        out: list[Segment] = []
        for person in summary.get("persons", []):
            if not (person.get("counted") and person.get("analysed")):
                self.skipped["person too briefly seen to analyse"] += 1
                continue
            out += self._person_segments(data, events, video, int(person["id"]), fps)
        return out

    # -- which segments ------------------------------------------------------------
    def _person_segments(self, data: _Measured, events: list[dict], video: str, person: int, fps: float):
        seen = data.rows(person, data.first_frame, data.first_frame + len(data.frame_index))
        if seen.size == 0:
            return []
        first, last = int(data.frame_index[seen[0]]), int(data.frame_index[seen[-1]])
        bounds: list[tuple[str, int, int, list[int]]] = [("overview", first, last + 1, [])]
        step = max(1, round(self.settings.window_s * fps))
        for start in range(first, last + 1, step):
            bounds.append(("window", start, min(start + step, last + 1), []))
        margin = max(1, round(self.settings.event_margin_s * fps))
        end_of_video = data.first_frame + len(data.frame_index)
        for i, event in enumerate(events):
            if event.get("person") != person or event["type"] not in ("jump", "drop", "repetition"):
                continue
            if event["type"] == "repetition":
                bounds.append(("repetition", event["start_frame"], event["end_frame"] + 1, [i]))
            else:
                lo = max(data.first_frame, event["takeoff_frame"] - margin)
                bounds.append((event["type"], lo, min(end_of_video, event["landing_frame"] + margin + 1), [i]))
        segments, counters = [], {}
        for kind, start, end, own in bounds:
            seg = self._segment(data, events, video, person, kind, start, end, own, counters)
            if seg is not None:
                segments.append(seg)
        return segments

    def _segment(self, data, events, video, person, kind, start, end, own, counters) -> Segment | None:
        rows = data.rows(person, start, end)
        analysed = data.analysed(start, end)
        if rows.size < self.settings.min_seen_frames or rows.size < self.settings.min_coverage * analysed:
            reason = f"{kind}: person seen in too few frames"
            self.skipped[reason] += 1
            return None
        counters[kind] = counters.get(kind, 0) + 1
        number = "" if kind == "overview" else f"{counters[kind]:02d}"
        segment = Segment(
            id=f"{video}-p{person}-{kind}{number}",
            video=video,
            person=person,
            kind=kind,
            start_frame=int(start),
            end_frame=int(end),
            frames_seen=int(rows.size),
            frames_analysed=analysed,
        )
        if own:
            segment.events = [dict(events[i], index=i) for i in own]
        else:
            segment.events = [
                dict(e, index=i)
                for i, e in enumerate(events)
                if e.get("person") == person and start <= e["start_frame"] and e["end_frame"] < end
            ]
        self._facts(data, segment)
        return segment

    # -- what is measured ------------------------------------------------------------
    def _facts(self, data: _Measured, seg: Segment) -> None:
        b = _FactBuilder(data, seg)
        b.add("person", seg.person, 0, "", "person", "person")
        b.time("start_s", int(data.frame_index[b.rows[0]]))
        b.time("end_s", int(data.frame_index[b.rows[-1]]))
        b.add("frames_seen", seg.frames_seen, 0, "frames", "count", "seen")
        b.add("coverage_pct", 100.0 * seg.frames_seen / max(1, seg.frames_analysed), 0, "%", "share", "seen")
        b.stat("visibility_mean", "mean", "visibility", 2, "")
        for joint in self.profile.angles:
            for stat in ("min", "max", "range"):
                b.stat(f"angle.{joint}.{stat}", stat, f"angles.{joint}", 0, "deg")
            if "knee" in joint or "hip" in joint:
                b.stat(f"angle.{joint}.min_s", "argmin_s", f"angles.{joint}", 2, "s")
        for joint in self.profile.angles[:4]:
            b.stat(f"angular_velocity.{joint}.peak", "peak_abs", f"angular_velocity.{joint}", 0, "deg/s")
        b.stat("speed.com.mean", "mean", "speed.com", 2, "body heights/s")
        b.stat("speed.com.peak", "max", "speed.com", 2, "body heights/s")
        peaks = {
            point: np.nanmax(v) if np.isfinite(v := data.series(f"speed.{point}", seg.person, b.rows)).any() else -1
            for point in VELOCITY_POINTS[1:]
        }
        fastest = max(peaks, key=peaks.get)
        if peaks[fastest] >= 0:
            b.stat("speed.fastest.peak", "max", f"speed.{fastest}", 2, "body heights/s")
        b.stat("com_height.min", "min", "com_height", 2, "body heights")
        b.stat("com_height.max", "max", "com_height", 2, "body heights")
        b.stat("contact.ground_pct", "share", "contact", 0, "%")
        self._event_facts(data, b, seg)

    def _event_facts(self, data: _Measured, b: _FactBuilder, seg: Segment) -> None:
        """An event segment describes its event in detail; other segments list the events they contain."""
        own = seg.kind in ("jump", "drop", "repetition")
        margin = max(1, round(self.settings.event_margin_s * data.fps))
        if not own:
            for kind in ("jump", "drop", "repetition", "contact"):
                count = sum(1 for e in seg.events if e["type"] == kind)
                if count:
                    b.add(f"{kind}.count", count, 0, "", "count", f"event.{kind}")
        for k, event in enumerate(seg.events, start=1):
            i, kind = event["index"], event["type"]
            prefix = f"event{k}"
            if kind in ("jump", "drop"):
                if own:
                    b.event(f"{prefix}.takeoff_s", i, event, "takeoff_s", 2, "s")
                    b.event(f"{prefix}.landing_s", i, event, "landing_s", 2, "s")
                else:
                    b.event(f"{prefix}.takeoff_s", i, event, "takeoff_s", 2, "s")
                b.event(f"{prefix}.flight_time_s", i, event, "flight_time_s", 2, "s")
                b.event(f"{prefix}.height_m", i, event, "height_m", 2, "m")
                if own:
                    knees = "angles.left_knee|right_knee"
                    before = (event["takeoff_frame"] - margin, event["takeoff_frame"] + 1)
                    after = (event["landing_frame"], event["landing_frame"] + margin + 1)
                    b.stat(f"{prefix}.knee_min_before", "min", knees, 0, "deg", before)
                    b.stat(f"{prefix}.knee_min_before_s", "argmin_s", knees, 2, "s", before)
                    b.stat(f"{prefix}.knee_min_after", "min", knees, 0, "deg", after)
            elif kind == "repetition":
                angle = event.get("signal") in ANGLE_SIGNALS
                if own:
                    b.event(f"{prefix}.start_s", i, event, "start_s", 2, "s")
                b.event(f"{prefix}.peak_s", i, event, "peak_s", 2, "s")
                if own:
                    b.event(f"{prefix}.end_s", i, event, "end_s", 2, "s")
                b.event(
                    f"{prefix}.amplitude", i, event, "amplitude", 0 if angle else 2, "deg" if angle else "body heights"
                )
            elif kind == "contact":
                b.event(f"{prefix}.contact_time_s", i, event, "contact_time_s", 2, "s")

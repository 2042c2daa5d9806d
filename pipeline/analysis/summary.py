"""Events as plain dicts, and the summary of a video: per person, with a
quality block and plausibility flags instead of silent garbage."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from pipeline.analysis.body import VELOCITY_POINTS
from pipeline.analysis.events import Flight, Repetition
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.pose.types import PoseChunk

# Plausibility bounds (adult athletes; values outside are flagged, never dropped).
MIN_CONTACT_S = 0.05
MAX_JUMP_HEIGHT_M = 1.2
MIN_VISIBILITY = 0.5
MIN_COVERAGE = 0.5
MAX_OUTLIER_SHARE = 0.05
MIN_TRACKING_STABILITY = 0.9
MAX_TORSO_SPEED_BH_S = 10.0  # faster than any human: an identity switch or a detection jump
# A jump's height from its flight time and its centre of mass' rise (with a height given) are
# flagged when they differ by more than both of these: a takeoff or landing with bent legs, or
# a person not seen side-on, makes the flight time and the rise disagree.
JUMP_HEIGHTS_RELATIVE_TOLERANCE = 0.25
JUMP_HEIGHTS_ABSOLUTE_TOLERANCE_M = 0.03


@dataclass
class PersonSeries:
    """One person's analysed series on some of the analysed rows (``rows`` of the track, at
    ``times`` in seconds): those from the person's first to last, or a few more."""

    slot: int
    rows: np.ndarray
    present: np.ndarray
    times: np.ndarray
    visibility: np.ndarray | None = None
    outlier: np.ndarray | None = None
    filled: np.ndarray | None = None
    torso_px: np.ndarray | None = None
    body_px: float = float("nan")
    flights: list[Flight] = field(default_factory=list)
    contacts: list[tuple[int, int]] = field(default_factory=list)  # (landing, next takeoff) samples
    repetitions: list[Repetition] = field(default_factory=list)
    rep_signal: str | None = None
    rep_direction: int = 0
    swaps_corrected: int = 0
    height_m: float | None = None  # given (--person_height): metres become known
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def metres_per_px(self) -> float | None:
        """The image scale at the person, from the height given and the body height measured in pixels."""
        if self.height_m is None or not np.isfinite(self.body_px) or self.body_px <= 0:
            return None
        return self.height_m / self.body_px

    def scale(self) -> dict | None:
        """The summary's ``scale`` block: None without a height (values in body heights only)."""
        mpp = self.metres_per_px
        if mpp is None:
            return None
        return {"height_m": self.height_m, "metres_per_px": round(mpp, 8), "source": "given"}

    @classmethod
    def unanalysed(cls, slot: int, rows: np.ndarray, present: np.ndarray, times: np.ndarray) -> PersonSeries:
        return cls(slot=slot, rows=rows, present=present, times=times)

    @property
    def analysed(self) -> bool:
        return bool(self.arrays)

    def events(self, frames: np.ndarray, times: np.ndarray) -> list[dict]:
        """Events with frame numbers and times."""

        def at(i: int) -> tuple[int, float]:
            return int(frames[i]), round(float(times[i]), 4)

        out = []
        for flight in self.flights:
            takeoff, takeoff_s = at(flight.takeoff)
            landing, landing_s = at(flight.landing)
            height = flight.jump_height_m
            flags = []
            if height is not None and height > MAX_JUMP_HEIGHT_M:
                flags.append(f"jump height {height:.2f} m is above {MAX_JUMP_HEIGHT_M} m")
            rise_bh, rise_m = flight.com_rise_bh, None
            if rise_bh is not None and self.height_m is not None:
                rise_m = rise_bh * self.height_m
            out.append(
                {
                    "type": flight.kind,
                    "person": self.slot,
                    "start_frame": takeoff,
                    "end_frame": landing,
                    "takeoff_frame": takeoff,
                    "takeoff_s": takeoff_s,
                    "apex_frame": at(flight.apex)[0],
                    "landing_frame": landing,
                    "landing_s": landing_s,
                    "flight_time_s": round(flight.flight_time_s, 4),
                    "height_m": None if height is None else round(height, 4),
                    "rise_bh": round(flight.rise_bh, 4),
                    "level_change_bh": round(flight.level_change_bh, 4),
                    "com_rise_bh": None if rise_bh is None else round(rise_bh, 4),
                    "com_rise_m": None if rise_m is None else round(rise_m, 4),
                    "heights_agree": _heights_agree(height, rise_m),
                    "plausible": not flags,
                    "flags": flags,
                }
            )
        for landing, takeoff in self.contacts:
            start, start_s = at(landing)
            end, end_s = at(takeoff)
            contact_s = end_s - start_s
            flags = []
            if contact_s < MIN_CONTACT_S:
                flags.append(f"contact {contact_s * 1000:.0f} ms is under {MIN_CONTACT_S * 1000:.0f} ms")
            out.append(
                {
                    "type": "contact",
                    "person": self.slot,
                    "start_frame": start,
                    "end_frame": end,
                    "start_s": start_s,
                    "end_s": end_s,
                    "contact_time_s": round(contact_s, 4),
                    "plausible": not flags,
                    "flags": flags,
                }
            )
        for k, rep in enumerate(self.repetitions, start=1):
            start, start_s = at(rep.start)
            peak, peak_s = at(rep.peak)
            end, end_s = at(rep.end)
            out.append(
                {
                    "type": "repetition",
                    "person": self.slot,
                    "index": k,
                    "start_frame": start,
                    "end_frame": end,
                    "peak_frame": peak,
                    "start_s": start_s,
                    "peak_s": peak_s,
                    "end_s": end_s,
                    "signal": self.rep_signal,
                    "amplitude": round(rep.amplitude, 4),
                    "plausible": True,
                    "flags": [],
                }
            )
        return out


def _heights_agree(from_flight_m: float | None, com_rise_m: float | None) -> bool | None:
    """Whether a jump's two heights agree (None: one of them is unknown)."""
    if from_flight_m is None or com_rise_m is None:
        return None
    difference = abs(com_rise_m - from_flight_m)
    return bool(
        difference <= JUMP_HEIGHTS_ABSOLUTE_TOLERANCE_M or difference <= JUMP_HEIGHTS_RELATIVE_TOLERANCE * from_flight_m
    )


def _stats(values: np.ndarray, decimals: int = 2) -> dict | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return {
        "min": round(float(values.min()), decimals),
        "max": round(float(values.max()), decimals),
        "mean": round(float(values.mean()), decimals),
        "range": round(float(values.max() - values.min()), decimals),
        "frames": int(values.size),
    }


def _quality(person: PersonSeries, times: np.ndarray) -> dict:
    present = person.present
    seen = int(present.sum())
    span = np.flatnonzero(present)
    in_span = span[-1] - span[0] + 1 if seen else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        visibility = float(np.nanmean(person.visibility[present])) if seen else 0.0
    outlier_share = float(person.outlier[present].mean()) if seen else 0.0
    steps = np.flatnonzero(present[1:] & present[:-1])
    if steps.size:
        jump = np.linalg.norm(person.torso_px[steps + 1] - person.torso_px[steps], axis=-1)
        speed = jump / np.maximum(np.diff(times)[steps], 1e-6) / person.body_px
        stability = float(np.mean(speed <= MAX_TORSO_SPEED_BH_S))
    else:
        stability = 0.0
    coverage = seen / max(1, in_span)
    score = 0.3 * coverage + 0.3 * visibility + 0.2 * max(0.0, 1 - 10 * outlier_share) + 0.2 * stability
    return {
        "coverage_in_track": round(coverage, 4),
        "mean_visibility": round(visibility, 4),
        "outlier_share": round(outlier_share, 4),
        "filled_frames": int(person.filled.sum()),
        "left_right_swaps_corrected": person.swaps_corrected,
        "tracking_stability": round(stability, 4),
        "score": round(score, 3),
    }


def _flags(quality: dict, person_events: list[dict]) -> list[dict]:
    flags = []
    checks = [
        (
            quality["mean_visibility"] < MIN_VISIBILITY,
            "low_visibility",
            f"mean visibility {quality['mean_visibility']:.2f} < {MIN_VISIBILITY}",
        ),
        (
            quality["coverage_in_track"] < MIN_COVERAGE,
            "low_coverage",
            f"seen in {quality['coverage_in_track']:.0%} of the frames of its track",
        ),
        (
            quality["outlier_share"] > MAX_OUTLIER_SHARE,
            "many_outliers",
            f"{quality['outlier_share']:.1%} of landmark samples were outliers",
        ),
        (
            quality["tracking_stability"] < MIN_TRACKING_STABILITY,
            "unstable_tracking",
            f"torso jumps faster than {MAX_TORSO_SPEED_BH_S:g} body heights/s in {1 - quality['tracking_stability']:.0%} of steps",
        ),
    ]
    flags.extend({"code": code, "message": message} for bad, code, message in checks if bad)
    for event in person_events:
        for message in event["flags"]:
            code = "short_contact" if event["type"] == "contact" else "implausible_jump"
            flags.append({"code": code, "message": message, "frame": event["start_frame"]})
        if event.get("heights_agree") is False:
            message = (
                f"jump height {event['height_m']:.2f} m from the flight time, {event['com_rise_m']:.2f} m from "
                "the centre of mass' rise"
            )
            flags.append({"code": "jump_heights_differ", "message": message, "frame": event["start_frame"]})
    return flags


# A person seen for less than this (seconds of analysed frames) is reported but not counted:
# a fragment of a pose the model dropped at once (4 frames of a ghost on the sample).
MIN_COUNTED_S = 0.5


def _rate(times: np.ndarray) -> float:
    """Analysed frames per second."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def _person_summary(
    person: PersonSeries, track: PoseChunk, events: list[dict], times: np.ndarray, analysed: int, min_frames: int
) -> dict:
    frames = person.rows[person.present]
    base = {
        "id": person.slot,
        "frames_detected": int(frames.size),
        "coverage": round(frames.size / max(1, analysed), 4),
        "first_frame": int(track.frame_index[frames[0]]),
        "last_frame": int(track.frame_index[frames[-1]]),
        "counted": bool(frames.size >= min_frames and frames.size >= MIN_COUNTED_S * _rate(times)),
    }
    if not person.analysed:
        return base | {"analysed": False}
    arrays = person.arrays
    mine = [e for e in events if e["person"] == person.slot]
    jumps = [e for e in mine if e["type"] == "jump"]
    contacts = [e for e in mine if e["type"] == "contact"]
    speed = np.linalg.norm(arrays["velocity_px_s"], axis=-1) / person.body_px
    quality = _quality(person, person.times)
    height_m = person.height_m if person.metres_per_px is not None else None
    in_metres = {}
    if height_m is not None:
        in_metres = {
            "speed_m_s": {name: _stats(speed[:, k] * height_m, 3) for k, name in enumerate(VELOCITY_POINTS)},
            "com_height_m": _stats(arrays["com_height_bh"] * height_m, 3),
        }
    return base | {
        "analysed": True,
        "body_height_px": round(person.body_px, 1),
        "scale": person.scale(),
        "mean_visibility": quality["mean_visibility"],
        "angles_deg": {name: _stats(arrays["angles"][:, k]) for k, name in enumerate(ANGLE_NAMES)},
        "peak_angular_velocity_deg_s": {
            name: (round(float(np.nanmax(np.abs(v))), 1) if np.isfinite(v).any() else None)
            for name, v in zip(ANGLE_NAMES, arrays["angular_velocity"].T)
        },
        "speed_bh_s": {name: _stats(speed[:, k], 3) for k, name in enumerate(VELOCITY_POINTS)},
        "com_height_bh": _stats(arrays["com_height_bh"], 3),
        **in_metres,
        "jumps": {
            "count": len(jumps),
            "best_height_m": max((e["height_m"] for e in jumps), default=None),
            "best_com_rise_m": max((e["com_rise_m"] for e in jumps if e["com_rise_m"] is not None), default=None),
            "mean_flight_time_s": round(float(np.mean([e["flight_time_s"] for e in jumps])), 4) if jumps else None,
        },
        "drops": sum(1 for e in mine if e["type"] == "drop"),
        "contacts": {
            "count": len(contacts),
            "mean_s": round(float(np.mean([e["contact_time_s"] for e in contacts])), 4) if contacts else None,
            "min_s": min((e["contact_time_s"] for e in contacts), default=None),
        },
        "repetitions": {
            "count": len(person.repetitions),
            "signal": person.rep_signal,
            "direction": {1: "up", -1: "down"}.get(person.rep_direction),
            "mean_period_s": (
                round(float(np.mean(np.diff([person.times[r.peak] for r in person.repetitions]))), 3)
                if len(person.repetitions) > 1
                else None
            ),
        },
        "quality": quality,
        "flags": _flags(quality, mine),
    }


def frame_ranges(frames: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"``."""
    spans: list[list[int]] = []
    for f in frames:
        if spans and f == spans[-1][1] + 1:
            spans[-1][1] = f
        else:
            spans.append([f, f])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def summarize(
    track: PoseChunk, persons: list[PersonSeries], events: list[dict], params, tracking: dict | None = None
) -> dict:
    """Per-video and per-person summary (plain dict, JSON-ready). ``tracking``: how the
    persons were linked and ordered (``Linking.counts``), reported as it is."""
    rows = np.flatnonzero(track.sampled)
    times = track.timestamp_ms[rows] / 1000.0
    detected = track.detected
    people = [
        _person_summary(p, track, events, times, len(rows), params.min_track_frames) for p in persons if p.present.any()
    ]
    counted = [p for p in people if p["counted"] and p["analysed"]]
    profile = SPORT_PROFILES[params.sport_type]
    undecodable = [int(f) for f in track.frame_index[~track.decoded]]
    video_flags = []
    if undecodable:
        message = f"{len(undecodable)} frame(s) could not be decoded: {frame_ranges(undecodable)}"
        video_flags.append({"code": "undecodable_frames", "message": message, "person": None})
    return {
        "frames": track.num_frames,
        "undecodable_frames": undecodable,
        "frames_analysed": int(len(rows)),
        "frames_with_person": int(detected.any(axis=1).sum()),
        "max_persons_in_frame": int(detected.sum(axis=1).max()) if track.num_frames else 0,
        "persons_found": len(counted),
        "person_order": (tracking or {}).get("person_order"),
        "tracking": {k: v for k, v in (tracking or {}).items() if k != "person_order"},
        "sport_type": params.sport_type,
        "highlights": {
            "angles": list(profile.angles),
            "event_types": list(profile.events),
        },
        "event_counts": {
            kind: sum(1 for e in events if e["type"] == kind) for kind in ("jump", "drop", "contact", "repetition")
        },
        "quality_score": round(min(p["quality"]["score"] for p in counted), 3) if counted else None,
        "flags": video_flags + [flag | {"person": p["id"]} for p in counted for flag in p["flags"]],
        "persons": people,
    }


def with_stitching(summary: dict, report: dict) -> dict:
    """``summary`` with how its track was stitched from chunks (``pipeline.pose.handover.stitch``):
    ``chunks``, and a video flag where a chunk's tail ended before the next chunk caught up."""
    flags = list(summary["flags"])
    if report["unsettled"]:
        message = (
            f"{report['unsettled']} of {report['boundaries']} chunk boundaries were handed over before the next "
            "chunk's tracker caught up: a person may be missed for a while after them"
        )
        flags.insert(0, {"code": "unsettled_handover", "message": message, "person": None})
    return summary | {"chunks": dict(report), "flags": flags}

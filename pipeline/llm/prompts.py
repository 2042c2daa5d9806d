"""The system prompt and the user turn: a segment's facts as compact, readable text.

Every number in a user turn is the ``text`` of one of the segment's facts, and
no other number appears (units and the joint convention live in the system prompt).
"""

from __future__ import annotations

from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.llm.dataset import Segment

FOCUS: dict[str, str] = {
    "general": "Comment on the range of motion, left-right balance, speed, and any jumps or repetitions.",
    "jump": "Focus on the countermovement before takeoff, the flight time and height, and how the knees absorb the landing.",
    "squat": "Focus on depth (the lowest knee and hip angles), left-right balance and the tempo of the repetitions.",
    "jumping_jacks": "Focus on the arm range (shoulder angles), the rhythm and how even the repetitions are.",
    "running": "Focus on ground contact times, knee drive and left-right balance.",
    "weightlifting": "Focus on extension at the top, depth at the bottom, symmetry and the tempo of the repetitions.",
}
assert set(FOCUS) == set(SPORT_PROFILES), "every sport needs a focus line"

SYSTEM_PROMPT = (
    "You are a movement coach. You read what video pose estimation measured of one person in one segment "
    "of a {sport} video and give short, specific feedback. Joint angles are in degrees between the two body "
    "segments that meet at the joint: a straight knee or elbow reads highest, a deep bend reads lowest. "
    "Speeds are in body heights per second, times in seconds from the start of the video. Use only the "
    "numbers given, quote them as written, and say so when the data is too sparse to judge. {focus}"
)

KIND_LABEL = {
    "overview": "whole track",
    "window": "window",
    "jump": "jump",
    "drop": "drop (landed lower)",
    "repetition": "one repetition",
}


_FLIGHT_PARTS = (
    ("takeoff_s", "takeoff at {} s"),
    ("landing_s", "landing at {} s"),
    ("flight_time_s", "flight time {} s"),
    ("height_m", "height from the flight time {} m"),
    ("knee_min_before", "lowest knee angle before takeoff {}"),
    ("knee_min_before_s", "at {} s"),
    ("knee_min_after", "lowest knee angle after landing {}"),
)
EVENT_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "jump": _FLIGHT_PARTS,
    "drop": _FLIGHT_PARTS,
    "repetition": (
        ("start_s", "start {} s"),
        ("peak_s", "turning point {} s"),
        ("end_s", "end {} s"),
        ("amplitude", "swing {}"),
    ),
    "contact": (("contact_time_s", "contact {} s"),),
}


def system_prompt(sport: str) -> str:
    return SYSTEM_PROMPT.format(sport=sport.replace("_", " "), focus=FOCUS[sport])


def _label(name: str) -> str:
    return name.replace("_", " ")


def user_turn(segment: Segment, sport: str) -> str:
    f = segment.facts

    def t(name: str) -> str:
        return f[name].text

    lines = [
        f"Sport: {_label(sport)}. Segment: {KIND_LABEL[segment.kind]}, person {t('person')}, "
        f"{t('start_s')} s to {t('end_s')} s.",
        f"Seen in {t('frames_seen')} frames ({t('coverage_pct')}% of the analysed frames)"
        + (f", mean landmark visibility {t('visibility_mean')}." if "visibility_mean" in f else "."),
    ]
    angles = []
    for joint in SPORT_PROFILES[sport].angles:
        key = f"angle.{joint}"
        if f"{key}.min" not in f:
            angles.append(f"{_label(joint)} not measured")
            continue
        lowest = f", lowest at {t(key + '.min_s')} s" if f"{key}.min_s" in f else ""
        angles.append(f"{_label(joint)} {t(key + '.min')}-{t(key + '.max')} (range {t(key + '.range')}{lowest})")
    lines.append("Joint angles in degrees, lowest-highest: " + "; ".join(angles) + ".")
    peaks = [
        f"{_label(j)} {t(f'angular_velocity.{j}.peak')}"
        for j in SPORT_PROFILES[sport].angles
        if f"angular_velocity.{j}.peak" in f
    ]
    if peaks:
        lines.append("Peak angular speed in deg/s: " + ", ".join(peaks) + ".")
    com = []
    if "speed.com.mean" in f:
        com.append(f"speed mean {t('speed.com.mean')}, peak {t('speed.com.peak')} body heights/s")
    if "com_height.min" in f:
        com.append(f"height above the ground stood on {t('com_height.min')}-{t('com_height.max')} body heights")
    if com:
        lines.append("Centre of mass: " + "; ".join(com) + ".")
    if "speed.fastest.peak" in f:
        part = f["speed.fastest.peak"].series.split(".", 1)[1]
        lines.append(f"Fastest body part: {_label(part)}, peak {t('speed.fastest.peak')} body heights/s.")
    if "contact.ground_pct" in f:
        lines.append(f"Feet on the ground in {t('contact.ground_pct')}% of the frames.")
    lines += _event_lines(segment)
    return "\n".join(lines)


def _event_lines(segment: Segment) -> list[str]:
    f = segment.facts
    own = segment.kind in ("jump", "drop", "repetition")
    lines = []
    if not own:
        counts = [
            f"{f[f'{kind}.count'].text} {kind}{'s' if f[f'{kind}.count'].value != 1 else ''}"
            for kind in ("jump", "drop", "repetition", "contact")
            if f"{kind}.count" in f
        ]
        if counts:
            lines.append("Events: " + ", ".join(counts) + ".")
    for k, event in enumerate(segment.events, start=1):
        kind = event["type"]
        if kind not in EVENT_PARTS:
            continue
        parts = [
            template.format(f[f"event{k}.{name}"].text)
            for name, template in EVENT_PARTS[kind]
            if f"event{k}.{name}" in f
        ]
        if kind == "repetition" and f"event{k}.amplitude" in f:
            parts[-1] += " deg" if f[f"event{k}.amplitude"].unit == "deg" else " body heights"
        title = {"jump": "Jump", "drop": "Drop", "contact": "Ground contact"}.get(kind)
        title = title or f"Repetition ({_label(event.get('signal') or 'signal')})"
        if parts:
            lines.append(f"{title}: " + ", ".join(parts) + ".")
    return lines

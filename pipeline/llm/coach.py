"""The assistant turn: coaching feedback derived from a segment's facts only.

Each sentence comes from a rule on measured values and quotes them exactly as
the user turn writes them, so no number appears that the user turn does not
hold. Thresholds (what counts as a deep squat, a stiff landing, an uneven
pair of joints) are coaching conventions that shape the wording; they are never
quoted as if they were measurements.
"""

from __future__ import annotations

from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.llm.dataset import Fact, Segment

# Wording thresholds (degrees unless noted).
LOW_COVERAGE_PCT = 70.0
LOW_VISIBILITY = 0.6
DEEP_KNEE = 100.0  # a knee bent below this is a deep bend
PARTIAL_KNEE = 130.0
STIFF_LANDING_KNEE = 150.0  # knees straighter than this after landing absorb little
SOFT_LANDING_KNEE = 110.0
SMALL_DIP_KNEE = 140.0
OVERHEAD_SHOULDER = 150.0
FULL_EXTENSION = 165.0
KNEE_DRIVE_HIP = 120.0
UNEVEN_RATIO = 0.7  # the smaller side's range below this share of the larger one ...
UNEVEN_DEG = 15.0  # ... and this many degrees apart
FAST_COM_BH_S = 2.5
STILL_COM_BH_S = 0.3
SHORT_CONTACT_S = 0.2
LONG_CONTACT_S = 0.3
PAIRS = ("knee", "hip", "ankle", "elbow", "shoulder")


def _lowest(segment: Segment, joint: str, stat: str = "min") -> Fact | None:
    """The more extreme of the left and right values of ``joint``."""
    sides = [segment.fact(f"angle.{side}_{joint}.{stat}") for side in ("left", "right")]
    sides = [s for s in sides if s is not None]
    if not sides:
        return None
    return min(sides, key=lambda s: s.value) if stat == "min" else max(sides, key=lambda s: s.value)


def _side(fact: Fact) -> str:
    return fact.name.split(".")[1].replace("_", " ")


def _quality(seg: Segment) -> list[str]:
    coverage, visibility = seg.fact("coverage_pct"), seg.fact("visibility_mean")
    poor_visibility = visibility is not None and visibility.value < LOW_VISIBILITY
    if coverage.value >= LOW_COVERAGE_PCT and not poor_visibility:
        return []
    detail = f"the person is seen in {coverage.text}% of the analysed frames"
    if visibility is not None:
        detail += f" with a mean landmark visibility of {visibility.text}"
    return [f"Read these numbers with care: {detail}, so some of the movement was not measured."]


def _flight(seg: Segment, k: int, kind: str) -> list[str]:
    p = f"event{k}"
    flight, height = seg.fact(f"{p}.flight_time_s"), seg.fact(f"{p}.height_m")
    out = []
    if flight is not None and height is not None:
        out.append(f"The flight time of {flight.text} s puts the rise of the centre of mass at about {height.text} m.")
    elif flight is not None:
        out.append(f"The {kind} has a flight time of {flight.text} s.")
    dip, landing = seg.fact(f"{p}.knee_min_before"), seg.fact(f"{p}.knee_min_after")
    if dip is not None and kind == "jump":
        if dip.value < DEEP_KNEE:
            out.append(f"The countermovement is deep: the knees bend to {dip.text} before takeoff.")
        elif dip.value < SMALL_DIP_KNEE:
            out.append(f"The countermovement is moderate, with the knees at {dip.text} before takeoff.")
        else:
            out.append(
                f"There is little countermovement: the knees only bend to {dip.text} before takeoff; "
                "a deeper, quick dip can add height."
            )
    if landing is not None:
        if landing.value > STIFF_LANDING_KNEE:
            out.append(
                f"The landing is stiff: the knees stay at {landing.text} or straighter, so bend them more to absorb the impact."
            )
        elif landing.value > SOFT_LANDING_KNEE:
            out.append(f"The knees flex to {landing.text} after landing, which absorbs the impact.")
        else:
            out.append(f"The landing is deep, with the knees down to {landing.text}; control that depth.")
    return out


def _repetition(seg: Segment, event: dict) -> list[str]:
    start, peak, end = (seg.fact(f"event1.{n}") for n in ("start_s", "peak_s", "end_s"))
    amplitude = seg.fact("event1.amplitude")
    signal = (event.get("signal") or "signal").replace("_", " ")
    out = []
    if start is not None and end is not None and peak is not None:
        first, second = peak.value - start.value, end.value - peak.value
        text = f"This repetition of the {signal} runs from {start.text} s to {end.text} s, turning at {peak.text} s"
        if amplitude is not None:
            text += f", with a swing of {amplitude.text}" + (" degrees" if amplitude.unit == "deg" else " body heights")
        out.append(text + ".")
        if min(first, second) > 0 and max(first, second) > 1.5 * min(first, second):
            slower = "first" if first > second else "second"
            out.append(
                f"The {slower} half is clearly slower than the other: aim for a steadier tempo if that is not intended."
            )
    return out


def _sport(seg: Segment, sport: str) -> list[str]:
    out = []
    knee, hip = _lowest(seg, "knee"), _lowest(seg, "hip")
    if sport == "squat" and knee is not None:
        if knee.value < DEEP_KNEE:
            out.append(f"Depth is good: the {_side(knee)} reaches {knee.text}.")
        elif knee.value < PARTIAL_KNEE:
            out.append(
                f"This is a partial squat: the {_side(knee)} bends to {knee.text}; go deeper if mobility allows."
            )
        else:
            out.append(f"The squat is very shallow: the {_side(knee)} only bends to {knee.text}.")
    elif sport == "jumping_jacks":
        shoulder = _lowest(seg, "shoulder", "max")
        if shoulder is not None and shoulder.value >= OVERHEAD_SHOULDER:
            out.append(f"The arms reach overhead ({_side(shoulder)} up to {shoulder.text}).")
        elif shoulder is not None:
            out.append(f"The arms stop at {shoulder.text} ({_side(shoulder)}): raise them higher for the full range.")
    elif sport == "weightlifting":
        top_knee, top_hip = _lowest(seg, "knee", "max"), _lowest(seg, "hip", "max")
        if top_knee is not None and top_hip is not None:
            if top_knee.value >= FULL_EXTENSION and top_hip.value >= FULL_EXTENSION:
                out.append(f"Knees and hips extend fully at the top ({top_knee.text} and {top_hip.text}).")
            else:
                out.append(f"Extension stops short at the top: knee {top_knee.text}, hip {top_hip.text}.")
    elif sport == "running":
        if hip is not None:
            if hip.value < KNEE_DRIVE_HIP:
                out.append(f"Knee drive is good: the {_side(hip)} flexes to {hip.text}.")
            else:
                out.append(f"Knee drive is small: the {_side(hip)} only flexes to {hip.text}; lift the knees more.")
        contacts = [f for f in seg.facts.values() if f.name.endswith(".contact_time_s")]
        if contacts:
            short = min(contacts, key=lambda f: f.value)
            long = max(contacts, key=lambda f: f.value)
            if long.value > LONG_CONTACT_S:
                out.append(f"Ground contacts last up to {long.text} s: a quicker, springier step shortens them.")
            elif short.value < SHORT_CONTACT_S:
                out.append(f"Ground contacts are quick, down to {short.text} s.")
    if not out:
        ranges = [f for f in seg.facts.values() if f.name.startswith("angle.") and f.name.endswith(".range")]
        if ranges:
            widest = max(ranges, key=lambda f: f.value)
            out.append(f"The largest movement is at the {_side(widest)}, through a range of {widest.text} degrees.")
    return out


def _balance(seg: Segment, sport: str) -> tuple[list[str], str | None]:
    """A sentence on an uneven left/right pair, and the side it names first (``None`` without one)."""
    joints = SPORT_PROFILES[sport].angles
    for pair in PAIRS:
        left, right = seg.fact(f"angle.left_{pair}.range"), seg.fact(f"angle.right_{pair}.range")
        if left is None or right is None or f"left_{pair}" not in joints:
            continue
        big, small = (left, right) if left.value >= right.value else (right, left)
        if small.value < UNEVEN_RATIO * big.value and big.value - small.value > UNEVEN_DEG:
            sentence = (
                f"The {_side(big)} moves through {big.text} degrees but the {_side(small)} through only {small.text}: "
                "one side does more of the work, or is hidden from the camera in part of the segment."
            )
            return [sentence], _side(big)
    return [], None


def _speed(seg: Segment) -> list[str]:
    peak, mean = seg.fact("speed.com.peak"), seg.fact("speed.com.mean")
    if peak is not None and peak.value > FAST_COM_BH_S:
        return [f"The movement is fast, with the centre of mass reaching {peak.text} body heights/s."]
    if mean is not None and mean.value < STILL_COM_BH_S:
        return [f"The body stays nearly still here (centre of mass mean speed {mean.text} body heights/s)."]
    return []


def _contained(seg: Segment) -> list[str]:
    out = []
    jumps = seg.fact("jump.count")
    if jumps is not None:
        flights = [f for f in seg.facts.values() if f.name.endswith(".flight_time_s")]
        longest = max(flights, key=lambda f: f.value) if flights else None
        text = f"There {'is' if jumps.value == 1 else 'are'} {jumps.text} jump{'s' if jumps.value != 1 else ''}"
        out.append(text + (f", the longest with a flight time of {longest.text} s." if longest else "."))
    reps = seg.fact("repetition.count")
    if reps is not None:
        out.append(f"{reps.text} repetition{'s' if reps.value != 1 else ''} can be counted in this segment.")
    return out


def feedback(segment: Segment, sport: str) -> str:
    """Two to six sentences about ``segment``, for ``sport``."""
    sentences = _quality(segment)
    if segment.kind in ("jump", "drop"):
        sentences += _flight(segment, 1, segment.kind)
    elif segment.kind == "repetition":
        sentences += _repetition(segment, segment.events[0])
    else:
        sentences += _contained(segment)
    sport_lines, (balance, side) = _sport(segment, sport), _balance(segment, sport)
    if side and sport_lines and sport_lines[-1].startswith(f"The largest movement is at the {side},"):
        sport_lines.pop()  # the balance sentence names the same joint with the same range
    sentences += sport_lines + balance + _speed(segment)
    if len(sentences) < 2:
        sentences.append(
            f"Nothing stands out between {segment.facts['start_s'].text} s and {segment.facts['end_s'].text} s."
        )
    return " ".join(sentences[:6])

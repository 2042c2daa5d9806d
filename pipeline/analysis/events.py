"""Events in a person's series: flights (jumps, drops), ground contacts, repetitions.

Flights come from the lowest foot point in image rows (y grows downwards):

1. *Support phases*: runs where the foot is still (vertical speed below
   ``still_speed_bh_s`` body heights per second) for at least ``min_support_s``.
   Each has a level (median foot row). A still run shorter than ``apex_max_s``
   with a lower phase within a flight's reach on both sides is the top of a
   flight, not support, and is dropped.
2. Between two support phases A and B the foot is airborne when it rose above
   both levels by ``min_rise_bh`` (a jump: takeoff and landing at the same
   level) or when B is lower than A by more than ``same_level_bh`` (a drop,
   e.g. off a box).
3. Takeoff is the last sample at A's level (within ``contact_tolerance_bh``)
   before the foot rises; landing is the first sample back at B's level. These
   use the unsmoothed foot rows, since smoothing spreads a takeoff over the
   filter window. Where the foot touches the level in between (hops too quick
   to be still), each airborne run is its own flight. Flight time = landing
   time - takeoff time; for a jump the height is g t^2 / 8 (no scale needed).
4. A contact is the time between a landing and the next takeoff, when that is
   at most ``max_contact_s`` (longer is rest, not a contact).

Repetitions are the peaks of a periodic signal (an angle or a position) with a
prominence of at least ``max(minimum amplitude, rep_relative_prominence x the
signal's range)``, at least ``rep_min_period_s`` apart. The direction of a
repetition (towards larger or smaller values) is the one with more peaks:
a squat's knee angle has N minima between N+1 standing phases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.analysis.filters import runs, time_derivative
from pipeline.config import EventParams

G = 9.81  # m/s^2


@dataclass(frozen=True)
class Support:
    start: int  # sample positions [start, stop)
    stop: int
    level: float  # median foot row, px


@dataclass(frozen=True)
class Flight:
    kind: str  # "jump" (same level), "drop" (landed lower) or "step_up" (landed higher)
    takeoff: int  # sample position: last sample on the ground
    apex: int
    landing: int  # sample position: first sample back on the ground
    flight_time_s: float
    rise_bh: float  # how far the foot rose above the takeoff level, body heights
    level_change_bh: float  # landing level below takeoff level (positive = lower), body heights
    com_rise_bh: float | None = None  # the centre of mass' rise from takeoff to its top, body heights

    @property
    def jump_height_m(self) -> float | None:
        """Height of the centre of mass rise from flight time, for a jump only."""
        return G * self.flight_time_s**2 / 8 if self.kind == "jump" else None


@dataclass(frozen=True)
class Repetition:
    start: int  # sample positions
    peak: int
    end: int
    amplitude: float  # prominence of the peak, in the signal's unit


def support_phases(
    foot_y: np.ndarray, times_s: np.ndarray, body_px: float, params: EventParams, period: float | None = None
) -> list[Support]:
    """``period``: the sampling period in seconds (default: the median step of ``times_s``)."""
    speed = np.abs(time_derivative(foot_y, times_s)) / body_px
    still = np.nan_to_num(speed, nan=np.inf) < params.still_speed_bh_s
    if period is None:
        period = float(np.median(np.diff(times_s))) if len(times_s) > 1 else 0.0
    phases = [
        Support(start, stop, float(np.nanmedian(foot_y[start:stop])))
        for start, stop in runs(still)
        if (stop - start) * period >= params.min_support_s
    ]
    margin = params.min_rise_bh * body_px

    def lower_within_reach(i: int, step: int) -> bool | None:
        """Is there a phase lower by ``margin`` within a flight's reach on this side?
        None when there is no phase at all on that side."""
        j, found_any = i + step, False
        while 0 <= j < len(phases):
            found_any = True
            gap = (
                times_s[phases[i].start] - times_s[phases[j].stop - 1]
                if step < 0
                else times_s[phases[j].start] - times_s[phases[i].stop - 1]
            )
            if gap > params.max_flight_s:
                break
            if phases[j].level - phases[i].level > margin:
                return True
            j += step
        return False if found_any else None

    def is_apex(i: int) -> bool:
        if (phases[i].stop - phases[i].start) * period >= params.apex_max_s:
            return False
        sides = [lower_within_reach(i, -1), lower_within_reach(i, 1)]
        return all(side is not False for side in sides) and any(sides)

    # Short still runs with lower ground within reach on both sides are the tops of
    # flights (several in a row when hops follow each other faster than a support phase).
    phases = [phase for i, phase in enumerate(phases) if not is_apex(i)] if len(phases) > 1 else phases
    return phases


def detect_flights(
    foot_y: np.ndarray,
    foot_y_smooth: np.ndarray,
    times_s: np.ndarray,
    body_px: float,
    params: EventParams,
    period: float | None = None,
) -> list[Flight]:
    """Flights of one person; ``foot_y`` is the lowest foot row per sample (px),
    NaN where unseen; ``foot_y_smooth`` its smoothed version (for stillness);
    ``period``: the sampling period in seconds (default: the median step of ``times_s``)."""
    if not np.isfinite(body_px) or body_px <= 0 or np.isfinite(foot_y).sum() < 3:
        return []
    phases = support_phases(foot_y_smooth, times_s, body_px, params, period)
    tolerance = params.contact_tolerance_bh * body_px
    flights = []
    for a, b in zip(phases, phases[1:]):
        gap = foot_y[a.stop : b.start]
        if gap.size == 0 or np.isnan(gap).any():
            continue  # touching phases, or the foot was lost in between: nothing to measure
        apex = a.stop + int(np.argmin(gap))
        rise = min(a.level, b.level) - foot_y[apex]
        level_change = b.level - a.level
        same_level = params.same_level_bh * body_px
        if level_change > same_level:
            kind = "drop"
        elif rise >= params.min_rise_bh * body_px:
            kind = "jump" if abs(level_change) <= same_level else "step_up"
        else:
            continue
        if kind == "jump":
            # The foot may touch down in between (repeated hops): each airborne run is a flight.
            first = _last_at_level(foot_y, a, apex, tolerance)
            last = _first_at_level(foot_y, b, apex, tolerance)
            airborne = foot_y[first : last + 1] < a.level - tolerance
            spans = [(max(first + r0 - 1, 0), min(first + r1, last)) for r0, r1 in runs(airborne)]
        else:
            spans = [(_last_at_level(foot_y, a, apex, tolerance), _first_at_level(foot_y, b, apex, tolerance))]
        for takeoff, landing in spans:
            flight_time = float(times_s[landing] - times_s[takeoff])
            top = takeoff + int(np.argmin(foot_y[takeoff : landing + 1]))
            rise = a.level - foot_y[top]
            if not params.min_flight_s <= flight_time <= params.max_flight_s:
                continue
            if kind == "jump" and rise < params.min_rise_bh * body_px:
                continue
            flights.append(
                Flight(
                    kind=kind,
                    takeoff=takeoff,
                    apex=top,
                    landing=landing,
                    flight_time_s=flight_time,
                    rise_bh=float(rise / body_px),
                    level_change_bh=float(level_change / body_px),
                )
            )
    return flights


def support_level(
    foot_y_smooth: np.ndarray,
    times_s: np.ndarray,
    body_px: float,
    params: EventParams,
    flights: list[Flight],
    period: float | None = None,
) -> np.ndarray:
    """The image row of the ground the person stands on, per sample ``[T]``: the level of
    the support phase the sample is in; after a landing, the level landed on; elsewhere
    (in the air, or moving without a still foot) the level last stood on, or the foot's
    row where the foot is lower (stepping down); before the first phase, the first
    phase's level. Without any support phase: the 95th
    percentile of the foot's rows over the track (its lowest usual position).

    A person standing on a box is measured from the box's top, and from the ground once
    they have dropped off it."""
    level = np.full(len(foot_y_smooth), np.nan)
    if not np.isfinite(body_px) or body_px <= 0 or not np.isfinite(foot_y_smooth).any():
        return level
    phases = support_phases(foot_y_smooth, times_s, body_px, params, period)
    if not phases:
        level[:] = np.nanpercentile(foot_y_smooth, 95)
        return level
    starts = np.array([phase.start for phase in phases])
    for phase in phases:
        level[phase.start : phase.stop] = phase.level
    for flight in flights:  # from the landing on, the level landed on
        following = np.searchsorted(starts, flight.landing, side="right")
        if following < len(phases):
            landing_gap = np.isnan(level[flight.landing : phases[following].start])
            level[flight.landing : phases[following].start][landing_gap] = phases[following].level
    known = np.flatnonzero(~np.isnan(level))
    held = known[np.clip(np.searchsorted(known, np.arange(len(level)), side="right") - 1, 0, None)]
    # Forward filled (the samples before the first phase take its level); never above the
    # foot: a foot lower than the level held is stepping down onto lower ground.
    return np.fmax(level[held], foot_y_smooth)


def ground_contacts(flights: list[Flight], times_s: np.ndarray, params: EventParams) -> list[tuple[int, int]]:
    """``(landing, next takeoff)`` sample pairs of contacts between consecutive flights."""
    return [
        (f.landing, g.takeoff)
        for f, g in zip(flights, flights[1:])
        if g.takeoff >= f.landing and times_s[g.takeoff] - times_s[f.landing] <= params.max_contact_s
    ]


def _last_at_level(foot_y: np.ndarray, phase: Support, limit: int, tolerance: float) -> int:
    """Last sample at the phase's level before the foot left it (and before ``limit``)."""
    i = min(phase.stop - 1, limit - 1)
    while i > phase.start and abs(foot_y[i] - phase.level) > tolerance:
        i -= 1
    while i + 1 < limit and abs(foot_y[i + 1] - phase.level) <= tolerance:
        i += 1
    return i


def _first_at_level(foot_y: np.ndarray, phase: Support, limit: int, tolerance: float) -> int:
    """First sample at the phase's level after ``limit`` (the apex)."""
    j = max(phase.start, limit + 1)
    while j < phase.stop - 1 and abs(foot_y[j] - phase.level) > tolerance:
        j += 1
    while j - 1 > limit and abs(foot_y[j - 1] - phase.level) <= tolerance:
        j -= 1
    return j


def count_repetitions(
    signal: np.ndarray, times_s: np.ndarray, min_amplitude: float, params: EventParams, period: float | None = None
) -> tuple[list[Repetition], int]:
    """Repetitions in ``signal`` (NaN = unseen; each valid run is searched on its own).
    ``period``: the sampling period in seconds (default: the median step of ``times_s``).

    Returns the repetitions and their direction (+1: peaks are maxima, -1: minima).
    """
    from scipy.signal import find_peaks  # imported when used: the driver never needs scipy

    valid = np.isfinite(signal)
    if valid.sum() < 5:
        return [], 0
    values = signal[valid]
    spread = float(np.percentile(values, 98) - np.percentile(values, 2))
    prominence = max(min_amplitude, params.rep_relative_prominence * spread)
    if period is None:
        period = float(np.median(np.diff(times_s))) if len(times_s) > 1 else 1.0
    distance = max(1, int(round(params.rep_min_period_s / period)))
    found: dict[int, list[Repetition]] = {1: [], -1: []}
    for start, stop in runs(valid):
        for direction in (1, -1):
            segment = direction * signal[start:stop]
            peaks, props = find_peaks(segment, prominence=prominence, distance=distance)
            for i, (peak, prom) in enumerate(zip(peaks, props["prominences"])):
                # A repetition runs from the valley before its peak to the valley after it,
                # never past the neighbouring peaks (find_peaks' bases may reach beyond them).
                lo = max(props["left_bases"][i], peaks[i - 1] if i else 0)
                hi = min(props["right_bases"][i], peaks[i + 1] if i + 1 < len(peaks) else len(segment) - 1)
                first = lo + int(np.argmin(segment[lo : peak + 1]))
                last = peak + int(np.argmin(segment[peak : hi + 1]))
                found[direction].append(Repetition(start + first, start + peak, start + last, float(prom)))
    direction = 1 if len(found[1]) >= len(found[-1]) else -1
    if len(found[1]) == len(found[-1]) and found[1]:
        # As many maxima as minima (a pure oscillation): count once, towards the larger swings.
        direction = (
            1 if np.median([r.amplitude for r in found[1]]) >= np.median([r.amplitude for r in found[-1]]) else -1
        )
    return found[direction], direction if found[direction] else 0

"""Analyzer: the assembled pose track of one video -> per-frame series, events
and a summary.

A stateful callable (settings in ``__init__``, one track per call) so the same
class runs in a plain loop, in a test, or as a Ray actor.

Per person: outliers are rejected (Hampel), short gaps filled, positions
smoothed (Savitzky-Golay); then joint angles and their velocities, the centre
of mass, segment velocities, flights, contacts and repetitions are computed on
the analysed frames (all frames, or those ``--sample_fps`` kept), and the
series are laid back onto every frame of the video (NaN where not analysed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from pipeline.analysis import filters
from pipeline.analysis.body import VELOCITY_POINTS, body_height, centre_of_mass, lowest_foot_y, segment_centres
from pipeline.analysis.events import count_repetitions, detect_flights, ground_contacts
from pipeline.analysis.kinematics import joint_angles
from pipeline.analysis.sports import REPETITION_SIGNALS, SPORT_PROFILES
from pipeline.analysis.summary import PersonSeries, summarize
from pipeline.analysis.swaps import MAX_SWAP_S, find_leg_swaps, swap_legs
from pipeline.analysis.tracking import PERSON_ORDER, link_tracks, torso_centres
from pipeline.config import AnalysisParams
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.pose.types import PoseChunk

__all__ = ["Analysis", "AnalysisParams", "Analyzer", "TrackMeta"]

# A landmark must also move this far (fraction of the frame diagonal) off its
# window's median to be an outlier: MediaPipe's jitter below it is left to smoothing.
OUTLIER_FLOOR_OF_DIAGONAL = 0.01


@dataclass(frozen=True)
class TrackMeta:
    """What the analyzer needs to know about the video (plain values)."""

    width: int
    height: int
    fps: float


@dataclass(frozen=True)
class Analysis:
    """Result of analysing one track (F frames, P person slots).

    - ``track``: the landmarks as found, person slots linked (slot k = one person);
    - ``landmarks_px`` float32 [F, P, L, 2]: cleaned, smoothed image landmarks
      in pixels (frames skipped by ``sample_fps`` interpolated, for drawing);
    - ``angles`` / ``angular_velocity`` float32 [F, P, A]: degrees and deg/s
      from the world landmarks (3D, independent of the view), NaN where a
      landmark is not visible enough;
    - ``com_px`` float32 [F, P, 2]; ``com_height_bh`` float32 [F, P]: centre of
      mass height above the person's lowest foot level, in body heights;
    - ``velocity_px_s`` float32 [F, P, V, 2]: velocity of the centre of mass and
      of every segment's centre (``VELOCITY_POINTS``), pixels/s;
    - ``body_height_px`` float64 [P]; divide a pixel speed by it for body heights/s;
    - ``contact`` int8 [F, P]: 1 foot on the ground, 0 airborne, -1 unknown;
    - ``events``: plain dicts (jumps, drops, contacts, repetitions);
    - ``summary``: plain dict, JSON-ready.
    """

    track: PoseChunk
    landmarks_px: np.ndarray
    angles: np.ndarray
    angular_velocity: np.ndarray
    com_px: np.ndarray
    com_height_bh: np.ndarray
    velocity_px_s: np.ndarray
    body_height_px: np.ndarray
    contact: np.ndarray
    events: tuple = ()
    summary: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        f, p = self.track.num_frames, self.track.num_slots
        expected = {
            "landmarks_px": (f, p, self.track.num_landmarks, 2),
            "angles": (f, p, len(ANGLE_NAMES)),
            "angular_velocity": (f, p, len(ANGLE_NAMES)),
            "com_px": (f, p, 2),
            "com_height_bh": (f, p),
            "velocity_px_s": (f, p, len(VELOCITY_POINTS), 2),
            "body_height_px": (p,),
            "contact": (f, p),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {getattr(self, name).shape}")

    @property
    def speed_bh_s(self) -> np.ndarray:
        """float32 [F, P, V]: speeds of ``VELOCITY_POINTS`` in body heights per second."""
        speed = np.linalg.norm(self.velocity_px_s, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (speed / self.body_height_px[None, :, None]).astype(np.float32)

    def frames(self, start: int, stop: int) -> Analysis:
        """The rows of frames ``[start, stop)`` (frame numbers); events and summary stay whole."""
        first = int(self.track.frame_index[0]) if self.track.num_frames else 0
        rows = slice(max(0, start - first), max(0, stop - first))
        return Analysis(
            track=self.track.slice(rows.start, rows.stop),
            landmarks_px=self.landmarks_px[rows],
            angles=self.angles[rows],
            angular_velocity=self.angular_velocity[rows],
            com_px=self.com_px[rows],
            com_height_bh=self.com_height_bh[rows],
            velocity_px_s=self.velocity_px_s[rows],
            body_height_px=self.body_height_px,
            contact=self.contact[rows],
            events=self.events,
            summary=self.summary,
        )


class Analyzer:
    """Per person, in order: left/right leg swaps corrected (in the linked track),
    outliers, gaps, smoothing, kinematics, events; then the summary."""

    def __init__(self, params: AnalysisParams | None = None) -> None:
        self.params = params or AnalysisParams()

    def __call__(self, track: PoseChunk, meta: TrackMeta) -> Analysis:
        linked, tracking = self.link_counted(track, meta)
        return self.analyze_linked(linked, meta, tracking)

    def link(self, track: PoseChunk, meta: TrackMeta) -> PoseChunk:
        """The track with its person slots following people, ordered (``link_tracks``): a copy."""
        return self.link_counted(track, meta)[0]

    def link_counted(self, track: PoseChunk, meta: TrackMeta) -> tuple[PoseChunk, dict]:
        """``link``, and what linking dropped and joined (the summary's ``tracking`` block).
        A caller that owns ``track`` can drop it before ``analyze_linked``: one copy less at the peak."""
        p = self.params
        linking = link_tracks(
            track.image_xyzv, meta.width, meta.height, p.max_track_gap_frames, meta.fps, p.min_track_frames
        )
        return track.reorder(linking.order), linking.counts()

    def analyze_linked(self, linked: PoseChunk, meta: TrackMeta, tracking: dict | None = None) -> Analysis:
        """Analyse a track whose slots ``link_counted`` has already linked (``tracking``: its counts)."""
        p = self.params
        tracking = tracking if tracking is not None else {"person_order": PERSON_ORDER}
        frames, slots = linked.num_frames, linked.num_slots
        out = {
            "landmarks_px": np.full((frames, slots, linked.num_landmarks, 2), np.nan, np.float32),
            "angles": np.full((frames, slots, len(ANGLE_NAMES)), np.nan, np.float32),
            "angular_velocity": np.full((frames, slots, len(ANGLE_NAMES)), np.nan, np.float32),
            "com_px": np.full((frames, slots, 2), np.nan, np.float32),
            "com_height_bh": np.full((frames, slots), np.nan, np.float32),
            "velocity_px_s": np.full((frames, slots, len(VELOCITY_POINTS), 2), np.nan, np.float32),
            "body_height_px": np.full(slots, np.nan),
            "contact": np.full((frames, slots), -1, np.int8),
        }
        rows = np.flatnonzero(linked.sampled)
        times = linked.timestamp_ms[rows] / 1000.0
        rate = (len(rows) - 1) / (times[-1] - times[0]) if len(rows) > 1 and times[-1] > times[0] else meta.fps
        persons, events = [], []
        detected = linked.detected[rows]  # once: the leg swaps below do not change it
        for slot in range(slots):
            seen = detected[:, slot]
            if seen.sum() < p.min_track_frames:
                persons.append(PersonSeries.unanalysed(slot, linked, rows))
                continue
            span = _seen_span(linked, rows, slot, p.outlier_window)
            swaps = self._correct_leg_swaps(linked, meta, rows[span], rate, slot)
            series = self._person(linked, meta, rows, times, rate, slot, span)
            series.swaps_corrected = swaps
            persons.append(series)
            out["body_height_px"][slot] = series.body_px
            for name, values in series.arrays.items():
                out[name][rows, slot] = values
            del series.arrays["landmarks_px"]  # the largest series; the summary does not read it
            events.extend(series.events(linked.frame_index[rows], times))
        # Frames skipped by --sample_fps: interpolate the drawing landmarks between analysed neighbours,
        # person by person over the frames from their first to their last (where every interior gap
        # is): the same values as over the whole video, without a float64 copy of every slot.
        if len(rows) < frames and len(rows) > 1:
            step = int(np.max(np.diff(rows)))
            landmarks = out["landmarks_px"]
            for slot in range(slots):
                held = np.flatnonzero(~np.isnan(landmarks[:, slot]).all(axis=(1, 2)))
                if len(held) > 1:
                    part = slice(held[0], held[-1] + 1)
                    landmarks[part, slot] = filters.fill_gaps(landmarks[part, slot], step)[0]
        events.sort(key=lambda e: (e["start_frame"], e["person"]))
        summary = summarize(linked, persons, events, p, tracking)
        return Analysis(track=linked, events=tuple(events), summary=summary, **out)

    @staticmethod
    def _correct_leg_swaps(linked: PoseChunk, meta: TrackMeta, rows: np.ndarray, rate: float, slot: int) -> int:
        """Swap back the leg labels of ``slot``'s short swapped runs (``swaps``), in place in
        ``linked`` (the copy ``link`` made), so the outputs show them corrected too. Returns the count."""
        xy = linked.image_xyzv[rows, slot, :, :2] * np.array([meta.width, meta.height], dtype=np.float32)
        mask = find_leg_swaps(xy, linked.frame_index[rows], max(1, int(round(MAX_SWAP_S * rate))))
        picked = rows[mask]
        for values in (linked.image_xyzv, linked.world_xyz, linked.presence):
            part = values[picked, slot]
            swap_legs(np.ones(len(picked), dtype=bool), part)
            values[picked, slot] = part
        return int(mask.sum())

    def _person(self, track, meta, rows, times, rate, slot, span: slice) -> PersonSeries:
        """``span``: the positions of ``rows`` that hold the person (``_seen_span``). The per-landmark
        series are cleaned and derived there only, then laid onto all of ``rows`` (NaN outside), so
        a person seen in a few seconds of a long video costs those seconds, with the same values."""
        p = self.params
        scale = np.array([meta.width, meta.height])
        n = len(rows)
        visibility = track.image_xyzv[rows, slot, :, 3]
        present = ~np.isnan(track.image_xyzv[rows, slot, 0, 0])
        seen_rows, seen_times = rows[span], times[span]
        # Each intermediate [N, L, D] series is dropped as soon as the next one exists:
        # on a long video they are the analysis' peak memory.
        raw_px = track.image_xyzv[seen_rows, slot, :, :2].astype(np.float64) * scale

        # Outliers: judged on the image positions (where the model's errors show), per landmark.
        floor = OUTLIER_FLOOR_OF_DIAGONAL * float(np.hypot(meta.width, meta.height))
        outlier = filters.hampel_mask(raw_px, p.outlier_window, p.outlier_threshold, floor).any(axis=-1)
        max_gap = max(1, int(round(p.max_fill_gap_s * rate)))
        window = filters.odd_window(p.smoothing_window_s, rate, p.smoothing_order + 3)
        raw_px[outlier] = np.nan
        clean_px, filled = filters.fill_gaps(raw_px, max_gap)
        del raw_px
        filled = _spread(filled[:, 0, 0], span, n, False)
        px = filters.savgol(clean_px, window, p.smoothing_order)
        foot = _spread(lowest_foot_y(clean_px), span, n, np.nan)
        del clean_px
        world = track.world_xyz[seen_rows, slot].astype(np.float64)
        world[outlier] = np.nan
        world = filters.fill_gaps(world, max_gap)[0]
        world = filters.savgol(world, window, p.smoothing_order)

        seen_visibility = visibility[span]
        filled_visibility = np.where(np.isnan(seen_visibility) & ~np.isnan(px[..., 0]), 1.0, seen_visibility)
        angles = joint_angles(world, visibility=filled_visibility, min_visibility=p.min_visibility)
        del world, filled_visibility
        angular_velocity = _spread(filters.time_derivative(angles, seen_times), span, n, np.nan)
        angles = _spread(angles, span, n, np.nan)
        com = centre_of_mass(px)
        velocity = filters.time_derivative(np.concatenate([com[:, None, :], segment_centres(px)], axis=1), seen_times)
        velocity = _spread(velocity, span, n, np.nan)
        com = _spread(com, span, n, np.nan)
        outlier = _spread(outlier, span, n, False)
        px = _spread(px, span, n, np.nan)
        body_px = body_height(px)

        foot_smooth = lowest_foot_y(px)
        ground = np.nanpercentile(foot_smooth, 95) if np.isfinite(foot_smooth).any() else np.nan
        com_height = (ground - com[:, 1]) / body_px
        flights = detect_flights(foot, foot_smooth, times, body_px, p.events)
        contact = np.where(np.isnan(foot_smooth), -1, 1).astype(np.int8)
        for flight in flights:
            contact[flight.takeoff + 1 : flight.landing] = 0

        signals = self._repetition_signals(angles, com, body_px)
        repetitions, rep_signal, rep_direction = [], None, 0
        best = 0.0
        candidates = SPORT_PROFILES[p.sport_type].repetition_signals
        if any(f.kind == "jump" for f in flights):
            # The centre of mass rising and falling is what the jumps already describe.
            candidates = tuple(name for name in candidates if name != "com_height")
        for name in candidates:
            reps, direction = count_repetitions(signals[name], times, REPETITION_SIGNALS[name], p.events)
            if len(reps) < 2:
                continue
            score = float(np.median([r.amplitude for r in reps])) / REPETITION_SIGNALS[name]
            if score > best:
                best, repetitions, rep_signal, rep_direction = score, reps, name, direction

        centres = torso_centres(track.image_xyzv[rows, slot][None], meta.width, meta.height)[0]
        return PersonSeries(
            slot=slot,
            rows=rows,
            present=present,
            visibility=visibility,
            outlier=outlier,
            filled=filled & ~present,
            torso_px=centres,
            body_px=body_px,
            flights=flights,
            contacts=ground_contacts(flights, times, p.events),
            repetitions=repetitions,
            rep_signal=rep_signal,
            rep_direction=rep_direction,
            arrays={
                "landmarks_px": px,
                "angles": angles,
                "angular_velocity": angular_velocity,
                "com_px": com,
                "com_height_bh": com_height,
                "velocity_px_s": velocity,
                "contact": contact,
            },
        )

    @staticmethod
    def _repetition_signals(angles: np.ndarray, com: np.ndarray, body_px: float) -> dict[str, np.ndarray]:
        def mean_of(joint: str) -> np.ndarray:
            pair = angles[:, [ANGLE_NAMES.index(f"left_{joint}"), ANGLE_NAMES.index(f"right_{joint}")]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(pair, axis=1)

        return {
            "knee_angle": mean_of("knee"),
            "hip_angle": mean_of("hip"),
            "shoulder_angle": mean_of("shoulder"),
            "elbow_angle": mean_of("elbow"),
            "com_height": -com[:, 1] / body_px,
            "com_lateral": com[:, 0] / body_px,
        }


def _seen_span(track: PoseChunk, rows: np.ndarray, slot: int, min_length: int) -> slice:
    """The positions of ``rows`` from the first to the last where ``slot`` holds any landmark
    (at least ``min_length`` long, the outlier filter's window, where ``rows`` allow).

    Outside the span every landmark is NaN: the filters give the same values on the span
    as on all of ``rows`` (gaps at either end stay unfilled, the outlier windows see the
    same edge values), and NaN outside it.
    """
    held = ~(
        np.isnan(track.image_xyzv[rows, slot]).all(axis=(1, 2)) & np.isnan(track.world_xyz[rows, slot]).all(axis=(1, 2))
    )
    found = np.flatnonzero(held)
    if not found.size:
        return slice(0, 0)
    start, stop = int(found[0]), int(found[-1]) + 1
    if stop - start < min_length:
        start, stop = 0, len(rows)  # too short for the outlier window: as on the whole track
    return slice(start, stop)


def _spread(values: np.ndarray, span: slice, n: int, fill) -> np.ndarray:
    """``values`` computed on the positions ``span`` laid onto ``n`` positions, ``fill`` elsewhere."""
    if span.start == 0 and span.stop == n:
        return values
    out = np.full((n, *values.shape[1:]), fill, dtype=values.dtype)
    out[span] = values
    return out

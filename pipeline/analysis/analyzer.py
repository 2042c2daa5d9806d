"""Analyzer: the assembled pose track of one video -> per-frame series, events
and a summary.

A stateful callable (settings in ``__init__``, one track per call) so the same
class runs in a plain loop, in a test, or as a Ray actor.

Per person: outliers are rejected (Hampel), short gaps filled, positions
smoothed (``--filter``: Savitzky-Golay, a zero-phase Butterworth low-pass, or
none); then joint angles and their velocities, the centre of mass, segment
velocities, flights, contacts and repetitions are computed on the analysed
frames (all frames, or those ``--sample_fps`` kept), and the series are laid
back onto every frame of the video (NaN where not analysed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.analysis import filters
from pipeline.analysis.body import VELOCITY_POINTS, body_height, centre_of_mass, lowest_foot_y, segment_centres
from pipeline.analysis.events import Flight, count_repetitions, detect_flights, ground_contacts, support_level
from pipeline.analysis.kinematics import joint_angles
from pipeline.analysis.sports import REPETITION_SIGNALS, SPORT_PROFILES
from pipeline.analysis.summary import PersonSeries, summarize
from pipeline.analysis.swaps import MAX_SWAP_S, find_leg_swaps, swap_legs
from pipeline.analysis.tracking import PERSON_ORDER, by_person, link_tracks, torso_centres
from pipeline.config import AnalysisParams
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.pose.types import PERSON_ARRAYS, PoseChunk

__all__ = ["Analysis", "AnalysisParams", "Analyzer", "TrackMeta", "person_spans", "person_values"]

# A landmark must also move this far (fraction of the frame diagonal) off its
# window's median to be an outlier: MediaPipe's jitter below it is left to smoothing.
OUTLIER_FLOOR_OF_DIAGONAL = 0.01


@dataclass(frozen=True)
class TrackMeta:
    """What the analyzer needs to know about the video (plain values)."""

    width: int
    height: int
    fps: float
    # Heights given for the video's persons (``--person_height``), metres: (person id, height)
    # pairs, person -1 for every person without a pair of their own.
    heights_m: tuple[tuple[int, float], ...] = ()

    def height_of(self, person: int) -> float | None:
        given = dict(self.heights_m)
        return given.get(person, given.get(-1))


@dataclass(frozen=True)
class Analysis:
    """Result of analysing one track (F frames, N lanes, P persons).

    The per-frame arrays are laid out in lanes (``tracking.Linking``): a lane holds
    one person at a time, and ``person`` says whose it is in each frame, so their
    size follows how many persons are around at once, not how many the video has.

    - ``track``: the landmarks as found, linked into lanes;
    - ``person`` int32 [F, N]: the person id of each lane and frame, -1 where none;
    - ``landmarks_px`` float32 [F, N, L, 2]: cleaned, smoothed image landmarks
      in pixels (frames skipped by ``sample_fps`` interpolated, for drawing);
    - ``angles`` / ``angular_velocity`` float32 [F, N, A]: degrees and deg/s
      from the world landmarks (3D, independent of the view), NaN where a
      landmark is not visible enough;
    - ``com_px`` float32 [F, N, 2]; ``com_height_bh`` float32 [F, N]: centre of
      mass height above the ground the person stands on at the time
      (``events.support_level``), in body heights;
    - ``velocity_px_s`` float32 [F, N, V, 2]: velocity of the centre of mass and
      of every segment's centre (``VELOCITY_POINTS``), pixels/s;
    - ``body_height_px`` float64 [P], by person id; divide a pixel speed by it for body heights/s;
    - ``contact`` int8 [F, N]: 1 foot on the ground, 0 airborne, -1 unknown;
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
    person: np.ndarray
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
            "body_height_px": (len(self.body_height_px),),
            "contact": (f, p),
            "person": (f, p),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {getattr(self, name).shape}")

    @property
    def speed_bh_s(self) -> np.ndarray:
        """float32 [F, N, V]: speeds of ``VELOCITY_POINTS`` in body heights per second."""
        speed = np.linalg.norm(self.velocity_px_s, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (speed / lane_values(self.body_height_px, self.person)[..., None]).astype(np.float32)

    def persons_shown(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The persons detected on the analysed frames, by frame then person id: their rows,
        lanes and ids (what the pose JSON and the angles CSV list)."""
        rows, lanes = np.nonzero(self.track.detected & self.track.sampled[:, None])
        ids = self.person[rows, lanes]
        order = np.lexsort((ids, rows))
        return rows[order], lanes[order], ids[order]

    def track_by_person(self) -> PoseChunk:
        """The linked track with one slot per person id (slot k = person k, empty where the
        person is not around): the dense layout, for a short track or a comparison."""
        persons = len(self.body_height_px)
        return replace(
            self.track,
            **{name: by_person(getattr(self.track, name), self.person, persons, np.nan) for name in PERSON_ARRAYS},
        )

    def of_person(self, name: str, person: int) -> np.ndarray:
        """The series ``name`` (one of the per-frame arrays) of one person: ``[F, ...]``,
        NaN (-1 for ``contact``) where the person is not around."""
        fill = -1 if name == "contact" else np.nan
        return person_values(getattr(self, name), self.person, person, fill)

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
            person=self.person[rows],
            events=self.events,
            summary=self.summary,
        )


class Analyzer:
    """Per person, in order: left/right leg swaps corrected (in the linked track),
    outliers, gaps, smoothing, kinematics, events; then the summary."""

    def __init__(self, params: AnalysisParams | None = None) -> None:
        self.params = params or AnalysisParams()

    def __call__(self, track: PoseChunk, meta: TrackMeta) -> Analysis:
        linked, person, tracking = self.link_counted(track, meta)
        return self.analyze_linked(linked, meta, tracking, person)

    def link(self, track: PoseChunk, meta: TrackMeta) -> tuple[PoseChunk, np.ndarray]:
        """The track linked into lanes (``link_tracks``; a copy), and whose each lane is per frame."""
        return self.link_counted(track, meta)[:2]

    def link_counted(self, track: PoseChunk, meta: TrackMeta) -> tuple[PoseChunk, np.ndarray, dict]:
        """``link``, and what linking dropped and joined (the summary's ``tracking`` block).
        A caller that owns ``track`` can drop it before ``analyze_linked``: one copy less at the peak."""
        p = self.params
        linking = link_tracks(
            track.image_xyzv, meta.width, meta.height, p.max_track_gap_frames, meta.fps, p.min_track_frames
        )
        return track.reorder(linking.order), linking.person, linking.counts()

    def analyze_linked(
        self, linked: PoseChunk, meta: TrackMeta, tracking: dict | None = None, person: np.ndarray | None = None
    ) -> Analysis:
        """Analyse a track that ``link_counted`` has already linked into lanes (``person``:
        whose each lane is per frame; ``tracking``: the counts). Without ``person``, slot k
        is person k over the whole track."""
        p = self.params
        tracking = tracking if tracking is not None else {"person_order": PERSON_ORDER}
        frames, lanes = linked.num_frames, linked.num_slots
        if person is None:
            person = np.tile(np.arange(lanes, dtype=np.int32), (frames, 1))
        spans = person_spans(person)
        out = {
            "landmarks_px": np.full((frames, lanes, linked.num_landmarks, 2), np.nan, np.float32),
            "angles": np.full((frames, lanes, len(ANGLE_NAMES)), np.nan, np.float32),
            "angular_velocity": np.full((frames, lanes, len(ANGLE_NAMES)), np.nan, np.float32),
            "com_px": np.full((frames, lanes, 2), np.nan, np.float32),
            "com_height_bh": np.full((frames, lanes), np.nan, np.float32),
            "velocity_px_s": np.full((frames, lanes, len(VELOCITY_POINTS), 2), np.nan, np.float32),
            "body_height_px": np.full(len(spans), np.nan),
            "contact": np.full((frames, lanes), -1, np.int8),
        }
        rows = np.flatnonzero(linked.sampled)
        times = linked.timestamp_ms[rows] / 1000.0
        rate = (len(rows) - 1) / (times[-1] - times[0]) if len(rows) > 1 and times[-1] > times[0] else meta.fps
        # The sampling period of the whole video, so that a person's events do not depend on
        # which of its frames the person is seen in (it matters at variable frame rates).
        period = float(np.median(np.diff(times))) if len(times) > 1 else None
        persons, events = [], []
        detected = linked.detected
        for ident, (lane, start, stop) in enumerate(spans):
            first, last = np.searchsorted(rows, [start, stop])  # the person's analysed rows: rows[first:last]
            seen = detected[rows[first:last], lane]
            if seen.sum() < max(1, p.min_track_frames):  # never seen here: nothing to analyse
                persons.append(PersonSeries.unanalysed(ident, rows[first:last], seen, times[first:last]))
                continue
            # The window: from the first to the last row holding the person (longer when that is
            # shorter than the outlier filter's window); rows of it outside [start, stop) belong to
            # no one or to another person of the lane, and are read as empty.
            window = _window(linked, rows, first, last, lane, p.outlier_window)
            own = rows[window]
            inside = (own >= start) & (own < stop)
            swaps = self._correct_leg_swaps(linked, meta, own[inside], rate, lane)
            xyzv = np.full((len(own), linked.num_landmarks, 4), np.nan, np.float32)
            world = np.full((len(own), linked.num_landmarks, 3), np.nan, np.float32)
            xyzv[inside], world[inside] = linked.image_xyzv[own[inside], lane], linked.world_xyz[own[inside], lane]
            series = self._person(xyzv, world, meta, own, times[window], rate, period, ident)
            del xyzv, world
            series.height_m = meta.height_of(ident)
            series.swaps_corrected = swaps
            persons.append(series)
            out["body_height_px"][ident] = series.body_px
            for name, values in series.arrays.items():
                out[name][own[inside], lane] = values[inside]
            del series.arrays["landmarks_px"]  # the largest series; the summary does not read it
            events.extend(series.events(linked.frame_index[own], series.times))
        # Frames skipped by --sample_fps: interpolate the drawing landmarks between analysed
        # neighbours, person by person over the frames from their first to their last.
        if len(rows) < frames and len(rows) > 1:
            step = int(np.max(np.diff(rows)))
            landmarks = out["landmarks_px"]
            for lane, start, stop in spans:
                held = start + np.flatnonzero(~np.isnan(landmarks[start:stop, lane]).all(axis=(1, 2)))
                if len(held) > 1:
                    part = slice(held[0], held[-1] + 1)
                    landmarks[part, lane] = filters.fill_gaps(landmarks[part, lane], step)[0]
        events.sort(key=lambda e: (e["start_frame"], e["person"]))
        summary = summarize(linked, persons, events, p, tracking)
        return Analysis(track=linked, person=person, events=tuple(events), summary=summary, **out)

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

    def _person(self, xyzv, world_xyz, meta, rows, times, rate, period, ident: int) -> PersonSeries:
        """One person's series on ``rows`` (a window of the analysed rows, ``_window``), from its
        landmarks there (``xyzv [W, L, 4]``, ``world_xyz [W, L, 3]``, NaN where absent). A person
        seen in a few seconds of a long video costs those seconds: the filters, kinematics and
        events give the same values on the window as on every analysed row with NaN around it."""
        p = self.params
        scale = np.array([meta.width, meta.height])
        visibility = xyzv[:, :, 3]
        present = ~np.isnan(xyzv[:, 0, 0])
        # Each intermediate [N, L, D] series is dropped as soon as the next one exists:
        # on a long video they are the analysis' peak memory.
        raw_px = xyzv[:, :, :2].astype(np.float64) * scale

        # Outliers: judged on the image positions (where the model's errors show), per landmark.
        floor = OUTLIER_FLOOR_OF_DIAGONAL * float(np.hypot(meta.width, meta.height))
        outlier = filters.hampel_mask(raw_px, p.outlier_window, p.outlier_threshold, floor).any(axis=-1)
        max_gap = max(1, int(round(p.max_fill_gap_s * rate)))
        raw_px[outlier] = np.nan
        clean_px, filled = filters.fill_gaps(raw_px, max_gap)
        del raw_px
        filled = filled[:, 0, 0]
        px = filters.smooth(clean_px, p, rate)
        foot = lowest_foot_y(clean_px)
        del clean_px
        world = world_xyz.astype(np.float64)
        world[outlier] = np.nan
        world = filters.fill_gaps(world, max_gap)[0]
        world = filters.smooth(world, p, rate)

        filled_visibility = np.where(np.isnan(visibility) & ~np.isnan(px[..., 0]), 1.0, visibility)
        angles = joint_angles(world, visibility=filled_visibility, min_visibility=p.min_visibility)
        del world, filled_visibility
        angular_velocity = filters.time_derivative(angles, times)
        com = centre_of_mass(px)
        velocity = filters.time_derivative(np.concatenate([com[:, None, :], segment_centres(px)], axis=1), times)
        body_px = body_height(px)

        foot_smooth = lowest_foot_y(px)
        flights = detect_flights(foot, foot_smooth, times, body_px, p.events, period)
        # Above the ground the person stands on at the time (a box's top, then the floor).
        com_height = (support_level(foot_smooth, times, body_px, p.events, flights, period) - com[:, 1]) / body_px
        flights = [_with_com_rise(flight, com, body_px) for flight in flights]
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
            reps, direction = count_repetitions(signals[name], times, REPETITION_SIGNALS[name], p.events, period)
            if len(reps) < 2:
                continue
            score = float(np.median([r.amplitude for r in reps])) / REPETITION_SIGNALS[name]
            if score > best:
                best, repetitions, rep_signal, rep_direction = score, reps, name, direction

        centres = torso_centres(xyzv[None], meta.width, meta.height)[0]
        return PersonSeries(
            slot=ident,
            rows=rows,
            present=present,
            times=times,
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


def _with_com_rise(flight: Flight, com_px: np.ndarray, body_px: float) -> Flight:
    """A jump with its centre of mass' rise from takeoff to the top of the flight (body heights):
    the cross-check of the height from the flight time."""
    if flight.kind != "jump":
        return flight
    rows = com_px[flight.takeoff : flight.landing + 1, 1]
    if np.isnan(rows).all() or np.isnan(rows[0]):
        return flight
    return replace(flight, com_rise_bh=float((rows[0] - np.nanmin(rows)) / body_px))


def person_spans(person: np.ndarray) -> list[tuple[int, int, int]]:
    """Per person id (``0 .. max``): its lane and the rows ``[start, stop)`` it holds there,
    from a lane map ``person [F, N]`` (each person in one lane, over one run of rows)."""
    spans: dict[int, tuple[int, int, int]] = {}
    for lane in range(person.shape[1]):
        column = person[:, lane]
        edges = np.flatnonzero(np.diff(column)) + 1
        for start, stop in zip([0, *edges.tolist()], [*edges.tolist(), len(column)]):
            ident = int(column[start])
            if ident >= 0:
                if ident in spans:
                    raise ValueError(f"person {ident} is in more than one run of lanes")
                spans[ident] = (lane, start, stop)
    if sorted(spans) != list(range(len(spans))):
        raise ValueError("person ids must run from 0 without gaps")
    return [spans[k] for k in range(len(spans))]


def person_values(values: np.ndarray, person: np.ndarray, ident: int, fill=np.nan) -> np.ndarray:
    """One person's series ``[F, ...]`` from lane-laid ``values [F, N, ...]`` (``person [F, N]``),
    ``fill`` where the person is not around."""
    out = np.full((values.shape[0], *values.shape[2:]), fill, dtype=values.dtype)
    rows, lanes = np.nonzero(person == ident)
    out[rows] = values[rows, lanes]
    return out


def lane_values(by_person: np.ndarray, person: np.ndarray) -> np.ndarray:
    """``by_person [P]`` (a value per person id) per lane and frame: ``[F, N]``, NaN where no one."""
    out = np.full(person.shape, np.nan)
    held = person >= 0
    out[held] = by_person[person[held]]
    return out


def _window(track: PoseChunk, rows: np.ndarray, first: int, last: int, lane: int, min_length: int) -> slice:
    """The positions of ``rows`` from the first to the last of ``rows[first:last]`` where
    ``lane`` holds any landmark; at least ``min_length`` long (the outlier filter's window)
    where ``rows`` allow.

    Around it the person's landmarks are NaN: the filters give the same values on the
    window as on all of ``rows`` (gaps at either end stay unfilled, the outlier windows
    see the same edge values), and the events the same on a window as on every row.
    """
    own = rows[first:last]
    held = ~(
        np.isnan(track.image_xyzv[own, lane]).all(axis=(1, 2)) & np.isnan(track.world_xyz[own, lane]).all(axis=(1, 2))
    )
    found = np.flatnonzero(held)
    start, stop = first + int(found[0]), first + int(found[-1]) + 1
    if stop - start < min_length:  # too short for the outlier filter: widened, NaN around the person
        stop = min(len(rows), start + min_length)
        start = max(0, stop - min_length)
    return slice(start, stop)

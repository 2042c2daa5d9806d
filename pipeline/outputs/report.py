"""``output/<name>_report.html``: one self-contained page per video (plots and
key frames embedded as data URIs): summary table, events, angle and
centre-of-mass plots with the events marked, and a few annotated key frames.

Drawing the plots is most of the work (a figure per analysed person): the
writer's tasks draw them a few persons each, next to a task for the key
frames, and the last task puts the page together from their images."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict

import cv2
import numpy as np

from pipeline import storage
from pipeline.analysis.analyzer import Analysis, person_values
from pipeline.analysis.kinematics import joint_angles
from pipeline.analysis.sports import SPORT_PROFILES
from pipeline.analysis.store import AnalysisStore
from pipeline.config import AnalysisParams, PipelineConfig
from pipeline.errors import OutputError, redact
from pipeline.outputs.annotate import PALETTE, Annotator
from pipeline.outputs.registry import OutputPlan, OutputTask, OutputWriter, VideoOutputs
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.storage import write_text
from pipeline.video.probe import VideoInfo
from pipeline.video.reader import iter_frames

MAX_KEY_FRAMES = 4

# The outputs and what each is for, with its size per analysed frame and person measured on the
# sample clip (bench/formats.py; docs/benchmarks.md, "Output sizes").
OUTPUT_GUIDE = (
    '<table><tr><th class="text">output</th><th class="text">use it for</th><th>bytes per frame and person</th></tr>'
    + "".join(
        f'<tr><td class="text">{html.escape(name)}</td><td class="text">{html.escape(use)}</td><td>{size}</td></tr>'
        for name, use, size in (
            ("models/<video>_pose.json", "the complete record: every value of every frame, with the settings", "3,661"),
            (
                "output/tables/frames (Parquet)",
                "analysis in pandas, Polars, DuckDB: one table for a whole batch",
                "1,791",
            ),
            ("output/tables/frames (CSV, --tables csv)", "spreadsheets", "3,511"),
            ("output/tables/events", "jumps, contacts, repetitions: one row per event", "-"),
            (
                "output/opensim/<video>/*.trc",
                "OpenSim, Pose2Sim, Sports2D: marker trajectories in metres (needs --person_height)",
                "603",
            ),
            ("output/opensim/<video>/*.mot", "OpenSim: joint angles in degrees", "71"),
            ("output/<video>_angles.csv", "the joint angles alone, for a quick look", "71"),
        )
    )
    + "</table>"
)
KEY_FRAME_WIDTH = 640

# Marks the page's state for whoever opens it: data-errors counts script
# errors, data-images-loaded the embedded images that decoded.
_PAGE_SCRIPT = """
window.__errors = 0;
window.addEventListener('error', function () { window.__errors += 1; document.body.dataset.errors = window.__errors; });
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesLoaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.errors = window.__errors;
  document.body.dataset.ready = '1';
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
figure { margin: 0 0 1.5em; } img { max-width: 100%; }
.flags { color: #a40000; } .keyframes { display: flex; flex-wrap: wrap; gap: 8px; }
.keyframes figure { width: 48%; margin: 0; } figcaption { font-size: 0.85em; color: #555; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _mark_events(ax, events: list[dict], person: int) -> None:
    for e in events:
        if e["person"] != person:
            continue
        if e["type"] in ("jump", "drop", "step_up"):
            ax.axvspan(e["takeoff_s"], e["landing_s"], color="tab:orange", alpha=0.25, lw=0)
        elif e["type"] == "repetition":
            ax.axvline(e["peak_s"], color="tab:purple", lw=1, ls="--")


class _Series:
    """What the report reads: a few whole series, and single frames for the key
    frames. From a stored analysis only those arrays are loaded, so the report's
    memory stays small for a long video."""

    def __init__(self, analysis: Analysis | AnalysisStore) -> None:
        self.summary, self.events = analysis.summary, list(analysis.events)
        if isinstance(analysis, AnalysisStore):
            self.times = analysis.array("track.timestamp_ms") / 1000.0
            self.frame_index = analysis.array("track.frame_index")
            self.angles = analysis.array("angles")
            self.com_height_bh = analysis.array("com_height_bh")
            self.person = analysis.array("person")
            self._detected = lambda: ~np.isnan(analysis.array("track.image_xyzv", lambda a: a[..., 0, 0]))
            self.frame = lambda number: analysis.read(number, number + 1)
            self._landmarks = lambda name, rows, lanes: analysis.array(name, lambda a: a[rows, lanes])
        else:
            self.times = analysis.track.timestamp_ms / 1000.0
            self.frame_index = analysis.track.frame_index
            self.angles, self.com_height_bh = analysis.angles, analysis.com_height_bh
            self.person = analysis.person
            self._detected = lambda: analysis.track.detected
            self.frame = lambda number: analysis.frames(number, number + 1)
            self._landmarks = lambda name, rows, lanes: getattr(analysis.track, name.split(".")[1])[rows, lanes]

    def people_per_frame(self) -> np.ndarray:
        return self._detected().sum(axis=1)

    def raw_angles(self, person: int, min_visibility: float) -> np.ndarray:
        """``[F, A]``: the person's joint angles from the world landmarks as the model found them
        (before outlier rejection, gap filling and the filter), NaN where not shown."""
        rows, lanes = np.nonzero(self.person == person)
        world = self._landmarks("track.world_xyz", rows, lanes).astype(np.float64)
        visibility = self._landmarks("track.image_xyzv", rows, lanes)[..., 3]
        out = np.full(self.angles.shape[::2], np.nan, np.float32)
        out[rows] = joint_angles(world, visibility=visibility, min_visibility=min_visibility)
        return out


def _filter_name(analysis_settings: dict) -> str:
    analysis_settings = asdict(AnalysisParams()) | analysis_settings  # settings of an older run lack the filter
    kind = analysis_settings["smoothing_filter"]
    if kind == "butterworth":
        return f"Butterworth low-pass, {analysis_settings['cutoff_hz']:g} Hz, zero-phase"
    if kind == "savgol":
        return f"Savitzky-Golay, {analysis_settings['smoothing_window_s']:g} s window"
    return "no filter"


def _compared_angle(analysis: _Series, person: int, highlighted: tuple[str, ...]) -> str:
    """The highlighted angle with the most frames for ``person``."""
    angles = person_values(analysis.angles, analysis.person, person)
    counts = [int(np.isfinite(angles[:, ANGLE_NAMES.index(name)]).sum()) for name in highlighted]
    return highlighted[int(np.argmax(counts))]


def _raw_against_filtered(analysis: _Series, person: int, highlighted: tuple[str, ...], settings: dict):
    """(caption, PNG data URI): one highlighted angle of ``person``, raw against filtered."""
    from matplotlib import pyplot as plt

    name = _compared_angle(analysis, person, highlighted)
    k = ANGLE_NAMES.index(name)
    raw = analysis.raw_angles(person, float(settings.get("min_visibility", 0.5)))[:, k]
    filtered = person_values(analysis.angles, analysis.person, person)[:, k]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    ax.plot(analysis.times, raw, lw=0.9, color="0.55", label="raw (as the model found it)")
    ax.plot(analysis.times, filtered, lw=1.6, color="tab:blue", label=f"filtered ({_filter_name(settings)})")
    ax.set_ylabel(f"{name.replace('_', ' ')} (deg)")
    ax.set_xlabel("time (s)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    caption = f"Person {person}: {name.replace('_', ' ')} angle, raw and filtered"
    figure = (caption, _png(fig))
    plt.close(fig)
    return figure


# Figures drawn at most: each costs about 0.2 s of a core, and a page of more is not read (the
# 15-minute looped clip has 157 analysed persons: 27 CPU-seconds, most of its outputs' time).
# The persons left out are in the table, the pose JSON and the angles CSV.
MAX_PLOTTED_PERSONS = 24


def analysed_persons(summary: dict) -> list[int]:
    """The analysed persons, in id order (the longest tracked first)."""
    return [p["id"] for p in summary["persons"] if p.get("analysed")]


def plotted_persons(summary: dict) -> list[int]:
    """The persons the report draws a figure for, in order: the first ``MAX_PLOTTED_PERSONS`` analysed."""
    return analysed_persons(summary)[:MAX_PLOTTED_PERSONS]


def _plots(
    analysis: _Series, highlighted: tuple[str, ...], persons: list[int] | None = None, settings: dict | None = None
) -> list[tuple[str, str]]:
    """(caption, PNG data URI) of each of ``persons`` (default: ``plotted_persons``); for the
    first plotted person, also one highlighted angle raw against filtered (``settings``: the
    analysis settings, which name the filter)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    times = analysis.times
    persons = plotted_persons(analysis.summary) if persons is None else persons
    events = analysis.events
    legend_marks = [
        Patch(color="tab:orange", alpha=0.4, label="flight"),
        Patch(color="tab:purple", label="repetition peak"),
    ]
    figures = []
    for person in persons:
        fig, (ax_angles, ax_com) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
        angles = person_values(analysis.angles, analysis.person, person)
        for name in highlighted:
            ax_angles.plot(times, angles[:, ANGLE_NAMES.index(name)], lw=1.4, label=name.replace("_", " "))
        ax_angles.set_ylabel("joint angle (deg)")
        ax_angles.legend(loc="upper right", ncol=3, fontsize=8)
        ax_angles.grid(alpha=0.3)
        ax_com.plot(
            times,
            person_values(analysis.com_height_bh, analysis.person, person),
            color=np.array(PALETTE[person % len(PALETTE)][::-1]) / 255,
            lw=1.6,
        )
        ax_com.set_ylabel("centre of mass height\n(body heights above the ground stood on)")
        ax_com.set_xlabel("time (s)")
        ax_com.grid(alpha=0.3)
        for ax in (ax_angles, ax_com):
            _mark_events(ax, events, person)
        ax_com.legend(handles=legend_marks, loc="upper right", fontsize=8)
        fig.suptitle(f"Person {person}")
        figures.append((f"Person {person}: joint angles and centre of mass height", _png(fig)))
        plt.close(fig)
        if person == plotted_persons(analysis.summary)[0]:
            figures.append(_raw_against_filtered(analysis, person, highlighted, settings or {}))
    return figures


def _key_frame_numbers(analysis: _Series) -> list[tuple[int, str]]:
    picks: list[tuple[int, str]] = []
    for e in analysis.events:
        if e["type"] in ("jump", "drop", "step_up"):
            picks += [
                (e["takeoff_frame"], "takeoff"),
                (e["apex_frame"], "highest point"),
                (e["landing_frame"], "landing"),
            ]
        elif e["type"] == "repetition":
            picks.append((e["peak_frame"], f"repetition {e['index']} (peak)"))
        if len(picks) >= MAX_KEY_FRAMES:
            break
    frames = len(analysis.frame_index)
    if not picks and frames:
        counts = analysis.people_per_frame()
        spread = np.linspace(0, frames - 1, MAX_KEY_FRAMES).astype(int)
        picks = [(int(analysis.frame_index[i]), f"{counts[i]} person(s)") for i in spread]
    return sorted(dict(picks[:MAX_KEY_FRAMES]).items())


def _key_frames(
    video: str, analysis: _Series, annotator: Annotator, table_at: str | None = None
) -> list[tuple[str, str]]:
    out = []
    for frame_number, caption in _key_frame_numbers(analysis):
        frames = iter_frames(video, frame_number, frame_number + 1, missing=[], table_at=table_at)
        decoded = [frame for _, frame in frames]
        if not decoded or decoded[0] is None:
            continue  # its data could not be decoded (the summary lists it)
        frame = decoded[0]
        drawn = annotator.annotate(frame, analysis.frame(frame_number), 0)
        scale = KEY_FRAME_WIDTH / drawn.shape[1]
        small = cv2.resize(drawn, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise OutputError(f"report: key frame {frame_number} could not be encoded as JPEG")
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")
        out.append((f"frame {frame_number}: {caption}", uri))
    return out


def _table(header: list[str], rows: list[list], text_columns: int = 1) -> str:
    def cell(tag: str, i: int, value) -> str:
        css = ' class="text"' if i < text_columns else ""
        return f"<{tag}{css}>{html.escape('' if value is None else str(value))}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _person_rows(summary: dict) -> list[list]:
    rows = []
    for p in summary["persons"]:
        if not p.get("analysed"):
            rows.append([f"person {p['id']}", p["frames_detected"], "too short to analyse"] + [None] * 10)
            continue
        speed = (p["speed_bh_s"].get("com") or {}).get("max")
        speed_m = ((p.get("speed_m_s") or {}).get("com") or {}).get("max")
        rows.append(
            [
                f"person {p['id']}",
                p["frames_detected"],
                p["quality"]["score"],
                p["mean_visibility"],
                p["jumps"]["count"],
                p["jumps"]["best_height_m"],
                p["jumps"]["mean_flight_time_s"],
                p["contacts"]["mean_s"],
                p["repetitions"]["count"],
                p["repetitions"]["signal"],
                speed,
                (p.get("scale") or {}).get("height_m"),
                speed_m,
            ]
        )
    return rows


def _annotator(info: VideoInfo, summary: dict) -> Annotator:
    profile = SPORT_PROFILES[summary["sport_type"]]
    return Annotator(fps=info.fps, frame_count=info.frame_count, angles=profile.angles[:4])


def _left_out_note(summary: dict) -> str:
    """A line saying whose figures are left out, when some are (``MAX_PLOTTED_PERSONS``)."""
    analysed = len(analysed_persons(summary))
    if analysed <= MAX_PLOTTED_PERSONS:
        return ""
    return (
        f"<p>Figures of the {MAX_PLOTTED_PERSONS} persons tracked longest, of {analysed} analysed; "
        "every person is in the summary table, the pose JSON and the angles CSV.</p>"
    )


def write_report(
    path: str,
    video: str,
    info: VideoInfo,
    analysis: Analysis | AnalysisStore,
    settings: dict,
    plots: list[tuple[str, str]] | None = None,
    frames: list[tuple[str, str]] | None = None,
) -> str:
    """Write the report for one video (from an Analysis or a stored one); returns its location.
    ``plots`` and ``frames``: the figures and key frames when drawn already (by the writer's tasks)."""
    analysis = _Series(analysis)
    summary = analysis.summary
    profile = SPORT_PROFILES[summary["sport_type"]]
    plots = _plots(analysis, profile.angles, settings=settings.get("analysis")) if plots is None else plots
    frames = _key_frames(video, analysis, _annotator(info, summary)) if frames is None else frames
    person_table = _table(
        ["person", "frames", "quality", "visibility", "jumps", "best jump (m)", "mean flight (s)",
         "mean contact (s)", "repetitions", "counted on", "peak COM speed (BH/s)", "height given (m)",
         "peak COM speed (m/s)"],
        _person_rows(summary),
    )  # fmt: skip
    event_rows = [
        [e["type"], e["person"], e["start_frame"], e["end_frame"], e.get("flight_time_s") or e.get("contact_time_s"),
         e.get("height_m"), e.get("com_rise_m"), "; ".join(e["flags"])]
        for e in analysis.events
    ]  # fmt: skip
    events_table = (
        _table(
            ["event", "person", "from frame", "to frame", "duration (s)", "jump height (m)", "COM rise (m)", "flags"],
            event_rows,
        )
        if event_rows
        else "<p>No jumps, contacts or repetitions found.</p>"
    )
    flags = "".join(
        f"<li>{'video' if f['person'] is None else 'person ' + str(f['person'])}: {html.escape(f['message'])}</li>"
        for f in summary["flags"]
    )
    parts = [
        f"<h1>{html.escape(storage.name_of(redact(video)))}</h1>",
        f"<p>{info.width}x{info.height}, {info.fps:g} fps, {info.frame_count} frames ({info.duration_s:.2f} s); "
        f"sport: {html.escape(summary['sport_type'])}; quality preset: {html.escape(str(settings.get('quality')))}; "
        f"model: {html.escape(str(settings.get('pose_model')))}; overall quality score: {summary['quality_score']}</p>",
        "<h2>Summary</h2>",
        person_table,
        f"<p>Persons are numbered {html.escape(summary['person_order'])}.</p>" if summary.get("person_order") else "",
        f'<ul class="flags">{flags}</ul>' if flags else "",
        "<h2>Events</h2>",
        events_table,
        "<h2>Plots</h2>",
        _left_out_note(summary),
        *(f'<figure class="plot"><img alt="{html.escape(c)}" src="{uri}"><figcaption>{html.escape(c)}</figcaption></figure>' for c, uri in plots),
        "<h2>Key frames</h2>",
        '<div class="keyframes">',
        *(f'<figure class="keyframe"><img alt="{html.escape(c)}" src="{uri}"><figcaption>{html.escape(c)}</figcaption></figure>' for c, uri in frames),
        "</div>",
        "<h2>Which output for what</h2>",
        OUTPUT_GUIDE,
        "<h2>Settings</h2>",
        f"<pre>{html.escape(json.dumps(settings, indent=1, default=str))}</pre>",
    ]  # fmt: skip
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(storage.name_of(redact(video)))} report</title>'
        f"<style>{_STYLE}</style><script>{_PAGE_SCRIPT}</script></head><body>{''.join(parts)}</body></html>"
    )
    return write_text(path, page)


# -- the writer ---------------------------------------------------------------------
PERSONS_PER_PLOT_TASK = 4  # figures drawn by one task (about 0.2 s each): the workers share a video's plots


def report_plots_task(store: str, persons: tuple[int, ...], settings: dict | None = None) -> list[tuple[str, str]]:
    """Task: the figures of ``persons`` for the report's page (``settings``: the analysis settings)."""
    analysis = _Series(AnalysisStore(store))
    return _plots(analysis, SPORT_PROFILES[analysis.summary["sport_type"]].angles, list(persons), settings)


def report_frames_task(video: str, info: VideoInfo, store: str, table_at: str | None = None) -> list[tuple[str, str]]:
    """Task: the annotated key frames for the report's page."""
    analysis = _Series(AnalysisStore(store))
    return _key_frames(video, analysis, _annotator(info, analysis.summary), table_at)


def report_task(
    path: str, video: str, info: VideoInfo, store: str, settings: dict, *drawn: list[tuple[str, str]]
) -> str:
    """Task: the HTML report. ``drawn``: the results of the plot tasks, in order, then the key frames'."""
    *plots, frames = drawn
    figures = [figure for part in plots for figure in part]
    return write_report(path, video, info, AnalysisStore(store), settings, plots=figures, frames=frames)


class ReportWriter(OutputWriter):
    name = "report"
    label = "report"

    def enabled(self, config: PipelineConfig) -> bool:
        return config.report

    def location(self, config: PipelineConfig, name: str) -> str:
        return storage.join(config.output_dir, f"{name}_report.html")

    def plan(self, video: VideoOutputs) -> OutputPlan:
        persons = plotted_persons(AnalysisStore(video.store).summary)
        groups = [tuple(persons[i : i + PERSONS_PER_PLOT_TASK]) for i in range(0, len(persons), PERSONS_PER_PLOT_TASK)]
        tasks = [
            OutputTask(
                report_plots_task,
                (video.store, group, video.header["settings"].get("analysis")),
                f"report-plots-{video.name}-{k}",
                "report",
            )
            for k, group in enumerate(groups)
        ]
        tasks.append(
            OutputTask(
                report_frames_task,
                (video.source, video.info, video.store, video.frame_table_at),
                f"report-frames-{video.name}",
                "report",
            )
        )
        args = (self.target(video), video.source, video.info, video.store, video.header["settings"])
        tasks.append(OutputTask(report_task, args, f"report-{video.name}", after=tuple(range(len(tasks)))))
        return OutputPlan(tasks)

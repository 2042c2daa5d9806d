"""End to end on real engines: ground truth of the analysis on synthetic clips,
the annotated video (H.264, every frame, drawn), summary.csv, and the report
rendered in headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import duckdb
import numpy as np
import pytest
from conftest import run_cli
from pose_tables import check_events_table, check_frames_table, check_metres
from synthetic import STATURE_M, G

from pipeline.analysis.kinematics import joint_angles
from pipeline.analysis.store import AnalysisStore
from pipeline.outputs.report import _Series
from pipeline.pose.skeleton import ANGLE_NAMES
from pipeline.video import probe_video

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip


def _document(result, name: str) -> dict:
    video = next(v for v in result.videos if v.name == name)
    with open(video.outputs["pose_json"], encoding="utf-8") as fh:
        return json.load(fh)


def test_jump_ground_truth(batch, clips):
    """Takeoff and landing within one frame, flight time within one frame period."""
    truth = clips["jump"][1]
    document = _document(batch, "jump")
    jumps = [e for e in document["events"] if e["type"] == "jump"]
    assert len(jumps) == len(truth.jumps)
    period = 1.0 / truth.fps
    for found, known in zip(jumps, truth.jumps):
        assert abs(found["takeoff_frame"] - known.takeoff_frame) <= 1
        assert abs(found["landing_frame"] - known.landing_frame) <= 1
        assert found["flight_time_s"] == pytest.approx(known.flight_time_s, abs=period + 1e-9)
        worst = G * (known.flight_time_s + period) ** 2 / 8
        assert abs(found["height_m"] - known.jump_height_m) <= worst - known.jump_height_m
        assert found["plausible"]
        # The cross-check from the centre of mass' rise, in metres from the man's height given
        # (the clip's scale): within 15% of the true height, and in agreement with the flight time.
        assert found["com_rise_m"] == pytest.approx(known.jump_height_m, rel=0.15)
        assert found["heights_agree"] is True
    # No other movement is reported: the man stands still between the jumps.
    assert {e["type"] for e in document["events"]} <= {"jump", "contact"}
    person = document["summary"]["persons"][0]
    assert person["jumps"]["count"] == len(truth.jumps)
    assert document["summary"]["persons_found"] == 1


def test_repetitions_ground_truth(batch, clips):
    truth = clips["reps"][1]
    document = _document(batch, "reps")
    reps = [e for e in document["events"] if e["type"] == "repetition"]
    assert len(reps) == truth.n
    assert [r["index"] for r in reps] == list(range(1, truth.n + 1))
    for rep, peak in zip(reps, truth.peak_frames):
        assert abs(rep["peak_frame"] - peak) <= 2
    assert not [e for e in document["events"] if e["type"] in ("jump", "drop")]
    summary = document["summary"]["persons"][0]["repetitions"]
    assert summary["count"] == truth.n
    assert summary["mean_period_s"] == pytest.approx(truth.period_s, abs=2 / truth.fps)


def test_per_frame_series_in_pose_json(batch):
    document = _document(batch, "jump")
    assert document["schema_version"] == "1.2"
    assert all(f["decoded"] for f in document["frames"]) and document["summary"]["undecodable_frames"] == []
    frames = document["frames"]
    person = next(p for f in frames for p in (f["persons"] or []))
    assert set(person["angles"]) == set(document["angle_names"])
    assert set(person["speed_bh_s"]) == set(document["velocity_points"])
    assert len(person["com_px"]) == 2 and person["ground_contact"] in (True, False)
    # Airborne frames of the first jump are marked as such.
    jump = next(e for e in document["events"] if e["type"] == "jump")
    middle = frames[(jump["takeoff_frame"] + jump["landing_frame"]) // 2]
    assert middle["persons"][0]["ground_contact"] is False


def _stream(path: Path) -> tuple[str, int, int, float, int, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return (
            stream.codec_context.name,
            stream.codec_context.width,
            stream.codec_context.height,
            float(stream.average_rate),
            frames,
            stream.codec_context.pix_fmt,
        )


@pytest.mark.parametrize("name", ["jump", "demo"])
def test_annotated_video_stream(batch, clips, sample_video, name):
    video = next(v for v in batch.videos if v.name == name)
    info = probe_video(video.video)
    codec, width, height, fps, frames, pix_fmt = _stream(Path(video.outputs["annotated_video"]))
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert (width, height) == (info.width, info.height)
    assert fps == pytest.approx(info.fps, rel=1e-3)
    assert frames == info.frame_count
    segments = list(Path(video.outputs["annotated_video"]).parent.glob(".*segments*"))
    assert segments == []  # the segments were removed after the join


def test_annotated_frame_shows_the_skeleton(batch, clips):
    """A drawn frame differs from the source where the skeleton is, not elsewhere."""
    path, truth = clips["jump"]
    video = next(v for v in batch.videos if v.name == "jump")
    document = _document(batch, "jump")
    index = truth.jumps[0].takeoff_frame - 10  # standing still
    person = document["frames"][index]["persons"][0]
    landmarks = np.array([[np.nan if v is None else v for v in row] for row in person["landmarks"]])
    knee, ankle = landmarks[25, :2] * [truth.width, truth.height], landmarks[27, :2] * [truth.width, truth.height]
    shin = ((knee + ankle) / 2).round().astype(int)

    def frame_of(file: Path) -> np.ndarray:
        with av.open(str(file)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == index:
                    return frame.to_ndarray(format="bgr24").astype(np.int16)
        raise AssertionError(f"frame {index} missing in {file}")

    drawn, source = frame_of(Path(video.outputs["annotated_video"])), frame_of(path)
    difference = np.abs(drawn - source).sum(axis=2)
    x, y = shin
    assert difference[y - 3 : y + 4, x - 3 : x + 4].max() > 120  # the bone is drawn over the leg
    # Far from the person and the labels (right edge, mid height): only compression noise.
    assert np.median(difference[truth.height // 2 - 40 : truth.height // 2 + 40, -60:-10]) < 12


def test_summary_csv(batch):
    with open(batch.summary_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_name = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    assert set(by_name) == {"jump", "reps", "demo"}
    assert all(row["status"] == "ok" and row["error"] == "" for row in rows)
    assert by_name["jump"][0]["jumps"] == "2" and by_name["reps"][0]["repetitions"] == "5"
    assert len(by_name["demo"]) >= 2  # the man and the woman
    assert all(Path(row["annotated_video"]).exists() and Path(row["report"]).exists() for row in rows)
    # Heights given for the jumper and for the sample's person 0 only: their metres are in the table.
    assert by_name["jump"][0]["height_m"] == str(STATURE_M) and float(by_name["jump"][0]["best_com_rise_m"]) > 0.2
    assert by_name["demo"][0]["height_m"] == "1.8" and float(by_name["demo"][0]["peak_com_speed_m_s"]) > 0
    assert by_name["demo"][1]["height_m"] == "" and by_name["reps"][0]["peak_com_speed_m_s"] == ""


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={cwd / 'profile'}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_raw_angles_are_those_of_the_landmarks_as_found(batch):
    """The report's "raw" curve: the joint angles of the pose JSON's world landmarks (as the
    model found them), which the filtered angles follow closely but not exactly."""
    video = next(v for v in batch.videos if v.name == "demo")
    document = _document(batch, "demo")
    store = AnalysisStore(Path(video.outputs["angles_csv"]).parent / ".work" / "demo" / "analysis")
    series = _Series(store)
    min_visibility = document["settings"]["analysis"]["min_visibility"]
    raw = series.raw_angles(0, min_visibility)
    by_frame = {f["frame"]: p for f in document["frames"] for p in f["persons"] or [] if p["id"] == 0}
    rows = [i for i, frame in enumerate(series.frame_index.tolist()) if frame in by_frame]
    world = np.array(
        [
            [
                [np.nan if v is None else v for v in point]
                for point in by_frame[series.frame_index[i]]["world_landmarks"]
            ]
            for i in rows
        ]
    )
    visibility = np.array(
        [
            [np.nan if point[3] is None else point[3] for point in by_frame[series.frame_index[i]]["landmarks"]]
            for i in rows
        ]
    )
    expected = joint_angles(world, visibility=visibility, min_visibility=min_visibility)
    np.testing.assert_allclose(raw[rows], expected, atol=0.05)
    filtered = np.array(
        [[by_frame[series.frame_index[i]]["angles"][name] or np.nan for name in ANGLE_NAMES] for i in rows], dtype=float
    )
    difference = np.abs(raw[rows] - filtered)
    assert 0 < np.nanmedian(difference) < 5  # smoothed, not another signal


def test_report_renders_in_chromium(batch, tmp_path):
    report = Path(next(v for v in batch.videos if v.name == "jump").outputs["report"]).resolve()
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", report.as_uri(), cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = dom.stdout[dom.stdout.index("<body") : dom.stdout.index(">", dom.stdout.index("<body"))]
    images = dom.stdout.count("<img ")
    plots = dom.stdout.count('<figure class="plot">')
    assert plots >= 1 and images >= plots + 1  # plots and key frames
    assert 'data-ready="1"' in body
    assert "angle, raw and filtered" in dom.stdout  # the filter's effect on one highlighted angle
    assert "Which output for what" in dom.stdout
    assert 'data-errors="0"' in body
    assert f'data-images-loaded="{images}"' in body  # every embedded image decoded

    shot = tmp_path / "report.png"
    run = _chromium("--window-size=1200,2600", f"--screenshot={shot}", report.as_uri(), cwd=tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = cv2.imread(str(shot))
    assert pixels is not None and pixels.shape[:2] == (2600, 1200)
    # matplotlib's first line colour (tab:blue, BGR 180,119,31) is on the page: the plots rendered.
    blue = np.all(np.abs(pixels.astype(int) - [180, 119, 31]) < 30, axis=2)
    assert blue.sum() > 500


def test_cli_no_video_and_sport_type(tmp_path, clips):
    run = run_cli(
        "--video", str(clips["jump"][0]), "--quality", "fast", "--workers", "1",
        "--no_video", "--sport_type", "jump", "--output", "out", "--models", "models",
        "--tables", "csv", "--person_height", str(STATURE_M),
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert not list((tmp_path / "out").glob("*.mp4"))
    assert (tmp_path / "out" / "jump_report.html").exists()
    document = json.loads((tmp_path / "models" / "jump_pose.json").read_text())
    assert document["settings"]["sport_type"] == "jump"
    assert document["summary"]["highlights"]["event_types"] == ["jump", "drop", "contact"]
    assert document["summary"]["event_counts"]["jump"] == 2
    # --tables csv: the same tables as CSV, which DuckDB reads as a dataset partitioned by video.
    tables = tmp_path / "out" / "tables"
    assert sorted(str(p.relative_to(tables)) for p in tables.rglob("*.*")) == [
        "events/video=jump/jump.csv",
        "frames/video=jump/jump.csv",
    ]
    connection = duckdb.connect()

    def rows(table: str) -> list[dict]:
        query = connection.execute(f"SELECT * FROM read_csv('{tables}/{table}/*/*.csv', hive_partitioning = true)")
        columns = [column[0] for column in query.description]
        return [dict(zip(columns, values)) for values in query.fetchall()]

    frames = rows("frames")
    assert check_frames_table(frames, document) > 10_000
    check_metres(frames, document)
    check_events_table(rows("events"), document)


def test_video_height_scales_the_annotated_video_only(tmp_path, sample_video):
    """``--video_height 360`` on the 1768x994 sample: a 640x360 annotated video with every frame;
    the pose JSON keeps the input's pixels and records the setting."""
    args = ("--video", str(sample_video), "--quality", "fast", "--no_report", "--no_llm_data", "--video_height", "360")
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with av.open(str(tmp_path / "output" / "demo_annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
        assert sum(1 for _ in container.decode(stream)) == 230
    header = json.loads((tmp_path / "models" / "demo_pose.json").read_text())
    assert (header["video"]["width"], header["video"]["height"]) == (1768, 994)
    assert header["settings"]["video_height"] == 360

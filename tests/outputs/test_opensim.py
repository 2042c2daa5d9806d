"""The OpenSim files (``pipeline/outputs/opensim.py``): TRC markers and MOT joint angles per
person, checked against the formats' layout, against the pose JSON's values, and read back
with OpenSim's own Python bindings (``opensim``, pinned in requirements-dev.txt).

The batch (conftest): ``jump`` has a height for its person, ``reps`` none, ``demo`` one for
person 0 only. A small stored analysis made here covers what the clips do not: a person
missing in a frame, a marker missing at the end of a row, skipped frames, a file left over
from an earlier run, blocks of a few frames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import opensim
import pytest

from pipeline.analysis.analyzer import Analysis
from pipeline.analysis.body import VELOCITY_POINTS
from pipeline.analysis.store import AnalysisStore, save_analysis
from pipeline.outputs.opensim import write_opensim
from pipeline.pose.skeleton import ANGLE_NAMES, LANDMARK_NAMES
from pipeline.pose.types import PoseChunk

# OpenSim logs to ./opensim.log once it has something to say: never into the working tree.
opensim.Logger.removeFileSink()

MARKERS = len(LANDMARK_NAMES)
TRC_COLUMNS = 2 + 3 * MARKERS
TRC_KEYS = ["DataRate", "CameraRate", "NumFrames", "NumMarkers", "Units", "OrigDataRate", "OrigDataStartFrame", "OrigNumFrames"]  # fmt: skip


# -- reading the files as the formats define them (plain text, no code of the pipeline) ----------
def read_trc(path: Path) -> tuple[dict, list[list[str]]]:
    """Header values by key, and the data rows' fields (without the row's trailing tab)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0].split("\t") == ["PathFileType", "4", "(X/Y/Z)", path.name]
    assert lines[1].split("\t") == TRC_KEYS
    header = dict(zip(TRC_KEYS, lines[2].split("\t"), strict=True))
    assert lines[3].split("\t") == ["Frame#", "Time", *[f for name in LANDMARK_NAMES for f in (name, "", "")], ""]
    assert lines[4].split("\t") == ["", "", *[f"{c}{i}" for i in range(1, MARKERS + 1) for c in "XYZ"], ""]
    assert lines[5] == ""  # the blank line OpenSim writes before the data
    assert lines[-1] == ""  # the last row ends with a newline
    rows = [line.split("\t") for line in lines[6:-1]]
    for row in rows:
        assert len(row) == TRC_COLUMNS + 1 and row[-1] == ""  # every field ends with a tab
    return header, [row[:-1] for row in rows]


def read_mot(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Header lines, column names and the values (NaN where missing)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    end = lines.index("endheader")
    assert lines[-1] == ""
    columns = lines[end + 1].split("\t")
    values = np.array([[float(v) for v in line.split("\t")] for line in lines[end + 2 : -1]])
    return lines[:end], columns, values


def mot_header(lines: list[str]) -> dict:
    return dict(line.split("=", 1) for line in lines[1:])


# -- the batch ----------------------------------------------------------------------------------
def _video(batch, name: str):
    return next(v for v in batch.videos if v.name == name)


def _document(video) -> dict:
    with open(video.outputs["pose_json"], encoding="utf-8") as fh:
        return json.load(fh)


def _expected_rows(document: dict, ident: int) -> list[tuple[dict, dict | None]]:
    """The analysed frames from the person's first to last shown one, each with the person's entry (None: not shown)."""
    analysed = [f for f in document["frames"] if f["analyzed"]]
    shown = [i for i, f in enumerate(analysed) if any(p["id"] == ident for p in f["persons"])]
    span = analysed[shown[0] : shown[-1] + 1]
    return [(f, next((p for p in f["persons"] if p["id"] == ident), None)) for f in span]


@pytest.fixture(scope="module")
def videos(batch) -> dict:
    """name -> (folder of OpenSim files, pose JSON document)."""
    return {v.name: (Path(v.outputs["opensim"]), _document(v)) for v in batch.videos}


def _files(folder: Path, suffix: str) -> set[str]:
    return {p.name for p in folder.glob(f"*{suffix}")}


def test_files_for_every_analysed_person_and_markers_where_the_height_is_known(videos):
    for name, (folder, document) in videos.items():
        analysed = [p for p in document["summary"]["persons"] if p["analysed"]]
        assert analysed, name
        assert folder == folder.parent.parent / "opensim" / name
        assert _files(folder, ".mot") == {f"{name}_person{p['id']}.mot" for p in analysed}, name
        scaled = {f"{name}_person{p['id']}.trc" for p in analysed if p.get("scale") is not None}
        assert _files(folder, ".trc") == scaled, name
        assert {p.name for p in folder.iterdir()} == _files(folder, ".mot") | scaled  # nothing else
    assert _files(videos["jump"][0], ".trc") == {"jump_person0.trc"}  # a height for every person
    assert _files(videos["reps"][0], ".trc") == set()  # no height given
    assert _files(videos["demo"][0], ".trc") == {"demo_person0.trc"}  # a height for person 0 only
    assert len(_files(videos["demo"][0], ".mot")) >= 2  # the sample has two people


def _trc_cases(videos):
    for name, (folder, document) in videos.items():
        for person in document["summary"]["persons"]:
            if person["analysed"] and person.get("scale") is not None:
                yield name, folder / f"{name}_person{person['id']}.trc", document, person


def test_trc_follows_the_format_and_holds_the_pose_json_landmarks_in_metres(videos):
    cases = list(_trc_cases(videos))
    assert {name for name, *_ in cases} == {"jump", "demo"}
    for name, path, document, person in cases:
        video = document["video"]
        header, rows = read_trc(path)
        expected = _expected_rows(document, person["id"])
        assert header["NumFrames"] == str(len(rows)) == str(len(expected))
        assert header["NumMarkers"] == str(MARKERS) and header["Units"] == "m"
        assert float(header["DataRate"]) == float(header["CameraRate"]) == pytest.approx(video["fps"], abs=1e-6)
        assert header["OrigDataStartFrame"] == str(expected[0][0]["frame"] + 1)
        assert header["OrigNumFrames"] == str(video["frame_count"])
        assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
        times = [float(row[1]) for row in rows]
        assert all(a < b for a, b in zip(times, times[1:]))
        scale = person["scale"]["metres_per_px"]
        width, height = video["width"], video["height"]
        shown = 0
        for row, (frame, entry) in zip(rows, expected):
            assert float(row[1]) == pytest.approx(frame["timestamp_ms"] / 1000.0, abs=1e-6)
            for k, (x, y, *_) in enumerate(entry["landmarks"] if entry else [[None, None]] * MARKERS):
                cells = row[2 + 3 * k : 5 + 3 * k]
                if x is None or y is None:
                    assert cells == ["", "", ""], (name, frame["frame"], k)
                    continue
                assert float(cells[0]) == pytest.approx(x * width * scale, abs=1e-6)
                assert float(cells[1]) == pytest.approx((height - y * height) * scale, abs=1e-6)
                assert float(cells[2]) == 0.0
            shown += entry is not None
        assert shown > 0.9 * len(rows)


def test_mot_follows_the_format_and_holds_the_pose_json_angles(videos):
    count = 0
    for name, (folder, document) in videos.items():
        for person in [p for p in document["summary"]["persons"] if p["analysed"]]:
            path = folder / f"{name}_person{person['id']}.mot"
            head, columns, values = read_mot(path)
            assert head[0] == path.name and head[1] == "version=1"
            fields = mot_header(head)
            assert fields["inDegrees"] == "yes"
            assert columns == ["time", *ANGLE_NAMES]
            assert fields["nColumns"] == str(len(columns)) and values.shape[1] == len(columns)
            expected = _expected_rows(document, person["id"])
            assert fields["nRows"] == str(len(values)) == str(len(expected))
            assert np.all(np.diff(values[:, 0]) > 0)
            for row, (frame, entry) in zip(values, expected):
                assert row[0] == pytest.approx(frame["timestamp_ms"] / 1000.0, abs=1e-6)
                for k, angle in enumerate(ANGLE_NAMES):
                    value = None if entry is None else entry["angles"][angle]
                    if value is None:
                        assert math.isnan(row[1 + k])
                    else:
                        assert row[1 + k] == pytest.approx(value, abs=0.005)
            count += 1
    assert count >= 4  # jump, reps and the sample's two people


def test_opensim_reads_the_markers_and_the_angles(videos):
    """OpenSim's own readers (``TRCFileAdapter``, ``STOFileAdapter``) load every file."""
    for _, path, document, person in _trc_cases(videos):
        table = opensim.TimeSeriesTableVec3(str(path))
        expected = _expected_rows(document, person["id"])
        assert list(table.getColumnLabels()) == list(LANDMARK_NAMES)
        assert table.getNumRows() == len(expected)
        assert table.getTableMetaDataAsString("Units") == "m"
        assert table.getTableMetaDataAsString("NumFrames") == str(len(expected))
        times = list(table.getIndependentColumn())
        scale, video = person["scale"]["metres_per_px"], document["video"]
        for i in (0, len(expected) // 2, len(expected) - 1):
            frame, entry = expected[i]
            assert entry is not None  # the first, a middle and the last row are shown ones here
            assert times[i] == pytest.approx(frame["timestamp_ms"] / 1000.0, abs=1e-6)
            row = table.getRowAtIndex(i)
            for k, (x, y, *_) in enumerate(entry["landmarks"]):
                marker = row[k]
                assert marker[0] == pytest.approx(x * video["width"] * scale, abs=1e-6)
                assert marker[1] == pytest.approx((video["height"] - y * video["height"]) * scale, abs=1e-6)
                assert marker[2] == 0.0
    for name, (folder, document) in videos.items():
        for person in [p for p in document["summary"]["persons"] if p["analysed"]]:
            table = opensim.TimeSeriesTable(str(folder / f"{name}_person{person['id']}.mot"))
            expected = _expected_rows(document, person["id"])
            assert list(table.getColumnLabels()) == list(ANGLE_NAMES)
            assert table.getNumRows() == len(expected)
            assert table.getTableMetaDataAsString("inDegrees") == "yes"
            values = table.getMatrix().to_numpy()
            for i, (_, entry) in enumerate(expected):
                angles = [None if entry is None else entry["angles"][a] for a in ANGLE_NAMES]
                want = np.array([np.nan if v is None else v for v in angles])
                np.testing.assert_allclose(values[i], want, atol=0.005)


# -- a small stored analysis made here -----------------------------------------------------------
FPS, WIDTH, HEIGHT, MPP = 30.0, 640, 480, 0.004


def _small_store(folder: Path) -> str:
    """8 frames, two lanes. Person 0 (lane 0, scaled) is shown on frames 1-6 but not on 3;
    frame 4 is not analysed; its last marker is missing on frame 2. Person 1 (lane 1) was
    seen too briefly to be analysed."""
    frames, lanes = 8, 2
    track = PoseChunk.empty(0, frames, lanes, FPS)
    track.sampled[4] = False
    rng = np.random.default_rng(0)
    for f in (1, 2, 4, 5, 6):
        track.image_xyzv[f, 0] = np.c_[rng.uniform(0.1, 0.9, (MARKERS, 3)), np.ones(MARKERS)]
    track.image_xyzv[2, 0, -1] = np.nan
    track.image_xyzv[0:3, 1] = 0.5
    person = np.full((frames, lanes), -1, np.int32)
    person[1:7, 0] = 0
    person[0:3, 1] = 1
    angles = np.full((frames, lanes, len(ANGLE_NAMES)), np.nan, np.float32)
    angles[1:7, 0] = rng.uniform(20, 180, (6, len(ANGLE_NAMES)))
    angles[2, 0, 0] = np.nan
    analysis = Analysis(
        track=track,
        landmarks_px=np.full((frames, lanes, MARKERS, 2), np.nan, np.float32),
        angles=angles,
        angular_velocity=np.full((frames, lanes, len(ANGLE_NAMES)), np.nan, np.float32),
        com_px=np.full((frames, lanes, 2), np.nan, np.float32),
        com_height_bh=np.full((frames, lanes), np.nan, np.float32),
        velocity_px_s=np.full((frames, lanes, len(VELOCITY_POINTS), 2), np.nan, np.float32),
        body_height_px=np.array([300.0, np.nan]),
        contact=np.full((frames, lanes), -1, np.int8),
        person=person,
        summary={
            "persons": [
                {"id": 0, "analysed": True, "scale": {"height_m": 1.8, "metres_per_px": MPP, "source": "given"}},
                {"id": 1, "analysed": False},
            ]
        },
    )
    return save_analysis(folder / "analysis", analysis)


class SmallBlocks(AnalysisStore):
    def blocks(self, frames: int = 1000):
        return super().blocks(3)


def test_rows_span_the_shown_frames_with_gaps_left_empty(tmp_path):
    store = _small_store(tmp_path)
    header = {"video": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "frame_count": 8}}
    out = tmp_path / "opensim" / "clip"
    out.mkdir(parents=True)
    (out / "clip_person7.trc").write_text("from an earlier run")
    (out / "notes.txt").write_text("the user's")
    written = write_opensim(str(out), "clip", header, AnalysisStore(store))
    assert sorted(Path(p).name for p in written) == ["clip_person0.mot", "clip_person0.trc"]
    assert sorted(p.name for p in out.iterdir()) == ["clip_person0.mot", "clip_person0.trc", "notes.txt"]

    analysis = AnalysisStore(store).read()
    frames = [1, 2, 3, 5, 6]  # analysed, from the first to the last shown
    header_values, rows = read_trc(out / "clip_person0.trc")
    assert header_values["NumFrames"] == "5" and header_values["OrigDataStartFrame"] == "2"
    assert float(header_values["DataRate"]) == pytest.approx(FPS * 7 / 8)  # one frame in 8 skipped
    assert header_values["CameraRate"] == header_values["OrigDataRate"] == "30"
    assert [row[1] for row in rows] == [f"{f / FPS:.6f}" for f in frames]
    assert rows[2][2:] == [""] * 3 * MARKERS  # frame 3: not shown
    assert rows[1][-3:] == ["", "", ""] and rows[1][-4] != ""  # frame 2: the last marker is missing
    xy = np.round(analysis.track.image_xyzv[5, 0, :, :2].astype(np.float64), 5)
    np.testing.assert_allclose(np.array(rows[3][2:], dtype=float).reshape(MARKERS, 3)[:, 0], xy[:, 0] * WIDTH * MPP, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(np.array(rows[3][2:], dtype=float).reshape(MARKERS, 3)[:, 1], (1 - xy[:, 1]) * HEIGHT * MPP, atol=1e-6)  # fmt: skip

    table = opensim.TimeSeriesTableVec3(str(out / "clip_person0.trc"))
    assert table.getNumRows() == 5
    assert all(math.isnan(table.getRowAtIndex(2)[k][0]) for k in range(MARKERS))
    assert math.isnan(table.getRowAtIndex(1)[MARKERS - 1][1]) and not math.isnan(table.getRowAtIndex(1)[0][1])

    _, _, values = read_mot(out / "clip_person0.mot")
    table = opensim.TimeSeriesTable(str(out / "clip_person0.mot"))  # kept: the matrix is a view of it
    mot = table.getMatrix().to_numpy()
    want = np.round(analysis.angles[frames, 0].astype(np.float64), 2)
    want[2] = np.nan  # not shown
    np.testing.assert_array_equal(values[:, 1:], want)
    np.testing.assert_array_equal(mot, want)

    # Read a few frames at a time, the files are the same.
    again = tmp_path / "again"
    write_opensim(str(again), "clip", header, SmallBlocks(store))
    for name in ("clip_person0.mot", "clip_person0.trc"):
        assert (again / name).read_text() == (out / name).read_text()

    # No scale: the angles alone.
    meta = json.loads((Path(store) / "meta.json").read_text())
    meta["summary"]["persons"][0]["scale"] = None
    (Path(store) / "meta.json").write_text(json.dumps(meta))
    write_opensim(str(out), "clip", header, AnalysisStore(store))
    assert sorted(p.name for p in out.iterdir()) == ["clip_person0.mot", "notes.txt"]

    # No one analysed: no file, and the folder is there (the output exists for a re-run).
    meta["summary"]["persons"][0]["analysed"] = False
    (Path(store) / "meta.json").write_text(json.dumps(meta))
    assert write_opensim(str(tmp_path / "none"), "clip", header, AnalysisStore(store)) == []
    assert (tmp_path / "none").is_dir() and not any((tmp_path / "none").iterdir())

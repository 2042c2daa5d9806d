"""Checks of the exported tables against the pose JSON they were made with, value by value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.analysis.body import VELOCITY_POINTS
from pipeline.pose.skeleton import ANGLE_NAMES, LANDMARK_NAMES

# Each pose JSON value against its table column(s), and the JSON's rounding (half a unit of its last decimal).
LANDMARK_TOLERANCE = 0.5e-5 + 1e-7  # 5 decimals; float32 in the table
FIELDS = ("x", "y", "z", "visibility", "presence")
WORLD = ("world_x_m", "world_y_m", "world_z_m")


def _number(value) -> float:
    return np.nan if value is None else float(value)


def pose_json_rows(document: dict) -> dict[tuple[int, int], dict]:
    """Every person shown in the pose JSON, by (frame, person id)."""
    return {
        (frame["frame"], person["id"]): person | {"time_s": frame["timestamp_ms"] / 1000.0}
        for frame in document["frames"]
        for person in frame["persons"] or []
    }


def expected_columns(person: dict) -> dict[str, tuple[float, float]]:
    """Table column -> (the pose JSON's value, tolerance)."""
    out = {"time_s": (person["time_s"], 0.5e-6 + 1e-9)}
    for k, name in enumerate(LANDMARK_NAMES):
        for j, field in enumerate(FIELDS):
            out[f"{name}_{field}"] = (_number(person["landmarks"][k][j]), LANDMARK_TOLERANCE)
        for j, field in enumerate(WORLD):
            out[f"{name}_{field}"] = (_number(person["world_landmarks"][k][j]), LANDMARK_TOLERANCE)
    for name in ANGLE_NAMES:
        out[f"{name}_deg"] = (_number(person["angles"][name]), 0.005 + 1e-4)
        out[f"{name}_velocity_deg_s"] = (_number(person["angular_velocity_deg_s"][name]), 0.05 + 1e-3)
    out["com_x_px"] = (_number(person["com_px"][0]), 0.05 + 1e-3)
    out["com_y_px"] = (_number(person["com_px"][1]), 0.05 + 1e-3)
    out["com_height_bh"] = (_number(person["com_height_bh"]), 0.5e-4 + 1e-6)
    for point in VELOCITY_POINTS:
        out[f"speed_{point}_bh_s"] = (_number(person["speed_bh_s"][point]), 0.5e-3 + 1e-5)
    return out


def check_frames_table(rows: list[dict], document: dict) -> int:
    """Assert the frames table rows of one video (dicts, None for null) hold exactly the persons the
    pose JSON shows, with its values; returns the number of values compared."""
    expected = pose_json_rows(document)
    found = {(row["frame"], row["person"]): row for row in rows}
    assert len(found) == len(rows), "a (frame, person) appears twice"
    assert set(found) == set(expected)
    compared = 0
    for key, person in expected.items():
        row = found[key]
        contact = person["ground_contact"]
        assert row["ground_contact"] == contact, (key, row["ground_contact"], contact)
        for column, (value, tolerance) in expected_columns(person).items():
            got = _number(row[column])
            if np.isnan(value):
                assert np.isnan(got), (key, column, got)
            else:
                assert abs(got - value) <= tolerance, (key, column, got, value)
            compared += 1
    return compared


def check_metres(rows: list[dict], document: dict) -> None:
    """The metre columns: the body-height and pixel values scaled by the person's height, null without one."""
    scales = {p["id"]: p.get("scale") for p in document["summary"]["persons"]}
    frame_height = document["video"]["height"]
    for row in rows:
        scale = scales.get(row["person"])
        metres = [row["com_x_m"], row["com_y_m"], row["com_height_m"], row["speed_com_m_s"]]
        if scale is None:
            assert all(v is None for v in metres), row["person"]
            continue
        mpp, height = scale["metres_per_px"], scale["height_m"]
        for got, want in (
            (row["com_x_m"], None if row["com_x_px"] is None else row["com_x_px"] * mpp),
            (row["com_y_m"], None if row["com_y_px"] is None else (frame_height - row["com_y_px"]) * mpp),
            (row["com_height_m"], None if row["com_height_bh"] is None else row["com_height_bh"] * height),
            (row["speed_com_m_s"], None if row["speed_com_bh_s"] is None else row["speed_com_bh_s"] * height),
        ):
            assert (got is None) == (want is None)
            if got is not None:
                assert abs(got - want) <= 1e-5 * max(1.0, abs(want)), (got, want)


def check_events_table(rows: list[dict], document: dict) -> None:
    """One row per pose JSON event, in order, with its values."""
    events = document["events"]
    assert len(rows) == len(events)
    for row, event in zip(rows, events):
        for key, value in event.items():
            if key in ("takeoff_s", "landing_s"):
                key = "start_s" if key == "takeoff_s" else "end_s"
            if key == "flags":
                assert (row["flags"] or "") == "; ".join(value)  # CSV: an empty field reads as null
            elif isinstance(value, float):
                assert abs(row[key] - value) <= 1e-9, (key, row[key], value)
            else:
                assert row[key] == value, (key, row[key], value)


def load_document(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))

"""``output/summary.csv``: one row per video and person of a batch (a failed
video, or one with nobody in it, gets one row with its status)."""

from __future__ import annotations

import csv
from collections.abc import Iterable

from pipeline.storage import atomic_write

COLUMNS = (
    "video", "name", "status", "error", "sport_type", "frames", "fps", "person", "frames_detected", "coverage",
    "quality_score", "mean_visibility", "jumps", "best_jump_height_m", "mean_flight_time_s", "drops", "contacts",
    "mean_contact_time_s", "min_contact_time_s", "repetitions", "repetition_signal", "mean_repetition_period_s",
    "peak_com_speed_bh_s", "flags", "pose_json", "annotated_video", "report",
)  # fmt: skip


def _person_row(person: dict) -> dict:
    row = {
        "person": person["id"],
        "frames_detected": person["frames_detected"],
        "coverage": person["coverage"],
    }
    if not person.get("analysed"):
        return row | {"flags": "too_short: fewer frames than the preset's minimum track length"}
    com = person["speed_bh_s"].get("com") or {}
    return row | {
        "quality_score": person["quality"]["score"],
        "mean_visibility": person["mean_visibility"],
        "jumps": person["jumps"]["count"],
        "best_jump_height_m": person["jumps"]["best_height_m"],
        "mean_flight_time_s": person["jumps"]["mean_flight_time_s"],
        "drops": person["drops"],
        "contacts": person["contacts"]["count"],
        "mean_contact_time_s": person["contacts"]["mean_s"],
        "min_contact_time_s": person["contacts"]["min_s"],
        "repetitions": person["repetitions"]["count"],
        "repetition_signal": person["repetitions"]["signal"],
        "mean_repetition_period_s": person["repetitions"]["mean_period_s"],
        "peak_com_speed_bh_s": com.get("max"),
        "flags": "; ".join(f"{f['code']}: {f['message']}" for f in person["flags"]),
    }


def summary_rows(results: Iterable) -> list[dict]:
    """Rows for the VideoResults of a batch, in batch order."""
    rows = []
    for result in results:
        base = {
            "video": result.video,
            "name": result.name,
            "status": "ok" if result.success else "failed",
            "error": result.error or "",
            "frames": result.frames or (result.info.frame_count if result.info else ""),
            "fps": round(result.info.fps, 3) if result.info else "",
            "pose_json": result.outputs.get("pose_json", ""),
            "annotated_video": result.outputs.get("annotated_video", ""),
            "report": result.outputs.get("report", ""),
        }
        summary = result.summary or {}
        base["sport_type"] = summary.get("sport_type", "")
        persons = summary.get("persons") or []
        if persons:
            rows.extend(base | _person_row(p) for p in persons)
        else:
            rows.append(base)
    return rows


def write_summary_csv(path: str, results: Iterable) -> str:
    """Write the batch's table; returns its location."""

    def write(fh) -> None:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(summary_rows(results))

    return atomic_write(path, write, text=True)

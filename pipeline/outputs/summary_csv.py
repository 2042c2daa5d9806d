"""``output/summary.csv``: one row per video and person of the whole output
folder (a failed video, one with nobody in it, or one another run is working
on, gets one row with its status).

It is written from the work folders' manifests (``workdir.video_states``), not
from one run's results, and under a folder-level lock, so it never contradicts
the manifests: a video that another run completed shows as ``ok``, one that
another run is processing as ``in progress``, one whose run stopped before the
end as ``incomplete``. Each run rewrites it at its end; the last run to finish
writes the final state.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable

from pipeline import storage
from pipeline.workdir import WORK_FOLDER, VideoState, video_states

SUMMARY_LOCK = "summary.flock"  # in the work folder; a video's lock is <name>.lock, so names cannot collide
LOCK_TIMEOUT_S = 60.0  # another run holds the folder lock only while it reads manifests and writes the file

COLUMNS = (
    "video", "name", "status", "error", "sport_type", "frames", "fps", "person", "person_order", "frames_detected",
    "coverage",
    "quality_score", "mean_visibility", "jumps", "best_jump_height_m", "mean_flight_time_s", "drops", "contacts",
    "mean_contact_time_s", "min_contact_time_s", "repetitions", "repetition_signal", "mean_repetition_period_s",
    "peak_com_speed_bh_s", "height_m", "best_com_rise_m", "peak_com_speed_m_s", "flags", "pose_json",
    "annotated_video", "report",
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
    com_m = (person.get("speed_m_s") or {}).get("com") or {}  # with a height given (--person_height)
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
        "height_m": (person.get("scale") or {}).get("height_m"),
        "best_com_rise_m": person["jumps"].get("best_com_rise_m"),
        "peak_com_speed_m_s": com_m.get("max"),
        "flags": "; ".join(_flag(f) for f in person["flags"]),
    }


def summary_rows(states: Iterable[VideoState]) -> list[dict]:
    """Rows for the videos of an output folder, in the order given."""
    rows = []
    for state in states:
        result = state.result or {}
        info = result.get("info") or {}
        outputs = result.get("outputs") or {}
        base = {
            "video": result.get("video") or state.source,
            "name": state.name,
            "status": state.status,
            "error": result.get("error") or "",
            "frames": result.get("frames") or info.get("frame_count", ""),
            "fps": round(info["fps"], 3) if info else "",
            "pose_json": outputs.get("pose_json", ""),
            "annotated_video": outputs.get("annotated_video", ""),
            "report": outputs.get("report", ""),
        }
        summary = result.get("summary") or {}
        base["sport_type"] = summary.get("sport_type", "")
        base["person_order"] = summary.get("person_order") or ""
        video_flags = "; ".join(_flag(f) for f in summary.get("flags") or [] if f.get("person") is None)
        base["flags"] = video_flags
        persons = summary.get("persons") or []
        if persons:
            for person in persons:
                row = base | _person_row(person)
                row["flags"] = "; ".join(text for text in (video_flags, row.get("flags", "")) if text)
                rows.append(row)
        else:
            rows.append(base)
    return rows


def _flag(flag: dict) -> str:
    return f"{flag['code']}: {flag['message']}"


def write_summary_csv(output_dir: str | os.PathLike, finished: Iterable[VideoState] = ()) -> str:
    """Rewrite ``output_dir/summary.csv`` from every work folder there, under the
    folder's summary lock (waiting at most LOCK_TIMEOUT_S for another run to finish
    writing it). ``finished``: how this run's videos ended, which stands where
    their manifests could not say so (a full disk). The caller holds no video
    lock. Returns its location."""
    lock = storage.lock_for(storage.join(output_dir, WORK_FOLDER, SUMMARY_LOCK))
    lock.acquire(LOCK_TIMEOUT_S)
    try:

        def write(fh) -> None:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="", lineterminator="\n")
            writer.writeheader()
            states = {state.name: state for state in video_states(output_dir)}
            states |= {state.name: state for state in finished}
            writer.writerows(summary_rows(states[name] for name in sorted(states)))

        return storage.atomic_write(storage.join(output_dir, "summary.csv"), write, text=True)
    finally:
        lock.release()

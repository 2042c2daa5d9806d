"""What the API shows of a job: progress per chunk, per video and overall, and an ETA.

A video's progress counts its chunks (the bulk of the work) for 80% and its analysis and
its outputs for 10% each: the bar reaches 100% when the video is complete, not when its
last chunk is. A job's progress weighs its videos by their frames.
"""

from __future__ import annotations

import datetime as dt

from pipeline.serve.db import COMPLETED, PROCESSING, utcnow

EXTRACT_SHARE, ANALYSIS_SHARE = 0.8, 0.1
MIN_PROGRESS_FOR_ETA = 0.02


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def video_view(video: dict, now: dt.datetime) -> dict:
    chunks = video["chunks"]
    done = sum(1 for c in chunks if c["status"] == "completed")
    total = len(chunks)
    status, stage = video["status"], video["stage"]
    if status == COMPLETED:
        progress = 1.0
    else:
        progress = EXTRACT_SHARE * done / total if total else 0.0
        if stage == "analyze":
            progress = EXTRACT_SHARE
        elif stage == "render":
            progress = EXTRACT_SHARE + ANALYSIS_SHARE
    eta = None
    if status == PROCESSING and video["started_at"] is not None and progress >= MIN_PROGRESS_FOR_ETA:
        elapsed = (now - video["started_at"]).total_seconds()
        eta = round(max(0.0, elapsed * (1 - progress) / progress), 1)
    files = [
        {k: f[k] for k in ("key", "output", "label", "filename")}
        | {"url": f"/api/videos/{video['id']}/files/{f['key']}"}
        for f in video["outputs"] or []
    ]
    return {
        "id": video["id"],
        "filename": video["filename"],
        "status": status,
        "stage": stage,
        "progress": round(progress, 4),
        "frames_done": video["frames_done"],
        "frames_total": video["frames_total"],
        "chunks_done": done,
        "chunks_total": total,
        "eta_s": eta,
        "attempts": video["attempts"],
        "claimed_by": video["claimed_by"],  # the service process (host:pid:start) that holds or held it
        "error": video["error"],
        "created_at": iso(video["created_at"]),
        "started_at": iso(video["started_at"]),
        "finished_at": iso(video["finished_at"]),
        "chunks": [
            {
                "index": c["idx"],
                "start": c["start_frame"],
                "end": c["end_frame"],
                "status": c["status"],
                "attempts": c["attempts"],
                "reused": c["reused"],
                "worker": c["worker"],
                "seconds": c["seconds"],
                "claimed_by": c["claimed_by"],
                "error": c["error"],
            }
            for c in chunks
        ],
        "files": files,
        "summary": video["result"],
    }


def job_view(job: dict) -> dict:
    now = utcnow()
    videos = [video_view(v, now) for v in job["videos"]]
    frames = sum(max(1, v["frames_total"]) for v in videos)
    progress = sum(v["progress"] * max(1, v["frames_total"]) for v in videos) / frames if videos else 0.0
    etas = [v["eta_s"] for v in videos if v["eta_s"] is not None]
    return {
        "id": job["id"],
        "status": job["status"],
        "created_at": iso(job["created_at"]),
        "finished_at": iso(job["finished_at"]),
        "progress": round(progress, 4),
        "chunks_done": sum(v["chunks_done"] for v in videos),
        "chunks_total": sum(v["chunks_total"] for v in videos),
        "eta_s": max(etas) if etas else None,
        "error": job["error"],
        "videos": videos,
    }

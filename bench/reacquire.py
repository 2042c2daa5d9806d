"""How long a cold-started landmarker needs to find again the people a sequential one tracks.

A chunk's landmarker starts with no tracking state. MediaPipe's detector is much weaker
than its tracker, so for a while after a chunk's first frame it misses people that a
sequential loop over the whole video was still following. This script measures that time
on a clip: one sequential loop (VIDEO mode, every frame), then a cold landmarker started
at every ``--step``-th frame and run for ``--horizon`` frames. For each start it reports
the frames until the cold run agrees with the sequential one for good (every person of the
loop has one of the cold run's within ``--tolerance`` of the frame diagonal, on every
later frame of the horizon), and the person-frames it missed before that.

    PYTHONPATH=. .venv/bin/python bench/reacquire.py public/demo.mp4 --num_poses 2
    PYTHONPATH=. .venv/bin/python bench/reacquire.py --cost public/demo.mp4   # seconds per frame by num_poses

The chunk plan's overlap (``pipeline/video/plan.py``) is derived from these figures;
``--json`` writes them for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.analysis.compare import compare_runs  # noqa: E402
from pipeline.pose.backends.mediapipe import MediaPipeBackend, MediaPipeSettings  # noqa: E402
from pipeline.pose.models import resolve_model  # noqa: E402
from pipeline.pose.types import PoseChunk  # noqa: E402
from pipeline.video.probe import probe_video  # noqa: E402
from pipeline.video.reader import iter_frames  # noqa: E402


def load_frames(path: str, limit: int | None) -> tuple[list[np.ndarray], float]:
    info = probe_video(path)
    end = info.frame_count if limit is None else min(limit, info.frame_count)
    frames = [frame for _, frame in iter_frames(path, 0, end, lambda i: True, None, "rgb24")]
    return frames, info.fps


def track(backend: MediaPipeBackend, frames: list[np.ndarray], first: int, fps: float) -> np.ndarray:
    """Image landmarks [F, P, 33, 4] of ``frames`` tracked from cold, frame ``first`` onwards."""
    slots = backend.settings.num_poses
    out = np.full((len(frames), slots, 33, 4), np.nan, np.float32)
    with backend.start() as tracker:
        for row, frame in enumerate(frames):
            poses = tracker(frame, int(round((first + row) * 1000.0 / fps)))
            out[row, : poses.num_persons] = poses.image_xyzv
    return out


def matched(reference: np.ndarray, cold: np.ndarray, width: int, height: int, tolerance: float) -> np.ndarray:
    """Per frame: how many of the reference's persons the cold run has within ``tolerance`` of the diagonal."""
    counts = np.zeros(reference.shape[0], dtype=np.int64)
    for f in range(reference.shape[0]):
        a = PoseChunk.empty(0, 1, reference.shape[1], 30.0)
        b = PoseChunk.empty(0, 1, cold.shape[1], 30.0)
        a.image_xyzv[:] = reference[f : f + 1]
        b.image_xyzv[:] = cold[f : f + 1]
        comparison = compare_runs(a, b, width, height)
        counts[f] = int(np.sum(comparison.distance_px < tolerance * comparison.diagonal_px))
    return counts


def reacquisition(args) -> dict:
    frames, fps = load_frames(args.video, args.limit)
    height, width = frames[0].shape[:2]
    model = resolve_model("lite")
    backend = MediaPipeBackend(MediaPipeSettings(model.path, model.sha256, num_poses=args.num_poses))
    t0 = time.perf_counter()
    reference = track(backend, frames, 0, fps)
    sequential_s = time.perf_counter() - t0
    persons = (~np.isnan(reference[..., 0, 0])).sum(axis=1)
    starts = []
    for start in range(args.step, len(frames) - 1, args.step):
        stop = min(len(frames), start + args.horizon)
        cold = track(backend, frames[start:stop], start, fps)
        want = persons[start:stop]
        got = matched(reference[start:stop], cold, width, height, args.tolerance)
        bad = np.flatnonzero(got < want)
        settled = int(bad[-1]) + 1 if bad.size else 0  # frames after the start until agreement for good
        starts.append(
            {
                "start": start,
                "persons": int(want[0]),
                "settle_frames": settled,
                "settled": settled < stop - start,  # False: still disagreeing at the horizon
                "missed_person_frames": int(np.sum(want - np.minimum(got, want))),
                "agree": "".join("1" if ok else "0" for ok in got >= want),
            }
        )
        print(json.dumps({k: v for k, v in starts[-1].items() if k != "agree"}), flush=True)
    settle = np.array([s["settle_frames"] for s in starts])
    return {
        "video": args.video,
        "frames": len(frames),
        "fps": fps,
        "num_poses": args.num_poses,
        "tolerance": args.tolerance,
        "horizon": args.horizon,
        "sequential_person_frames": int(persons.sum()),
        "sequential_fps": len(frames) / sequential_s,
        "settle_frames": {
            "median": float(np.median(settle)),
            "p90": float(np.percentile(settle, 90)),
            "max": int(settle.max()),
            "unsettled_starts": int(sum(not s["settled"] for s in starts)),
        },
        "starts": starts,
    }


def cost(args) -> dict:
    """Seconds per frame of a sequential loop for each ``num_poses`` (best of ``--repeat``)."""
    frames, fps = load_frames(args.video, args.limit)
    model = resolve_model("lite")
    rows = {}
    for num_poses in args.poses:
        backend = MediaPipeBackend(MediaPipeSettings(model.path, model.sha256, num_poses=num_poses))
        best, found = float("inf"), 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = track(backend, frames, 0, fps)
            best = min(best, time.perf_counter() - t0)
            found = int((~np.isnan(out[..., 0, 0])).sum())
        rows[num_poses] = {"ms_per_frame": 1000 * best / len(frames), "person_frames": found}
        print(num_poses, json.dumps(rows[num_poses]), flush=True)
    return {"video": args.video, "frames": len(frames), "by_num_poses": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--num_poses", type=int, default=2)
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=150, help="frames each cold run lasts")
    parser.add_argument("--tolerance", type=float, default=0.01, help="fraction of the frame diagonal")
    parser.add_argument("--limit", type=int, default=None, help="use the first N frames only")
    parser.add_argument("--cost", action="store_true", help="measure the cost per frame by num_poses instead")
    parser.add_argument("--poses", type=int, nargs="+", default=[1, 2, 4, 6, 8])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = cost(args) if args.cost else reacquisition(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "starts"}, indent=1))


if __name__ == "__main__":
    main()

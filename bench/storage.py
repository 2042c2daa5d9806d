"""What object storage costs against local disk: the same clip and settings, run with local
folders and with ``s3://`` input and outputs on an S3-compatible server on this machine.

    .venv/bin/python bench/storage.py [--minutes 2] [--passes 1] [--out bench/storage.json]

The server is moto's standalone server on 127.0.0.1 (what the tests use), so the figures are the
cost of going through the S3 protocol (HTTP requests, ranged reads, uploads of every chunk,
analysis, segment and output, the local copies of the stored analysis), not of a network: a cloud
store adds its latency (tens of ms a request) and its bandwidth. Runs alternate local and S3, with
the annotated video (all outputs) and with ``--no_video``, ``passes`` times; each run gets fresh
folders (a fresh prefix) and ``--stats``. Records wall time, the phases of --stats, the requests
the server answered (by method) and the bytes of what the run wrote. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import ROOT, make_clip, run_child  # noqa: E402
from s3_server import s3_server  # noqa: E402

FLAGS = ["--quality", "fast", "--num_poses", "1", "--quiet"]  # as the pipeline section of bench/run.py
CASES = {"video": [], "no_video": ["--no_video"]}


def requests_since(log: Path, offset: int) -> tuple[dict[str, int], int]:
    """The requests moto logged after byte ``offset`` of its log, by method; and the new offset."""
    data = log.read_bytes()
    counts: Counter = Counter()
    for line in data[offset:].decode(errors="replace").splitlines():
        for method in ("GET", "PUT", "HEAD", "POST", "DELETE"):
            if f'"{method} /' in line:
                counts[method] += 1
    return dict(sorted(counts.items())), len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "storage.json")
    args = parser.parse_args(argv)
    clip = make_clip(ROOT / "public" / "demo.mp4", args.minutes)
    scratch = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    log = scratch / "moto.log"
    runs = []
    with s3_server(log=log) as server:
        fs = server.filesystem()
        fs.call_s3("create_bucket", Bucket="bench")
        t0 = time.perf_counter()
        fs.put_file(str(clip.path), "bench/in/clip.mp4")
        upload_s = time.perf_counter() - t0
        env = {**os.environ, **server.env()}
        offset = 0
        for k in range(args.passes):
            for case, flags in CASES.items():
                for where in ("local", "s3"):
                    label = f"{where}.{case}.{k}"
                    work = scratch / label
                    work.mkdir()
                    if where == "local":
                        folders = [str(work / name) for name in ("out", "models", "llm")]
                        video = str(clip.path)
                    else:
                        folders = [f"s3://bench/{label}/{name}" for name in ("out", "models", "llm")]
                        video = "s3://bench/in/clip.mp4"
                    command = [sys.executable, "pipeline.py", "--video", video, *FLAGS, *flags]
                    command += ["--output", folders[0], "--models", folders[1], "--llm_data", folders[2]]
                    command += ["--stats", str(work / "stats.json")]
                    _, offset = requests_since(log, offset)
                    run = run_child(command, work / "logs", cwd=ROOT, env=env, timeout=3600)
                    requests, offset = requests_since(log, offset)
                    stats = json.loads((work / "stats.json").read_text()) if run.ok else {}
                    if where == "s3":
                        written = sum(i["size"] for i in fs.find(f"bench/{label}", detail=True).values())
                    else:
                        written = sum(
                            p.stat().st_size for p in work.rglob("*") if p.is_file() and "logs" not in p.parts
                        )
                    record = {
                        "label": label,
                        "where": where,
                        "case": case,
                        "exit_code": run.exit_code,
                        "wall_s": round(run.wall_s, 2),
                        "peak_rss_mib": round(run.peak_rss_bytes / 2**20, 1),
                        "phases_s": stats.get("phases_s"),
                        "steady_fps": (stats.get("derived") or {}).get("steady_fps"),
                        "requests": requests,
                        "bytes_written": written,
                    }
                    runs.append(record)
                    print(
                        f"{label}: {record['wall_s']} s, exit {run.exit_code}, peak {record['peak_rss_mib']} MiB, "
                        f"requests {requests}, {written / 2**20:.1f} MiB written",
                        flush=True,
                    )
    ratios = {}
    for case in CASES:
        local = [r["wall_s"] for r in runs if r["case"] == case and r["where"] == "local" and r["exit_code"] == 0]
        s3 = [r["wall_s"] for r in runs if r["case"] == case and r["where"] == "s3" and r["exit_code"] == 0]
        if local and s3:
            ratios[case] = {
                "local_s": round(min(local), 2),
                "s3_s": round(min(s3), 2),
                "s3_over_local": round(min(s3) / min(local), 3),
            }
    result = {
        "clip": {"path": str(clip.path.relative_to(ROOT)), "frames": clip.frames, "bytes": clip.size_bytes},
        "upload_s": round(upload_s, 2),
        "server": "moto (standalone server) on 127.0.0.1",
        "command": "python pipeline.py --video VIDEO --quality fast --num_poses 1 --quiet [--no_video] --output OUT --models M --llm_data L",
        "runs": runs,
        "ratios": ratios,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for case, r in ratios.items():
        print(f"{case}: local {r['local_s']} s, s3 {r['s3_s']} s, s3/local {r['s3_over_local']}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

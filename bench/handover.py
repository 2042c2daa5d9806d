"""The chunk handover against chunks without a tail, on the two-person clips of the tests.

For the sample clip and its reversed, mirrored copy (``tests/media.py``), for 1, 2 and 6
person slots and chunks of 40 and 100 frames: the chunks are tracked one after another in
this process (the pipeline runs them on workers; the result depends on the chunk plan
only), stitched, and compared with one landmarker over the whole clip. Prints one markdown
row per case: the share of the loop's person-frames the stitched chunks have within 1 % of
the frame diagonal without a tail and with the handover, the person-frames of both, the
tail frames over all boundaries and the tails that reached the cap.

    PYTHONPATH=. .venv/bin/python bench/handover.py [--scratch DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import media  # noqa: E402

from pipeline.analysis.compare import compare_runs  # noqa: E402
from pipeline.pose.backends.mediapipe import MediaPipeBackend, MediaPipeSettings  # noqa: E402
from pipeline.pose.chunks import run_chunk  # noqa: E402
from pipeline.pose.handover import stitch  # noqa: E402
from pipeline.pose.models import resolve_model  # noqa: E402
from pipeline.video.plan import MAX_HANDOVER_S, plan_chunks  # noqa: E402
from pipeline.video.probe import probe_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scratch", type=Path, default=None, help="folder for the second clip (default: a temporary one)"
    )
    args = parser.parse_args()
    sample = ROOT / "public" / "demo.mp4"
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="handover-"))
    clips = {"demo": sample, "reversed": media.reversed_mirrored(scratch, sample)}
    model = resolve_model("lite")
    print(
        "| clip | slots | chunk frames | no tail | handover | person-frames loop / ours | tail frames (boundaries) | unsettled |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, clip in clips.items():
        info = probe_video(str(clip))
        for slots in (1, 2, 6):
            backend = MediaPipeBackend(MediaPipeSettings(model.path, model.sha256, num_poses=slots))
            loop = run_chunk(backend, plan_chunks(info, info.frame_count, 0)[0])
            for batch in (40, 100):
                shares, found, report = {}, 0, {}
                for label, handover_s in (("none", 0.0), ("handover", MAX_HANDOVER_S)):
                    chunks = [run_chunk(backend, spec) for spec in plan_chunks(info, batch, 0, handover_s=handover_s)]
                    track, report = stitch(chunks)
                    comparison = compare_runs(loop, track, info.width, info.height)
                    shares[label] = comparison.share_of_a_within(0.01)
                    found = comparison.detections_b
                print(
                    f"| {name} | {slots} | {batch} | {shares['none']:.3f} | {shares['handover']:.3f} "
                    f"| {comparison.detections_a} / {found} | {report['overlap_frames']} ({report['boundaries']}) "
                    f"| {report['unsettled']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

import sys, time; sys.path.insert(0,'.'); sys.path.insert(0,'tests')
from pathlib import Path
import numpy as np, media
from pipeline.pose.chunks import run_chunk
from pipeline.pose.backends.mediapipe import MediaPipeBackend, MediaPipeSettings
from pipeline.pose.models import resolve_model
from pipeline.pose.handover import stitch
from pipeline.video.probe import probe_video
from pipeline.video.plan import plan_chunks
from pipeline.analysis.compare import compare_runs
m = resolve_model('lite')
rows = []
for clip in ('public/demo.mp4', str(media.reversed_mirrored(Path('/tmp/rev'), Path('public/demo.mp4')))):
    info = probe_video(clip)
    for n in (1, 2, 6):
        b = MediaPipeBackend(MediaPipeSettings(m.path, m.sha256, num_poses=n))
        ref = run_chunk(b, plan_chunks(info, info.frame_count, 0)[0])
        for batch in (40, 100):
            res = {}
            for label, hs in (('none', 0), ('handover', 10.0)):
                chunks = [run_chunk(b, s) for s in plan_chunks(info, batch, 0, handover_s=hs)]
                track, rep = stitch(chunks)
                c = compare_runs(ref, track, info.width, info.height)
                res[label] = (round(c.share_of_a_within(0.01), 3), c.detections_b, rep)
            rep = res['handover'][2]
            print(f"| {Path(clip).stem} | {n} | {batch} | {res['none'][0]:.3f} | {res['handover'][0]:.3f} | {c.detections_a} / {res['handover'][1]} | {rep['overlap_frames']} ({rep['boundaries']}) | {rep['unsettled']} |", flush=True)

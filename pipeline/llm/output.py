"""The LLM examples of each video, as an output writer: ``videos/<name>.jsonl``
and its segments file in the LLM data folder, written from the stored analysis
on a Dask worker like the other outputs.

The examples are training data: they must come only from videos that
succeeded. The writer is ``only_complete``: it runs once the video's other
outputs are written, and a video that fails anywhere (its own examples step
included, or an earlier run's files left in the folder) keeps no file in
``videos/``.
"""

from __future__ import annotations

from pipeline import storage
from pipeline.analysis.store import AnalysisStore
from pipeline.config import TEACHERS, PipelineConfig
from pipeline.llm.build import info_file, video_files, write_video_examples
from pipeline.outputs.registry import OutputPlan, OutputTask, OutputWriter, VideoOutputs


def llm_examples_task(folder: str, name: str, fps: float, sport: str, store: str) -> dict:
    """Task: the video's LLM training examples, from the stored analysis."""
    return write_video_examples(AnalysisStore(store), folder, name, fps, sport)


class LLMExamplesWriter(OutputWriter):
    name = "llm_examples"
    label = "LLM examples"
    only_complete = True

    def enabled(self, config: PipelineConfig) -> bool:
        return config.llm_data_dir is not None

    def location(self, config: PipelineConfig, name: str) -> str:
        return str(video_files(config.llm_data_dir, name)[0])

    def files(self, config: PipelineConfig, name: str) -> tuple[str, ...]:
        """The examples, segments and info files, and the teachers' examples (written after the videos)."""
        folder = config.llm_data_dir
        teachers = tuple(video_files(folder, name, teacher)[0] for teacher in TEACHERS)
        return (*video_files(folder, name), info_file(folder, name), *teachers)

    def plan(self, video: VideoOutputs) -> OutputPlan:
        config = video.config
        args = (storage.absolute(config.llm_data_dir), video.name, video.info.fps, config.sport_type, video.store)
        return OutputPlan([OutputTask(llm_examples_task, args, f"llm-examples-{video.name}")])

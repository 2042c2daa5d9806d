"""The LLM examples of each video, as an output writer: ``videos/<name>.jsonl``
and its segments file in the LLM data folder, written from the stored analysis
on a Dask worker like the other outputs."""

from __future__ import annotations

from pipeline import storage
from pipeline.analysis.store import AnalysisStore
from pipeline.config import PipelineConfig
from pipeline.llm.build import video_files, write_video_examples
from pipeline.outputs.registry import OutputPlan, OutputTask, OutputWriter, VideoOutputs


def llm_examples_task(folder: str, name: str, fps: float, sport: str, store: str) -> dict:
    """Task: the video's LLM training examples, from the stored analysis."""
    return write_video_examples(AnalysisStore(store), folder, name, fps, sport)


class LLMExamplesWriter(OutputWriter):
    name = "llm_examples"
    label = "LLM examples"

    def enabled(self, config: PipelineConfig) -> bool:
        return config.llm_data_dir is not None

    def location(self, config: PipelineConfig, name: str) -> str:
        return str(video_files(config.llm_data_dir, name)[0])

    def plan(self, video: VideoOutputs) -> OutputPlan:
        config = video.config
        args = (storage.absolute(config.llm_data_dir), video.name, video.info.fps, config.sport_type, video.store)
        return OutputPlan([OutputTask(llm_examples_task, args, f"llm-examples-{video.name}")])

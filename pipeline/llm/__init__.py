"""LLM training data from the measured pose series, synthetic data from teacher
models (OpenAI, Claude), and fine-tuning (OpenAI jobs or local LoRA).

Importing the package registers the per-video examples as an output
(``pipeline.llm.output``); ``pipeline.llm.stage`` runs the step after the videos.
"""

from pipeline.llm.output import LLMExamplesWriter
from pipeline.outputs.registry import register

register(LLMExamplesWriter())

__all__ = ["LLMExamplesWriter"]

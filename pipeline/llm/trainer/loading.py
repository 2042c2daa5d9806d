"""Loading a trained run back: the base model (or the saved tiny random one) with its LoRA adapter applied, and the
tokenizer saved with the run."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from pipeline.errors import LLMError
from pipeline.llm.trainer.base_model import load_base_model, load_tokenizer
from pipeline.llm.trainer.extra import PEFT_DEPRECATION, require_extra


def _run_dir(folder: str | os.PathLike) -> Path:
    """The run folder from either the run folder itself or its ``adapter/`` folder."""
    folder = Path(folder)
    if (folder / "record.json").is_file():
        return folder
    if folder.name == "adapter" and (folder.parent / "record.json").is_file():
        return folder.parent
    raise LLMError(f"{folder} is not a local training run: it holds no record.json")


def load_adapter(folder: str | os.PathLike) -> tuple[Any, Any]:
    """The trained model (base + LoRA adapter, eval mode, CPU) and its tokenizer from a run folder."""
    require_extra()
    from peft import PeftModel

    run = _run_dir(folder)
    try:
        record = json.loads((run / "record.json").read_text(encoding="utf-8"))
        name_or_path, source = record["base_model"], record["base_model_source"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LLMError(f"{run / 'record.json'} is unreadable: {exc}") from exc
    if source == "tiny-random":
        if not (run / "base" / "config.json").is_file():
            raise LLMError(f"{run} lacks base/: the tiny random base model was not saved with the adapter")
        base = load_base_model(str(run / "base"), "path")
    else:
        base = load_base_model(name_or_path, source)
    tokenizer = load_tokenizer(str(run / "tokenizer"), "path")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
            model = PeftModel.from_pretrained(base, str(run / "adapter"))
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LLMError(f"the adapter in {run} could not be loaded: {reason}") from exc
    model.eval()
    return model, tokenizer

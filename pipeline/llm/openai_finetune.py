"""Fine-tuning on OpenAI: upload the split files, create a job, poll it, record it.

The record ``llm_models/openai-<job id>.json`` is written as soon as the job
exists and updated at every poll, so an interrupted wait (or ``--no_wait``)
still leaves the job id to look up later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import LLMError
from pipeline.llm.validate import OPENAI_MIN_EXAMPLES, validate_chat_jsonl
from pipeline.storage import write_json

logger = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_MODEL = "gpt-4.1-mini-2025-04-14"
FINAL_STATES = ("succeeded", "failed", "cancelled")


def openai_finetune(
    train_path: str | Path,
    val_path: str | Path | None,
    output_root: str | Path,
    api_key: str,
    base_model: str = DEFAULT_OPENAI_BASE_MODEL,
    base_url: str | None = None,
    wait: bool = True,
    poll_s: float = 15.0,
    suffix: str = "pose-coach",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    sleep=time.sleep,
) -> dict:
    """Create the job and (with ``wait``) follow it to the end. Returns the record."""
    import openai

    report = validate_chat_jsonl(train_path, min_examples=OPENAI_MIN_EXAMPLES)
    if not report.ok:
        raise LLMError(f"not uploaded: {report.first_errors()} (OpenAI fine-tuning needs {OPENAI_MIN_EXAMPLES})")
    val = None
    if val_path is not None and Path(val_path).is_file():
        val_report = validate_chat_jsonl(val_path, min_examples=0)
        if not val_report.ok:
            raise LLMError(f"not uploaded: {val_report.first_errors()}")
        val = val_path if val_report.examples else None
    say = progress or (lambda text: logger.info("%s", text))
    client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=4)
    try:
        with open(train_path, "rb") as fh:
            train_file = client.files.create(file=(Path(train_path).name, fh), purpose="fine-tune")
        val_file = None
        if val is not None:
            with open(val, "rb") as fh:
                val_file = client.files.create(file=(Path(val).name, fh), purpose="fine-tune")
        say(f"uploaded {train_file.id}" + (f" and {val_file.id}" if val_file else ""))
        job = client.fine_tuning.jobs.create(
            model=base_model,
            training_file=train_file.id,
            validation_file=val_file.id if val_file else None,
            suffix=suffix,
            seed=seed,
        )
    except openai.APIStatusError as exc:
        raise LLMError(f"OpenAI fine-tuning: HTTP {exc.status_code}: {_message(exc, api_key)}") from None
    except openai.APIConnectionError as exc:
        raise LLMError(f"OpenAI fine-tuning: cannot reach the API ({type(exc).__name__})") from None
    path = Path(output_root) / f"openai-{job.id}.json"
    record = {
        "provider": "openai",
        "job_id": job.id,
        "base_model": base_model,
        "base_url": base_url,
        "training_file": train_file.id,
        "validation_file": val_file.id if val_file else None,
        "train_examples": report.examples,
        "train_tokens_estimate": report.tokens,
        "status": job.status,
        "fine_tuned_model": job.fine_tuned_model,
        "created_at": job.created_at,
        "events": [],
        "record": str(path),
    }
    write_json(path, record)
    say(f"fine-tuning job {job.id} created on {base_model}: {job.status}")
    seen: set[str] = set()
    while wait and record["status"] not in FINAL_STATES:
        sleep(poll_s)
        try:
            job = client.fine_tuning.jobs.retrieve(job.id)
            events = client.fine_tuning.jobs.list_events(job.id, limit=50).data
        except openai.APIStatusError as exc:
            raise LLMError(f"OpenAI fine-tuning {record['job_id']}: HTTP {exc.status_code}") from None
        except openai.APIConnectionError as exc:
            raise LLMError(f"OpenAI fine-tuning {record['job_id']}: lost the API ({type(exc).__name__})") from None
        for event in reversed(events):  # oldest first
            if event.id not in seen:
                seen.add(event.id)
                record["events"].append({"created_at": event.created_at, "message": event.message})
                say(f"{job.id}: {event.message}")
        record.update(status=job.status, fine_tuned_model=job.fine_tuned_model, trained_tokens=job.trained_tokens)
        if job.error is not None and getattr(job.error, "message", None):
            record["error"] = {"code": job.error.code, "message": job.error.message}
        write_json(path, record)
    return record


def _message(exc, secret: str) -> str:
    text = str(getattr(exc, "message", "") or exc).splitlines()[0]
    return text.replace(secret, "***") if secret else text

"""The LLM options end to end through the command line, against a local server that
speaks the OpenAI and Anthropic APIs (real SDKs, real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from conftest import run_cli
from llm_server import FakeLLMServer

from pipeline.llm.build import read_jsonl, video_files
from pipeline.llm.validate import validate_chat_jsonl

OPENAI_KEY = "sk-test-openai-cli-5f1e0c2b9a"
ANTHROPIC_KEY = "sk-ant-test-cli-77d3a1e4b0"
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
BATCH = 6  # --llm_batch_size
BASE_ARGS = ("--output", "out", "--models", "models", "--llm_data", "data", "--llm_models", "trained",
             "--num_poses", "2", "--quality", "fast", "--no_video", "--no_report")  # fmt: skip


class Coach:
    """Answers the teachers' requests: batches as JSON quoting two numbers of each item,
    single requests as text. The first full batch of each provider is answered with broken
    JSON: batches run concurrently, so "the first to arrive" could be the short last one."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.lock = threading.Lock()  # the server answers requests on several threads

    def __call__(self, provider: str, body: dict) -> str:
        user = body["messages"][-1]["content"]
        try:
            items = json.loads(user)["items"]
        except (json.JSONDecodeError, TypeError, KeyError):
            return self.feedback(user, provider)
        with self.lock:
            breaks = provider not in self.broken and len(items) == BATCH
            if breaks:
                self.broken.add(provider)
        if breaks:
            return '{"answers": [{"id": "cut off'
        return json.dumps(
            {"answers": [{"id": i["id"], "feedback": self.feedback(i["measurements"], provider)} for i in items]}
        )

    @staticmethod
    def feedback(text: str, provider: str) -> str:
        found = re.findall(r"\d+(?:\.\d+)?", text)
        return f"({provider}) The segment starts at {found[1]} s and ends at {found[2]} s; keep the knees soft."


@pytest.fixture()
def server():
    with FakeLLMServer(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY, responder=Coach(), job_steps=2) as srv:
        yield srv


def _all_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


def test_missing_key_stops_before_any_video(tmp_path, sample_video):
    result = run_cli("--video", str(sample_video), *BASE_ARGS, "--use_claude", cwd=tmp_path,
                     env={"ANTHROPIC_API_KEY": None})  # fmt: skip
    assert result.returncode == 2
    assert "error: --use_claude needs ANTHROPIC_API_KEY: set it in .env or the environment" in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "out").exists()


def test_teachers_fine_tuning_cache_and_no_key_in_output(tmp_path, sample_video, server):
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={OPENAI_KEY}\nANTHROPIC_API_KEY={ANTHROPIC_KEY}\n")
    server.fail_next(CHAT, 429, times=1, retry_after_ms=20)
    server.fail_next(MESSAGES, 500, times=1, retry_after_ms=20)
    args = ("--video", str(sample_video), *BASE_ARGS, "--use_openai", "--use_claude", "--train_llm",
            "--llm_trainer", "openai", "--llm_base_url", server.openai_base_url, "--llm_poll_s", "0.01",
            "--llm_model", "gpt-4.1-mini", "--llm_model", "claude-haiku-4-5", "--llm_batch_size", str(BATCH), "--verbose")  # fmt: skip
    env = {"ANTHROPIC_BASE_URL": server.anthropic_base_url, "OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": None}
    first = run_cli(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    data = tmp_path / "data"
    rules = read_jsonl(video_files(data, "demo")[0])
    segments = read_jsonl(video_files(data, "demo")[1])
    for provider, api in (("openai", "openai"), ("claude", "anthropic")):
        teacher = read_jsonl(video_files(data, "demo", provider)[0])
        assert len(teacher) == len(rules)  # every example answered, after the fallback
        assert all(t["messages"][:2] == r["messages"][:2] for t, r in zip(teacher, rules))
        assert all(t["messages"][2]["content"].startswith(f"({api})") for t in teacher)
    # retries happened (429 then 500), and the broken batch fell back to single requests
    assert [r.status for r in server.requests if r.path == CHAT][:2] == [429, 200]
    assert [r.status for r in server.requests if r.path == MESSAGES][:2] == [500, 200]
    assert len(rules) > BATCH  # so a full batch exists to be broken
    batches = -(-len(rules) // BATCH)
    singles = BATCH
    assert server.count(CHAT) == 1 + batches + singles
    assert server.count(MESSAGES) == 1 + batches + singles
    assert "retried" in first.stdout and f"fell back to {BATCH} single requests" in first.stdout
    # the dataset holds all three sources, validated, and was fine-tuned
    report = validate_chat_jsonl(data / "train.jsonl", min_examples=10)
    assert report.ok and report.examples == 3 * len(rules) == 3 * len(segments)
    records = list((tmp_path / "trained").glob("openai-ftjob-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "succeeded" and record["fine_tuned_model"].startswith("ft:gpt-4.1-mini")
    assert record["train_examples"] == report.examples
    uploaded = [f for f in server.files.values() if f[1] == "fine-tune"]
    assert [f[2] for f in uploaded] == [(data / "train.jsonl").read_bytes()]  # val is empty: one video
    assert f"OpenAI fine-tuning job {record['job_id']}: succeeded" in first.stdout
    assert "Claude has no public fine-tuning API" in first.stdout + first.stderr
    card = json.loads((data / "dataset.json").read_text())
    assert set(card["synthetic"]) == {"openai:gpt-4.1-mini", "claude:claude-haiku-4-5"}
    assert card["synthetic"]["openai:gpt-4.1-mini"]["cost_usd_estimate"] > 0
    # the keys appear in no log line and no file the run wrote (the .env aside)
    (tmp_path / ".env").unlink()
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        assert key not in first.stdout + first.stderr
        assert key not in _all_text(tmp_path)
    # a second run pays nothing twice: every teacher answer comes from the cache
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={OPENAI_KEY}\nANTHROPIC_API_KEY={ANTHROPIC_KEY}\n")
    sent = (server.count(CHAT), server.count(MESSAGES))
    answers = {p: read_jsonl(video_files(data, "demo", p)[0]) for p in ("openai", "claude")}
    second = run_cli(*args, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (server.count(CHAT), server.count(MESSAGES)) == sent
    assert "0 requests" in second.stdout and "done " in second.stdout
    assert {p: read_jsonl(video_files(data, "demo", p)[0]) for p in ("openai", "claude")} == answers
    assert second.stdout.count(f"0 requests (0 retried, 0 failed), {batches + singles} from the cache") == 2


def test_training_without_the_extra_says_what_is_missing(tmp_path, sample_video):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['peft'] = None\n")
    result = run_cli("--video", str(sample_video), *BASE_ARGS, "--train_llm", cwd=tmp_path,
                     env={"PYTHONPATH": str(blocker)})  # fmt: skip
    assert result.returncode == 1
    assert "local training needs the training extra (pip install -r requirements-train.txt; missing: peft)" in (
        result.stderr
    )
    assert (
        "training skipped: local training needs the training extra (pip install -r requirements-train.txt; "
        "missing: peft); the dataset is written" in result.stdout
    )
    assert validate_chat_jsonl(tmp_path / "data" / "train.jsonl", min_examples=10).ok
    assert not (tmp_path / "trained").exists() or not any((tmp_path / "trained").iterdir())

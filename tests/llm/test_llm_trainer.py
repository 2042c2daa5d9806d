"""Local LoRA training: real training of the built-in tiny random model (no download, no mocks), reloading the
adapter, choosing the base model, and the errors a user sees (missing extra, bad data, unknown model)."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import LLMError
from pipeline.llm.trainer import (
    DEFAULT_BASE_MODEL,
    TINY_RANDOM,
    TRAIN_EXTRA,
    LocalTrainSettings,
    TrainRecord,
    load_adapter,
    missing_packages,
    require_extra,
    resolve_base_model,
    train_local,
)

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "You are a movement coach. Give short, concrete feedback that quotes the measurements."
SETTINGS = LocalTrainSettings(base_model=TINY_RANDOM, max_steps=40, learning_rate=5e-3, batch_size=4, seed=0)


def coach_example(rng: random.Random) -> dict:
    sport = rng.choice(["squat", "lunge", "deadlift", "push-up"])
    start, end = rng.uniform(0.3, 2.0), rng.uniform(3.0, 7.0)
    low, high = rng.randint(70, 110), rng.randint(150, 178)
    right_low, right_high = low + rng.randint(-6, 6), high + rng.randint(-6, 6)
    hip, trunk = rng.randint(40, 95), rng.randint(5, 35)
    user = (
        f"Sport: {sport}. Person 0, {start:.2f}-{end:.2f} s. Left knee {low}-{high} deg (range {high - low}). "
        f"Right knee {right_low}-{right_high} deg (range {right_high - right_low}). Hip flexion max {hip} deg. "
        f"Trunk lean max {trunk} deg."
    )
    answer = (
        f"Your left knee bends to {low} deg and straightens to {high} deg, a range of {high - low} deg; "
        f"the right knee reaches {right_low} deg, so the sides differ by {abs(right_low - low)} deg. "
        f"Hip flexion peaks at {hip} deg and the trunk leans up to {trunk} deg: "
        f"{'keep the chest up' if trunk > 20 else 'good upright trunk'} between {start:.2f} and {end:.2f} s."
    )
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    }


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def extra() -> None:
    for name in ("torch", "transformers", "peft", "accelerate"):
        pytest.importorskip(name)


@pytest.fixture(scope="module")
def data(tmp_path_factory, extra) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("chat")
    rng = random.Random(7)
    train = write_jsonl(folder / "train.jsonl", [coach_example(rng) for _ in range(14)])
    val = write_jsonl(folder / "val.jsonl", [coach_example(rng) for _ in range(3)])
    return train, val


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[TrainRecord, list[dict], Path]:
    train, val = data
    steps: list[dict] = []
    record = train_local(train, val, tmp_path_factory.mktemp("runs"), SETTINGS, progress=steps.append)
    return record, steps, Path(record.adapter_dir).parent


def test_training_lowers_the_loss(trained) -> None:
    record, _, _ = trained
    assert record.base_model == TINY_RANDOM
    assert record.base_model_source == "tiny-random"
    assert record.examples == 14
    assert record.val_examples == 3
    assert record.truncated_examples == 0
    assert record.steps == SETTINGS.max_steps
    assert record.epochs == pytest.approx(40 / 4)  # 14 examples in batches of 4: 4 steps an epoch
    assert 0 < record.trainable_parameters < record.total_parameters
    assert record.train_eval_loss_after < 0.9 * record.train_eval_loss_before
    assert record.last_loss < record.first_loss
    assert record.val_loss_before is not None
    assert record.val_loss_after is not None
    assert all(math.isfinite(value) for value in (record.val_loss_before, record.val_loss_after))


def test_run_folder_holds_log_record_adapter_and_base(trained) -> None:
    record, steps, run = trained
    assert re.fullmatch(r"local-\d{8}-\d{6}-[0-9a-f]{8}", run.name)
    assert sorted(path.name for path in run.parent.iterdir()) == [run.name]  # no temporary folder left behind
    assert json.loads((run / "record.json").read_text()) == record.to_dict()
    assert record.log_path == str(run / "training_log.jsonl")
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "base/config.json"):
        assert (run / name).is_file(), name
    assert any((run / "tokenizer").iterdir())

    lines = [json.loads(line) for line in Path(record.log_path).read_text().splitlines()]
    step_lines = [line for line in lines if line["type"] == "step"]
    assert [line["step"] for line in step_lines] == list(range(1, SETTINGS.max_steps + 1))
    assert all(math.isfinite(line["loss"]) and line["learning_rate"] > 0 for line in step_lines)
    assert step_lines == steps  # the progress callback saw every step line
    assert step_lines[0]["loss"] == record.first_loss
    assert step_lines[-1]["loss"] == record.last_loss
    evals = [line for line in lines if line["type"] == "eval"]
    assert [(line["step"], line["train_loss"]) for line in evals] == [
        (0, record.train_eval_loss_before),
        (SETTINGS.max_steps, record.train_eval_loss_after),
    ]


def test_reloaded_adapter_is_the_trained_model(trained, data) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.llm import trainer

    record, _, run = trained
    model, tokenizer = load_adapter(run)
    again, _ = load_adapter(run / "adapter")  # the adapter folder itself is accepted too
    bare = AutoModelForCausalLM.from_pretrained(run / "base", dtype=torch.float32)
    bare.eval()

    # The reloaded model scores the training set exactly as the in-memory model did right after training, and the
    # bare base model scores it as the untrained one did: the adapter weights were saved and are applied.
    conversations = trainer.read_chat_jsonl(data[0])
    examples, _, _ = trainer.encode_conversations(tokenizer, conversations, SETTINGS.max_length)
    pad_id = tokenizer.pad_token_id
    assert trainer.mean_loss(model, examples, pad_id, 4) == pytest.approx(record.train_eval_loss_after, rel=1e-5)
    assert trainer.mean_loss(bare, examples, pad_id, 4) == pytest.approx(record.train_eval_loss_before, rel=1e-5)

    prompt = tokenizer.apply_chat_template(conversations[0][:-1], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**inputs).logits
        logits_again = again(**inputs).logits
        logits_bare = bare(**inputs).logits
    assert torch.allclose(logits, logits_again)
    assert not torch.allclose(logits, logits_bare, atol=1e-3)


def test_training_is_deterministic(trained, data, tmp_path) -> None:
    record, _, _ = trained
    again = train_local(data[0], data[1], tmp_path, SETTINGS)
    assert again.first_loss == pytest.approx(record.first_loss, rel=1e-6)
    assert again.last_loss == pytest.approx(record.last_loss, rel=1e-6)
    assert again.train_eval_loss_after == pytest.approx(record.train_eval_loss_after, rel=1e-6)


def test_long_examples_are_truncated_and_counted(data, tmp_path) -> None:
    settings = LocalTrainSettings(base_model=TINY_RANDOM, max_steps=2, max_length=100)
    record = train_local(data[0], None, tmp_path, settings)
    assert record.truncated_examples == record.examples == 14
    assert record.val_examples == 0
    assert record.val_loss_before is None
    data_line = json.loads(Path(record.log_path).read_text().splitlines()[0])
    assert (data_line["type"], data_line["truncated_examples"], data_line["dropped_examples"]) == ("data", 14, 0)

    too_short = LocalTrainSettings(base_model=TINY_RANDOM, max_steps=2, max_length=16)
    with pytest.raises(LLMError, match="raise max_length"):
        train_local(data[0], None, tmp_path, too_short)
    assert [path.name for path in tmp_path.iterdir()] == [Path(record.adapter_dir).parent.name]


@pytest.fixture
def no_network(monkeypatch) -> list[tuple]:
    """Records (and refuses) every host name look-up: loading a local or cached model must not touch the network."""
    import socket

    lookups: list[tuple] = []

    def refuse(*args, **kwargs):
        lookups.append(args[:2])
        raise OSError("network use in a test that must stay offline")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return lookups


def save_tiny_model(data: tuple[Path, Path], folder: Path) -> Path:
    """A small model saved like any Hugging Face model folder (config, weights, tokenizer with a chat template)."""
    from pipeline.llm.trainer import build_tiny_random

    texts = [
        message["content"] for line in data[0].read_text().splitlines() for message in json.loads(line)["messages"]
    ]
    model, tokenizer = build_tiny_random(texts, seed=3)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_model_folder_trains_and_reloads(data, tmp_path, no_network) -> None:
    folder = save_tiny_model(data, tmp_path / "my-model")
    settings = LocalTrainSettings(base_model=str(folder), max_steps=3, learning_rate=5e-3)
    record = train_local(data[0], None, tmp_path / "runs", settings)
    run = Path(record.adapter_dir).parent
    assert (record.base_model, record.base_model_source, record.base_model_note) == (str(folder), "path", None)
    assert not (run / "base").exists()  # the folder is the base; only the tiny random model is copied
    model, tokenizer = load_adapter(run)
    assert model(**tokenizer("Left knee 92-171 deg", return_tensors="pt")).logits.shape[-1] == len(tokenizer)
    assert no_network == []


def test_auto_takes_the_default_model_from_the_cache(data, monkeypatch, tmp_path, no_network) -> None:
    # A hub cache laid out as huggingface_hub writes it, holding a small model under the default model's name.
    repo = tmp_path / "hf" / "hub" / ("models--" + DEFAULT_BASE_MODEL.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    save_tiny_model(data, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert resolve_base_model("auto") == (DEFAULT_BASE_MODEL, "cache", None)
    assert resolve_base_model(DEFAULT_BASE_MODEL) == (DEFAULT_BASE_MODEL, "cache", None)
    record = train_local(data[0], None, tmp_path / "runs", LocalTrainSettings(max_steps=2))
    assert (record.base_model, record.base_model_source) == (DEFAULT_BASE_MODEL, "cache")
    model, _ = load_adapter(record.adapter_dir)
    assert model.peft_config["default"].r == 8
    assert no_network == []


def test_a_line_without_an_assistant_turn_names_file_and_line(extra, tmp_path) -> None:
    good = coach_example(random.Random(1))
    bad = {"messages": good["messages"][:2]}
    path = write_jsonl(tmp_path / "train.jsonl", [good, bad, good])
    with pytest.raises(LLMError, match=re.escape(f"{path}:2: no assistant turn")):
        train_local(path, None, tmp_path / "runs", SETTINGS)
    assert not (tmp_path / "runs").exists()


def test_auto_takes_tiny_random_without_the_default_model_cached(monkeypatch, tmp_path) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    name, source, note = resolve_base_model("auto")
    assert (name, source) == (TINY_RANDOM, "tiny-random")
    assert note == (
        f"{DEFAULT_BASE_MODEL} is not in the local Hugging Face cache, so the built-in tiny random model was trained: "
        "it checks the setup but cannot give feedback; pass --llm_base_model PATH_OR_NAME"
    )
    assert resolve_base_model(TINY_RANDOM) == (TINY_RANDOM, "tiny-random", None)


def test_explicit_folders_must_exist_and_hold_a_config(tmp_path) -> None:
    with pytest.raises(LLMError, match="does not exist"):
        resolve_base_model(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LLMError, match="holds no config.json"):
        resolve_base_model(str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text("{}")
    assert resolve_base_model(str(tmp_path / "empty")) == (str((tmp_path / "empty").resolve()), "path", None)


def test_an_unknown_name_offline_is_an_error_naming_it(monkeypatch, tmp_path) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LLMError, match="no-such-org/no-such-model"):
        resolve_base_model("no-such-org/no-such-model")


def test_the_missing_extra_is_named_with_the_install_command() -> None:
    code = (
        "import sys; sys.modules['peft'] = None\n"
        "from pipeline.errors import LLMError\n"
        "from pipeline.llm.trainer import missing_packages, require_extra\n"
        "print(missing_packages())\n"
        "try:\n"
        "    require_extra()\n"
        "except LLMError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed, message = result.stdout.splitlines()
    assert "'peft'" in listed
    assert message.startswith(f"local training needs the training extra: pip install -r {TRAIN_EXTRA} (missing: ")
    assert "peft" in message.split("(missing: ")[1]
    assert "\n" not in message


def test_the_extra_is_pinned_in_the_requirements_file(extra) -> None:
    pins = dict(
        line.split("==")
        for line in (REPO / TRAIN_EXTRA).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(pins) == {"torch", "transformers", "peft", "accelerate"}
    assert missing_packages() == []
    require_extra()

"""The fake LLM server, driven by the real openai and anthropic SDKs over real HTTP."""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from llm_server import FakeLLMServer

GOOD_EXAMPLE = {
    "messages": [
        {"role": "system", "content": "You describe squats."},
        {"role": "user", "content": "knee angle 92 degrees"},
        {"role": "assistant", "content": "Deep squat."},
    ]
}
FT_MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def openai_client(server: FakeLLMServer, max_retries: int = 0, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=api_key or server.openai_key, base_url=server.openai_base_url, max_retries=max_retries, timeout=10
    )


def anthropic_client(server: FakeLLMServer, max_retries: int = 0, api_key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=api_key or server.anthropic_key, base_url=server.anthropic_base_url, max_retries=max_retries, timeout=10
    )


def raw_request(
    server: FakeLLMServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def ask_openai(client: openai.OpenAI) -> str | None:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return reply.choices[0].message.content


def ask_anthropic(client: anthropic.Anthropic) -> str:
    reply = client.messages.create(model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    return reply.content[0].text


# -- chat round trips ------------------------------------------------------------------------------


def test_chat_completion_round_trip(server: FakeLLMServer) -> None:
    seen: list[tuple[str, dict]] = []

    def responder(provider: str, body: dict) -> str:
        seen.append((provider, body))
        return "answer: " + body["messages"][-1]["content"]

    server.responder = responder
    with openai_client(server) as client:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hello world"}],
            temperature=0.2,
            response_format={"type": "json_object"},
        )
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-4o-mini"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "answer: hello world"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == math.ceil(len("Be terse.hello world") / 4)
    assert reply.usage.completion_tokens == math.ceil(len("answer: hello world") / 4)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert [provider for provider, _ in seen] == ["openai"]
    assert seen[0][1]["temperature"] == 0.2
    assert seen[0][1]["response_format"] == {"type": "json_object"}
    [record] = server.requests
    assert (record.method, record.path, record.provider, record.status) == (
        "POST",
        "/v1/chat/completions",
        "openai",
        200,
    )
    assert record.headers["authorization"] == f"Bearer {server.openai_key}"
    assert record.body == seen[0][1]
    assert server.count("/v1/chat/completions") == 1


def test_anthropic_message_round_trip(server: FakeLLMServer) -> None:
    seen: list[tuple[str, dict]] = []

    def responder(provider: str, body: dict) -> str:
        seen.append((provider, body))
        return f"{body['model']} says hi"

    server.responder = responder
    with anthropic_client(server) as client:
        reply = client.messages.create(
            model="claude-test",
            max_tokens=64,
            system=[{"type": "text", "text": "You coach squats."}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "How deep?"}]}],
        )
    assert reply.type == "message"
    assert reply.role == "assistant"
    assert reply.model == "claude-test"
    assert reply.id.startswith("msg_")
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].text == "claude-test says hi"
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens == math.ceil(len("You coach squats.How deep?") / 4)
    assert reply.usage.output_tokens == math.ceil(len("claude-test says hi") / 4)
    assert [provider for provider, _ in seen] == ["anthropic"]
    assert seen[0][1]["max_tokens"] == 64
    [record] = server.requests
    assert (record.path, record.provider, record.status) == ("/v1/messages", "anthropic", 200)
    assert "anthropic-version" in record.headers
    assert server.count("/v1/messages") == 1


def test_default_responder_and_x_api_key_header(server: FakeLLMServer) -> None:
    body = json.dumps({"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    status, headers, payload = raw_request(
        server, "POST", "/v1/messages", body.encode(), {"x-api-key": server.anthropic_key}
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(payload)["content"] == [{"type": "text", "text": "ok"}]


# -- authentication and malformed requests ---------------------------------------------------------


def test_wrong_openai_key_is_authentication_error(server: FakeLLMServer) -> None:
    with openai_client(server, api_key="sk-wrong") as client, pytest.raises(openai.AuthenticationError) as caught:
        ask_openai(client)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert [r.status for r in server.requests] == [401]


def test_wrong_anthropic_key_is_authentication_error(server: FakeLLMServer) -> None:
    with anthropic_client(server, api_key="sk-ant-wrong") as client, pytest.raises(anthropic.AuthenticationError) as e:
        ask_anthropic(client)
    assert e.value.status_code == 401
    assert e.value.type == "authentication_error"
    assert e.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}


def test_openai_key_does_not_open_anthropic(server: FakeLLMServer) -> None:
    with anthropic_client(server, api_key=server.openai_key) as client, pytest.raises(anthropic.AuthenticationError):
        ask_anthropic(client)


def test_malformed_json_and_unknown_paths(server: FakeLLMServer) -> None:
    auth = {"authorization": f"Bearer {server.openai_key}", "content-type": "application/json"}
    status, _, payload = raw_request(server, "POST", "/v1/chat/completions", b"{not json", auth)
    assert status == 400
    assert json.loads(payload)["error"]["type"] == "invalid_request_error"
    assert server.requests[-1].body == b"{not json"

    status, _, payload = raw_request(server, "GET", "/v1/nope", None, auth)
    assert status == 404
    assert set(json.loads(payload)["error"]) == {"message", "type", "param", "code"}

    status, _, payload = raw_request(server, "POST", "/v1/messages/nope", b"{}", {"x-api-key": server.anthropic_key})
    assert status == 404
    assert json.loads(payload)["error"]["type"] == "not_found_error"

    status, _, payload = raw_request(server, "POST", "/v1/messages", b"[1, 2", {"x-api-key": server.anthropic_key})
    assert status == 400
    assert json.loads(payload) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "We could not parse the JSON body of your request."},
    }
    assert [r.status for r in server.requests] == [400, 404, 404, 400]


# -- faults and the SDKs' retries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)
def test_openai_fault_then_retry(server: FakeLLMServer, status: int, error: type[openai.APIStatusError]) -> None:
    server.fail_next("/v1/chat/completions", status, retry_after_ms=10)
    with openai_client(server, max_retries=0) as client, pytest.raises(error) as caught:
        ask_openai(client)
    assert caught.value.status_code == status
    assert caught.value.response.headers["retry-after-ms"] == "10"
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.type == ("requests" if status == 429 else "server_error")

    server.reset()
    server.fail_next("/v1/chat/completions", status)
    with openai_client(server, max_retries=2) as client:
        assert ask_openai(client) == "ok"
    assert server.count("/v1/chat/completions") == 2
    assert [r.status for r in server.requests] == [status, 200]
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
    ],
)
def test_anthropic_fault_then_retry(
    server: FakeLLMServer, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    server.fail_next("/v1/messages", status, message="try later")
    with anthropic_client(server, max_retries=0) as client, pytest.raises(error) as caught:
        ask_anthropic(client)
    assert caught.value.status_code == status
    assert caught.value.type == kind
    assert caught.value.api_message == "try later"
    assert caught.value.response.headers["retry-after-ms"] == "10"
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.request_id is not None

    server.reset()
    server.fail_next("/v1/messages", status)
    with anthropic_client(server, max_retries=2) as client:
        assert ask_anthropic(client) == "ok"
    assert server.count("/v1/messages") == 2
    assert [r.status for r in server.requests] == [status, 200]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_sdks_wait_retry_after_ms(server: FakeLLMServer, provider: str) -> None:
    path = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    server.fail_next(path, 429, retry_after_ms=700)  # longer than the SDKs' first backoff (at most 0.5 s)
    started = time.monotonic()
    with openai_client(server, max_retries=1) as oai, anthropic_client(server, max_retries=1) as claude:
        answer = ask_openai(oai) if provider == "openai" else ask_anthropic(claude)
    assert answer == "ok"
    assert time.monotonic() - started >= 0.7
    assert server.count(path) == 2


def test_retries_run_out(server: FakeLLMServer) -> None:
    server.fail_next("/v1/chat/completions", 429, times=3, retry_after_ms=1)
    with openai_client(server, max_retries=2) as client, pytest.raises(openai.RateLimitError):
        ask_openai(client)
    assert server.count("/v1/chat/completions") == 3
    with openai_client(server, max_retries=0) as client:
        assert ask_openai(client) == "ok"


def test_fault_without_retry_after_has_no_headers(server: FakeLLMServer) -> None:
    server.fail_next("/v1/messages", 500, retry_after_ms=None)
    with anthropic_client(server) as client, pytest.raises(anthropic.InternalServerError) as caught:
        ask_anthropic(client)
    assert "retry-after" not in caught.value.response.headers
    assert "retry-after-ms" not in caught.value.response.headers


def test_faults_are_per_path(server: FakeLLMServer) -> None:
    server.fail_next("/v1/messages", 529)
    with openai_client(server) as client:
        assert ask_openai(client) == "ok"
    with anthropic_client(server) as client, pytest.raises(anthropic.OverloadedError):
        ask_anthropic(client)
    assert server.count("/v1/chat/completions") == 1
    assert server.count("/v1/messages") == 1


# -- files and fine-tuning -------------------------------------------------------------------------


def test_file_upload_and_fine_tuning_job_succeeds(server: FakeLLMServer) -> None:
    content = jsonl(GOOD_EXAMPLE, GOOD_EXAMPLE) + b"\n"
    with openai_client(server) as client:
        uploaded = client.files.create(file=("train.jsonl", content), purpose="fine-tune")
        assert uploaded.id.startswith("file-")
        assert (uploaded.filename, uploaded.purpose, uploaded.bytes) == ("train.jsonl", "fine-tune", len(content))
        assert uploaded.status == "processed"
        assert server.files[uploaded.id] == ("train.jsonl", "fine-tune", content)
        assert client.files.retrieve(uploaded.id).id == uploaded.id
        assert client.files.content(uploaded.id).content == content

        job = client.fine_tuning.jobs.create(training_file=uploaded.id, model=FT_MODEL, suffix="pose")
        assert job.id.startswith("ftjob-")
        assert job.status == "validating_files"
        assert (job.model, job.training_file, job.fine_tuned_model) == (FT_MODEL, uploaded.id, None)
        assert job.hyperparameters.n_epochs == "auto"
        statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(server.job_steps)]
        assert statuses == ["queued", "running", "succeeded"]
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded"
        assert done.fine_tuned_model == f"ft:{FT_MODEL}:fake-org:pose:{job.id[-8:]}"
        assert done.finished_at is not None
        assert done.trained_tokens is not None and done.trained_tokens > 0
        assert done.error is None

        events = client.fine_tuning.jobs.list_events(job.id)
        assert len(events.data) == 4
        assert events.has_more is False
        assert events.data[0].message == f"New fine-tuned model created: {done.fine_tuned_model}"
        assert events.data[-1].message == f"Created fine-tuning job: {job.id}"
        assert {event.level for event in events.data} == {"info"}
        first_two = client.fine_tuning.jobs.list_events(job.id, limit=2)
        assert [e.id for e in first_two.data] == [e.id for e in events.data[:2]]
        assert first_two.has_more is True
        assert [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=2)] == [e.id for e in events.data]

    multipart = server.requests[0]
    assert multipart.path == "/v1/files"
    assert multipart.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert isinstance(multipart.body, bytes)


def test_upload_from_open_file_and_chunked_body(server: FakeLLMServer, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(GOOD_EXAMPLE) + b"\r\n--not-a-boundary\r\n\x00\xff")
    with openai_client(server) as client, path.open("rb") as fh:
        uploaded = client.files.create(file=(path.name, fh), purpose="fine-tune")
    assert server.files[uploaded.id] == ("train.jsonl", "fine-tune", path.read_bytes())

    connection = http.client.HTTPConnection(*server.address, timeout=5)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "chunked"}]}).encode()
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=iter([body[:10], body[10:]]),
        headers={"authorization": f"Bearer {server.openai_key}", "content-type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["choices"][0]["message"]["content"] == "ok"
    connection.close()
    assert server.requests[-1].body == json.loads(body)


def test_hyperparameters_and_seed_are_echoed(server: FakeLLMServer) -> None:
    with openai_client(server) as client:
        uploaded = client.files.create(file=("t.jsonl", jsonl(GOOD_EXAMPLE)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            training_file=uploaded.id,
            model=FT_MODEL,
            seed=7,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        )
    assert job.seed == 7
    assert job.hyperparameters.n_epochs == 2
    assert job.hyperparameters.batch_size == "auto"
    assert job.method is not None and job.method.type == "supervised"
    assert server.jobs[job.id]["suffix"] is None


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        ([GOOD_EXAMPLE, {"messages": [{"role": "user", "content": "no answer"}]}], 2),
        ([{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}], 1),
        ([GOOD_EXAMPLE, GOOD_EXAMPLE, {"messages": [{"role": "assistant", "content": 3}]}], 3),
        ([{"prompt": "old format", "completion": "x"}], 1),
    ],
)
def test_invalid_training_file_fails_the_job(server: FakeLLMServer, rows: list[dict], line: int) -> None:
    with openai_client(server) as client:
        uploaded = client.files.create(file=("bad.jsonl", jsonl(*rows)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(training_file=uploaded.id, model=FT_MODEL)
        assert job.status == "validating_files"
        failed = client.fine_tuning.jobs.retrieve(job.id)
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.code == "invalid_training_file"
        assert failed.error.param == "training_file"
        assert f"Line {line}" in failed.error.message
        assert failed.fine_tuned_model is None
        assert client.fine_tuning.jobs.retrieve(job.id).status == "failed"
        events = client.fine_tuning.jobs.list_events(job.id).data
        assert events[0].level == "error"


def test_not_json_line_fails_the_job(server: FakeLLMServer) -> None:
    with openai_client(server) as client:
        uploaded = client.files.create(file=("bad.jsonl", jsonl(GOOD_EXAMPLE) + b"{oops\n"), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(training_file=uploaded.id, model=FT_MODEL)
        failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.message == "Line 2: not valid JSON."


def test_unknown_training_file_is_bad_request(server: FakeLLMServer) -> None:
    with openai_client(server) as client, pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(training_file="file-missing", model=FT_MODEL)
    assert caught.value.param == "training_file"
    assert "file-missing" in caught.value.message
    assert server.jobs == {}


def test_unknown_job_and_file_are_not_found(server: FakeLLMServer) -> None:
    with openai_client(server) as client:
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve("ftjob-missing")
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve("file-missing")


def test_cancel_job(server: FakeLLMServer) -> None:
    with openai_client(server) as client:
        uploaded = client.files.create(file=("t.jsonl", jsonl(GOOD_EXAMPLE)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(training_file=uploaded.id, model=FT_MODEL)
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
        assert client.fine_tuning.jobs.list_events(job.id).data[0].message == "Fine-tuning job cancelled"
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.cancel(job.id)


def test_job_steps_spreads_progress(server: FakeLLMServer) -> None:
    server.job_steps = 6
    with openai_client(server) as client:
        uploaded = client.files.create(file=("t.jsonl", jsonl(GOOD_EXAMPLE)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(training_file=uploaded.id, model=FT_MODEL)
        statuses = [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(7)]
    assert statuses == ["validating_files", "queued", "queued", "running", "running", "succeeded", "succeeded"]


# -- the socket ------------------------------------------------------------------------------------


def test_listens_only_on_loopback(server: FakeLLMServer) -> None:
    host, port = server.address
    assert host == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{port}"
    assert server.openai_base_url == server.url + "/v1"
    assert server.anthropic_base_url == server.url
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=1):
        pass


def test_stop_closes_keep_alive_connections() -> None:
    server = FakeLLMServer().start()
    client = openai_client(server)
    assert ask_openai(client) == "ok"  # leaves a keep-alive connection open
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(openai.APIConnectionError):
        ask_openai(client)
    client.close()


def test_subprocess_reaches_the_server(server: FakeLLMServer) -> None:
    server.responder = lambda provider, body: f"{provider}:{body['model']}"
    code = (
        "import openai\n"
        "client = openai.OpenAI(max_retries=0)\n"
        "reply = client.chat.completions.create(model='m1', messages=[{'role': 'user', 'content': 'x'}])\n"
        "print(reply.choices[0].message.content)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **server.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "openai:m1"
    assert server.count("/v1/chat/completions") == 1

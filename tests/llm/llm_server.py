"""A local fake of the parts of the OpenAI and Anthropic REST APIs the pipeline uses.

Standard library only. It listens on 127.0.0.1 (an ephemeral port) in a daemon thread, so the real
``openai`` and ``anthropic`` SDKs can talk to it over real HTTP, from the test process or from a
subprocess (see :meth:`FakeLLMServer.env`).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPENAI = "openai"
ANTHROPIC = "anthropic"

Responder = Callable[[str, dict], str]

PIPELINE = ("validating_files", "queued", "running", "succeeded")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ROLES = frozenset({"system", "user", "assistant"})
DEFAULT_HYPERPARAMETERS = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
METHOD_TYPES = frozenset({"supervised", "dpo", "reinforcement"})

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def default_responder(provider: str, body: dict) -> str:
    """The default answer: always ``"ok"``."""
    return "ok"


@dataclass
class Recorded:
    """One request the server received (``status`` is 0 while it is being answered)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict | bytes | None
    provider: str
    status: int
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    retry_after_ms: int | None
    message: str | None


@dataclass
class _Reply:
    status: int
    payload: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _JobState:
    validation_error: dict[str, Any] | None
    tokens: int
    retrieves: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _text(value: object) -> str:
    """The text in a message ``content`` (a string, or lists/blocks holding ``text``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text(item) for item in value)
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            return value["text"]
        return _text(value.get("content"))
    return ""


def _header_params(name: str, value: str) -> Message:
    message = Message()
    message[name] = value
    return message


def _parse_multipart(raw: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """``{field name: (filename or None, bytes)}`` from a multipart/form-data body (byte exact)."""
    boundary = _header_params("content-type", content_type).get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise _HTTPError(400, "multipart/form-data body without a boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    segments = (b"\r\n" + raw).split(b"\r\n--" + boundary.encode("latin-1"))
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            break
        head, sep, content = segment.partition(b"\r\n\r\n")
        if not sep:
            raise _HTTPError(400, "malformed multipart/form-data part")
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        params = _header_params("content-disposition", disposition)
        name = params.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (params.get_filename(), content)
    return fields


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections must not hold up stop()

    def __init__(self, fake: FakeLLMServer) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small header and body writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: no per-request logging."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(_Reply(400, b'{"error": {"message": "unreadable request body"}}'))
            return
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        self._send(self.server.fake._dispatch(self.command, split.path, query, headers, raw))

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle


class FakeLLMServer:
    """OpenAI (chat, files, fine-tuning) and Anthropic (messages) over HTTP on 127.0.0.1."""

    def __init__(
        self,
        openai_key: str = "sk-test-openai-0123456789",
        anthropic_key: str = "sk-ant-test-0123456789",
        responder: Responder | None = None,
        job_steps: int = 3,
    ) -> None:
        if job_steps < 1:
            raise ValueError("job_steps must be at least 1")
        self.openai_key = openai_key
        self.anthropic_key = anthropic_key
        self.responder: Responder = responder or default_responder
        self.job_steps = job_steps
        self.requests: list[Recorded] = []
        self.files: dict[str, tuple[str, str, bytes]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._file_created: dict[str, int] = {}
        self._job_state: dict[str, _JobState] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._lock = threading.RLock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Start serving (no-op when already serving)."""
        if self._httpd is None:
            self._httpd = _Server(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and join the server thread."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def env(self) -> dict[str, str]:
        """Environment variables that point both SDKs (e.g. in a subprocess) at this server."""
        return {
            "OPENAI_API_KEY": self.openai_key,
            "OPENAI_BASE_URL": self.openai_base_url,
            "ANTHROPIC_API_KEY": self.anthropic_key,
            "ANTHROPIC_BASE_URL": self.anthropic_base_url,
        }

    # -- test controls ---------------------------------------------------------------------------

    def fail_next(
        self, path: str, status: int, times: int = 1, retry_after_ms: int | None = 10, message: str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``path`` (any method) with ``status``."""
        if status < 400:
            raise ValueError("fail_next needs an error status (>= 400)")
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            queue.extend(_Fault(status, retry_after_ms, message) for _ in range(times))

    def count(self, path: str, method: str = "POST") -> int:
        """How many requests (failed ones included) came for ``method path``."""
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and r.method == method.upper())

    def reset(self) -> None:
        """Forget recorded requests and pending faults (files and jobs stay)."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes) -> _Reply:
        provider = ANTHROPIC if path == "/v1/messages" or path.startswith("/v1/messages/") else OPENAI
        body: dict | bytes | None = raw or None
        content_type = headers.get("content-type", "")
        json_error = False
        if raw and not content_type.startswith("multipart/form-data"):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body = parsed
            else:
                json_error = True
        record = Recorded(method, path, headers, body, provider, 0, query)
        with self._lock:
            self.requests.append(record)
            queue = self._faults.get(path)
            fault = queue.popleft() if queue else None
        if fault is not None:
            reply = self._fault_reply(provider, fault)
        else:
            try:
                if not path.startswith("/v1/"):
                    raise _HTTPError(404, f"Invalid URL ({method} {path})")
                self._authenticate(provider, headers)
                if json_error:
                    raise _HTTPError(400, "We could not parse the JSON body of your request.")
                if provider == ANTHROPIC:
                    reply = self._route_anthropic(method, path, body)
                else:
                    reply = self._route_openai(method, path, query, content_type, body, raw)
            except _HTTPError as err:
                reply = self._error_reply(provider, err)
            except Exception as err:  # noqa: BLE001 - the client must get a 500, not a dropped connection
                reply = self._error_reply(provider, _HTTPError(500, f"fake server error: {err!r}"))
        request_id = "req_" + secrets.token_hex(12)
        reply.headers.setdefault("request-id" if provider == ANTHROPIC else "x-request-id", request_id)
        record.status = reply.status
        return reply

    def _authenticate(self, provider: str, headers: dict[str, str]) -> None:
        if provider == ANTHROPIC:
            # The anthropic SDK sends ``Authorization: Bearer <api_key>``; the HTTP API also takes ``x-api-key``.
            key = self.anthropic_key
            if headers.get("x-api-key") == key or headers.get("authorization") == f"Bearer {key}":
                return
            raise _HTTPError(401, "invalid x-api-key")
        if headers.get("authorization") != f"Bearer {self.openai_key}":
            raise _HTTPError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _route_openai(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: dict | bytes | None, raw: bytes
    ) -> _Reply:
        parts = path.strip("/").split("/")[1:]
        if method == "POST" and parts == ["chat", "completions"]:
            return _json(self._chat_completion(_require_object(body)))
        if parts[:1] == ["files"]:
            if method == "POST" and len(parts) == 1:
                return _json(self._create_file(content_type, raw))
            if method == "GET" and len(parts) == 1:
                with self._lock:
                    data = [self._file_object(file_id) for file_id in self.files]
                return _json({"object": "list", "data": data, "has_more": False})
            if len(parts) >= 2:
                file_id = parts[1]
                with self._lock:
                    if file_id not in self.files:
                        raise _HTTPError(404, f"No such File object: {file_id}", param="id")
                    if method == "GET" and len(parts) == 2:
                        return _json(self._file_object(file_id))
                    if method == "GET" and parts[2:] == ["content"]:
                        return _Reply(200, self.files[file_id][2], "application/octet-stream")
                    if method == "DELETE" and len(parts) == 2:
                        del self.files[file_id]
                        return _json({"id": file_id, "object": "file", "deleted": True})
        if parts[:2] == ["fine_tuning", "jobs"]:
            if method == "POST" and len(parts) == 2:
                return _json(self._create_job(_require_object(body)))
            if method == "GET" and len(parts) == 2:
                with self._lock:
                    jobs = [dict(job) for job in reversed(self.jobs.values())]
                return _json(_page(jobs, query))
            if len(parts) >= 3:
                job_id = parts[2]
                with self._lock:
                    if job_id not in self.jobs:
                        raise _HTTPError(404, f"Could not find fine-tune job: {job_id}", param="fine_tune_id")
                    if method == "GET" and len(parts) == 3:
                        self._advance(job_id)
                        return _json(dict(self.jobs[job_id]))
                    if method == "GET" and parts[3:] == ["events"]:
                        return _json(_page(list(reversed(self._job_state[job_id].events)), query))
                    if method == "POST" and parts[3:] == ["cancel"]:
                        return _json(self._cancel(job_id))
        raise _HTTPError(404, f"Invalid URL ({method} {path})")

    def _route_anthropic(self, method: str, path: str, body: dict | bytes | None) -> _Reply:
        if method == "POST" and path == "/v1/messages":
            return _json(self._message(_require_object(body)))
        raise _HTTPError(404, f"Not found: {method} {path}")

    # -- chat ------------------------------------------------------------------------------------

    def _answer(self, provider: str, body: dict) -> str:
        text = self.responder(provider, body)
        if not isinstance(text, str):
            raise TypeError(f"responder returned {type(text).__name__}, not str")
        return text

    def _chat_completion(self, body: dict) -> dict[str, Any]:
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "'messages' must be a non-empty array", param="messages")
        text = self._answer(OPENAI, body)
        prompt = _tokens(sum(len(_text(m.get("content"))) for m in messages if isinstance(m, dict)))
        completion = _tokens(len(text))
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            "system_fingerprint": None,
        }

    def _message(self, body: dict) -> dict[str, Any]:
        model, messages, max_tokens = body.get("model"), body.get("messages"), body.get("max_tokens")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "model: Field required")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "messages: Field required")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise _HTTPError(400, "max_tokens: Field required")
        text = self._answer(ANTHROPIC, body)
        chars = len(_text(body.get("system"))) + sum(
            len(_text(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        return {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": _tokens(chars), "output_tokens": _tokens(len(text))},
        }

    # -- files -----------------------------------------------------------------------------------

    def _create_file(self, content_type: str, raw: bytes) -> dict[str, Any]:
        if not content_type.startswith("multipart/form-data"):
            raise _HTTPError(400, "Expected a multipart/form-data body")
        fields = _parse_multipart(raw, content_type)
        upload = fields.get("file")
        if upload is None or upload[0] is None:
            raise _HTTPError(400, "'file' is a required property", param="file")
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if not purpose:
            raise _HTTPError(400, "'purpose' is a required property", param="purpose")
        file_id = "file-" + secrets.token_hex(12)
        with self._lock:
            self.files[file_id] = (upload[0], purpose, upload[1])
            self._file_created[file_id] = int(time.time())
            return self._file_object(file_id)

    def _file_object(self, file_id: str) -> dict[str, Any]:
        filename, purpose, content = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": self._file_created[file_id],
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }

    # -- fine-tuning -----------------------------------------------------------------------------

    def _create_job(self, body: dict) -> dict[str, Any]:
        model, training_file = body.get("model"), body.get("training_file")
        validation_file, suffix = body.get("validation_file"), body.get("suffix")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "Missing required parameter: 'model'.", param="model")
        if not isinstance(training_file, str) or not training_file:
            raise _HTTPError(400, "Missing required parameter: 'training_file'.", param="training_file")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            raise _HTTPError(400, "suffix must be a string of at most 64 characters", param="suffix")
        method = body.get("method")
        method_type = method.get("type", "supervised") if isinstance(method, dict) else "supervised"
        if method_type not in METHOD_TYPES:
            raise _HTTPError(400, f"Invalid method type: {method_type!r}", param="method")
        hyperparameters = dict(DEFAULT_HYPERPARAMETERS)
        if isinstance(body.get("hyperparameters"), dict):
            hyperparameters.update(body["hyperparameters"])
        sent_method = method.get(method_type) if isinstance(method, dict) else None
        if isinstance(sent_method, dict) and isinstance(sent_method.get("hyperparameters"), dict):
            hyperparameters.update(sent_method["hyperparameters"])
        seed = body.get("seed")
        with self._lock:
            for param, file_id in (("training_file", training_file), ("validation_file", validation_file)):
                if file_id is None:
                    continue
                if file_id not in self.files:
                    raise _HTTPError(400, f"invalid {param}: {file_id}", param=param)
                if self.files[file_id][1] != "fine-tune":
                    raise _HTTPError(400, f"File {file_id} was not uploaded with purpose 'fine-tune'.", param=param)
            validation_error, tokens = _validate_training_file(self.files[training_file][2])
            job_id = "ftjob-" + secrets.token_hex(12)
            now = int(time.time())
            self.jobs[job_id] = {
                "id": job_id,
                "object": "fine_tuning.job",
                "created_at": now,
                "model": model,
                "training_file": training_file,
                "validation_file": validation_file,
                "status": "validating_files",
                "fine_tuned_model": None,
                "finished_at": None,
                "hyperparameters": hyperparameters,
                "organization_id": "org-fake",
                "result_files": [],
                "seed": seed if isinstance(seed, int) else 0,
                "trained_tokens": None,
                "error": None,
                "suffix": suffix,
                "estimated_finish": None,
                "integrations": body.get("integrations"),
                "metadata": body.get("metadata"),
                "method": {
                    "type": method_type,
                    method_type: {**(sent_method or {}), "hyperparameters": hyperparameters},
                },
            }
            self._job_state[job_id] = _JobState(validation_error, tokens)
            self._event(job_id, f"Created fine-tuning job: {job_id}")
            return dict(self.jobs[job_id])

    def _event(self, job_id: str, message: str, level: str = "info") -> None:
        self._job_state[job_id].events.append(
            {
                "id": "ftevent-" + secrets.token_hex(12),
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "type": "message",
                "data": None,
            }
        )

    def _advance(self, job_id: str) -> None:
        """One retrieve's worth of progress (called under the lock)."""
        job, state = self.jobs[job_id], self._job_state[job_id]
        if job["status"] in TERMINAL:
            return
        state.retrieves += 1
        if state.validation_error is not None:
            job.update(status="failed", error=state.validation_error, finished_at=int(time.time()))
            self._event(job_id, f"Training file validation failed: {state.validation_error['message']}", "error")
            return
        last = len(PIPELINE) - 1
        target = last if state.retrieves >= self.job_steps else state.retrieves * last // self.job_steps
        for status in PIPELINE[PIPELINE.index(job["status"]) + 1 : target + 1]:
            job["status"] = status
            if status == "queued":
                self._event(job_id, "Files validated, moving job to queued state")
            elif status == "running":
                self._event(job_id, "Fine-tuning job started")
            else:
                epochs = job["hyperparameters"].get("n_epochs")
                job.update(
                    fine_tuned_model=f"ft:{job['model']}:fake-org:{job['suffix'] or ''}:{job_id[-8:]}",
                    finished_at=int(time.time()),
                    trained_tokens=state.tokens * (epochs if isinstance(epochs, int) else 1),
                )
                self._event(job_id, f"New fine-tuned model created: {job['fine_tuned_model']}")

    def _cancel(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        if job["status"] in TERMINAL:
            raise _HTTPError(400, f"Job {job_id} has already {job['status']}.", param="fine_tune_id")
        job["status"] = "cancelled"
        self._event(job_id, "Fine-tuning job cancelled")
        return dict(job)

    # -- errors ----------------------------------------------------------------------------------

    def _fault_reply(self, provider: str, fault: _Fault) -> _Reply:
        reply = self._error_reply(provider, _HTTPError(fault.status, fault.message or _default_message(fault.status)))
        if fault.retry_after_ms is not None:
            reply.headers["retry-after-ms"] = str(fault.retry_after_ms)
            reply.headers["retry-after"] = str(math.ceil(fault.retry_after_ms / 1000))
        return reply

    @staticmethod
    def _error_reply(provider: str, err: _HTTPError) -> _Reply:
        if provider == ANTHROPIC:
            kind = _ANTHROPIC_ERROR_TYPES.get(err.status) or (
                "api_error" if err.status >= 500 else "invalid_request_error"
            )
            payload = {"type": "error", "error": {"type": kind, "message": err.message}}
        else:
            if err.status == 429:
                kind, code = "requests", err.code or "rate_limit_exceeded"
            elif err.status >= 500:
                kind, code = "server_error", err.code
            else:
                kind, code = "invalid_request_error", err.code
            payload = {"error": {"message": err.message, "type": kind, "param": err.param, "code": code}}
        return _Reply(err.status, json.dumps(payload).encode())


def _default_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached (fake server)."
    if status == 529:
        return "Overloaded"
    if status >= 500:
        return "The server had an error while processing your request (fake server)."
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _json(obj: dict[str, Any], status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(obj).encode())


def _require_object(body: dict | bytes | None) -> dict:
    if not isinstance(body, dict):
        raise _HTTPError(400, "Expected a JSON object body.")
    return body


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """An OpenAI cursor page of ``items`` (``limit`` and ``after`` query parameters)."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise _HTTPError(400, "limit must be an integer", param="limit") from None
    if limit < 1:
        raise _HTTPError(400, "limit must be at least 1", param="limit")
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def _validate_training_file(content: bytes) -> tuple[dict[str, Any] | None, int]:
    """(the job's error or None, estimated tokens per epoch) for chat-format JSONL."""

    def failure(message: str) -> tuple[dict[str, Any], int]:
        return {"code": "invalid_training_file", "message": message, "param": "training_file"}, 0

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return failure("The training file is not valid UTF-8.")
    examples = chars = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            return failure(f"Line {number}: not valid JSON.")
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages:
            return failure(f"Line {number}: expected a non-empty 'messages' list.")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                return failure(f"Line {number}, message {index}: 'role' must be one of system, user, assistant.")
            if not isinstance(message.get("content"), str):
                return failure(f"Line {number}, message {index}: 'content' must be a string.")
            chars += len(message["content"])
        if not any(message["role"] == "assistant" for message in messages):
            return failure(f"Line {number}: the example has no assistant message.")
        examples += 1
    if examples == 0:
        return failure("The training file has no examples.")
    return None, _tokens(chars)

"""The HTTP API and the page (FastAPI): upload, follow, list, cancel and download jobs.

Every request but the page, ``/api/health`` and ``/api/login`` needs the API token when
the service has one (``Authorization: Bearer <token>``, or the session cookie that
``/api/login`` sets for the page). Uploads are checked before any work: the body's size
as it arrives, the number of files, each file's name, first bytes and container.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import mimetypes
import shutil
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from pipeline.config import PipelineConfig
from pipeline.inputs import output_names
from pipeline.serve.db import FINAL, JobStore, migrate, owner_id
from pipeline.serve.runner import JobRunner
from pipeline.serve.uploads import VIDEO_SUFFIXES, UploadRejected, check_name, check_video, safe_filename
from pipeline.serve.views import job_view

logger = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page"
COOKIE = "pose_session"
SSE_POLL_S = 0.5
SSE_MAX_S = 900.0  # a stream ends after this long; the browser's EventSource reconnects
SSE_HEARTBEAT_S = 15.0
MiB = 1024 * 1024
FRAMING_BYTES = 64 * 1024  # a multipart body's boundaries and part headers, on top of its files


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path
    database_url: str
    pipeline: PipelineConfig
    token: str | None = None
    max_upload_bytes: int = 4096 * MiB  # one upload: its files together
    max_files: int = 20  # files in one upload
    max_queued: int = 200  # videos waiting or in progress, all jobs together
    max_live: int = 24  # videos this process runs at once
    lease_s: float = 60.0

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"


class TokenIn(BaseModel):
    token: str


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 (by its
    Content-Length at once, or as it arrives), before the upload is parsed."""

    DRAIN = 64 * MiB  # a body this much over the limit is read and dropped, so the client sees the answer

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            if int(declared) - self.limit <= self.DRAIN:
                await _drain(receive)
            await _too_large(send, self.limit)
            return
        received = 0
        started = False

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        async def tracked(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLarge:
            if not started:
                await _too_large(send, self.limit)


async def _drain(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": f"the upload is larger than the service accepts ({limit / MiB:.0f} MiB)"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def session_value(token: str) -> str:
    """The session cookie's value: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"pose-pipeline session", hashlib.sha256).hexdigest()


def create_app(settings: ServiceSettings) -> FastAPI:
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        settings.uploads.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.database_url)
        await run_in_threadpool(migrate, store.engine)
        runner = JobRunner(store, settings.pipeline, owner_id(), settings.max_live, settings.lease_s).start()
        state.update(store=store, runner=runner)
        try:
            yield
        finally:
            await run_in_threadpool(runner.stop)
            store.close()

    app = FastAPI(
        title="Pose pipeline",
        summary="Upload sports videos; follow each job chunk by chunk; download the annotated video, report and data.",
        version="1",
        lifespan=lifespan,
    )
    # One upload's files together, and the multipart framing; refused as the bytes arrive, before parsing.
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + FRAMING_BYTES)

    def store() -> JobStore:
        return state["store"]

    def authorised(request: Request) -> None:
        token = settings.token
        if not token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), session_value(token).encode()):
            return
        raise HTTPException(401, "an API token is required (Authorization: Bearer <token>)")

    auth = [Depends(authorised)]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=PAGE), name="static")

    @app.get("/api/health", summary="Whether the service and its engines are up, and its limits")
    def health() -> dict:
        runner: JobRunner = state["runner"]
        return {
            "status": "ok",
            "engines": runner.engines,
            "engines_error": runner.error,
            "database": store().dialect,
            "auth": bool(settings.token),
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_files": settings.max_files,
                "max_queued": settings.max_queued,
                "accept": list(VIDEO_SUFFIXES),
            },
            "memory": runner.memory_report(),
        }

    @app.post("/api/login", status_code=204, summary="Exchange the API token for a session cookie (the page)")
    def login(body: TokenIn) -> Response:
        if not settings.token:
            return Response(status_code=204)
        if not hmac.compare_digest(body.token.encode(), settings.token.encode()):
            raise HTTPException(401, "wrong token")
        response = Response(status_code=204)
        response.set_cookie(COOKIE, session_value(settings.token), httponly=True, samesite="strict", path="/")
        return response

    @app.post("/api/jobs", status_code=201, dependencies=auth, summary="Upload one or more videos as a job")
    async def upload(files: Annotated[list[UploadFile], File(description="the videos")]) -> dict:
        if len(files) > settings.max_files:
            raise HTTPException(400, f"{len(files)} files in one upload; the most is {settings.max_files}")
        for upload in files:  # refused as UploadRejected (the handler below answers with its status)
            check_name(safe_filename(upload.filename))
        if sum(upload.size or 0 for upload in files) > settings.max_upload_bytes:
            limit = settings.max_upload_bytes / MiB
            raise HTTPException(413, f"the upload is larger than the service accepts ({limit:.0f} MiB)")
        waiting = await run_in_threadpool(store().unfinished_videos)
        if waiting + len(files) > settings.max_queued:
            raise HTTPException(429, f"the queue is full ({waiting} videos waiting); try again later")
        job_id = uuid.uuid4().hex[:12]
        rows = []
        try:
            for position, upload in enumerate(files):
                rows.append(await run_in_threadpool(_store_upload, settings, upload, position))
        except UploadRejected:
            for row in rows:
                Path(row["location"]).unlink(missing_ok=True)
            raise
        await run_in_threadpool(store().add_job, job_id, rows)
        logger.info("job %s: %d videos uploaded (%s)", job_id, len(rows), ", ".join(r["filename"] for r in rows))
        return job_view(await run_in_threadpool(store().job, job_id))

    @app.get("/api/jobs", dependencies=auth, summary="The latest jobs, newest first")
    def list_jobs(limit: int = 50) -> dict:
        return {"jobs": [job_view(job) for job in store().list_jobs(max(1, min(limit, 500)))]}

    @app.get("/api/jobs/{job_id}", dependencies=auth, summary="A job: its videos, chunks, progress and ETA")
    def get_job(job_id: str) -> dict:
        return job_view(_job_or_404(store(), job_id))

    @app.post("/api/jobs/{job_id}/cancel", dependencies=auth, summary="Cancel a job's unfinished videos")
    def cancel_job(job_id: str) -> dict:
        _job_or_404(store(), job_id)
        store().cancel_job(job_id)
        return job_view(store().job(job_id))

    @app.get("/api/jobs/{job_id}/events", dependencies=auth, summary="The job as server-sent events")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        await run_in_threadpool(_job_or_404, store(), job_id)

        async def stream():
            last, beat = None, time.monotonic()
            deadline = time.monotonic() + SSE_MAX_S
            while time.monotonic() < deadline and not await request.is_disconnected():
                job = await run_in_threadpool(store().job, job_id)
                payload = json.dumps(job_view(job), separators=(",", ":"))
                if payload != last:
                    yield f"event: job\ndata: {payload}\n\n"
                    last, beat = payload, time.monotonic()
                if job["status"] in FINAL:
                    yield "event: end\ndata: {}\n\n"
                    return
                if time.monotonic() - beat > SSE_HEARTBEAT_S:
                    yield ": still working\n\n"
                    beat = time.monotonic()
                await asyncio.sleep(SSE_POLL_S)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.get("/api/videos/{video_id}/files/{key}", dependencies=auth, summary="Download one output file")
    def download(video_id: str, key: str) -> FileResponse:
        video = store().video(video_id)
        entry = next((f for f in (video or {}).get("outputs") or [] if f["key"] == key), None)
        if entry is None:
            raise HTTPException(404, f"no file {key!r} for video {video_id!r}")
        path = Path(entry["path"]).resolve()
        if not path.is_relative_to(settings.data_dir.resolve()) or not path.is_file():
            raise HTTPException(404, f"{entry['filename']} is no longer there")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        inline = media.startswith("video/") or media == "text/html"
        disposition = "inline" if inline else "attachment"
        return FileResponse(path, media_type=media, filename=entry["filename"], content_disposition_type=disposition)

    @app.exception_handler(UploadRejected)
    async def rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    return app


def _job_or_404(store: JobStore, job_id: str) -> dict:
    job = store.job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


def _store_upload(settings: ServiceSettings, upload: UploadFile, position: int) -> dict:
    """Copy the upload under a name of our own (``<video id>-<safe name>``) and check it is a readable video."""
    filename = safe_filename(upload.filename)
    video_id = uuid.uuid4().hex[:12]
    target = settings.uploads / f"{video_id}-{filename}"
    partial = target.with_name(target.name + ".part")
    upload.file.seek(0)
    with open(partial, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1024 * 1024)
    size = partial.stat().st_size  # within the cap: BodyLimit and the upload's total saw to it
    try:
        info = check_video(partial, filename)
    except UploadRejected:
        partial.unlink()
        raise
    partial.rename(target)
    name = output_names([str(target)])[str(target)]
    return {
        "id": video_id,
        "position": position,
        "filename": filename,
        "location": str(target),
        "name": name,
        "size_bytes": size,
        "frames_total": info.frame_count,
    }

"""The job database: jobs, their videos and the videos' chunks (SQLAlchemy Core).

SQLite (a file next to the uploads) is the default, for one service process;
a ``postgresql+psycopg://`` URL lets several service processes share the work.
The schema is created and upgraded by the Alembic migrations in
``migrations/`` when the service starts (``migrate``), never by ``create_all``.

A service process claims videos (``claim_videos``): on PostgreSQL with
``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent claimers never take the
same row and never wait for each other; on SQLite every transaction takes the
database's write lock (``BEGIN IMMEDIATE``). A claim is a lease that its holder
renews; a video whose lease ran out, or whose holder on this machine is gone,
is claimable again, and its work folder gives the next holder the chunks that
were finished.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import psutil
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
MAX_ATTEMPTS = 3  # claims of one video; a video whose holders keep dying (it kills them) then fails
MIGRATION_LOCK = 0x706F7365  # the PostgreSQL advisory lock held while migrating

# A video's status; a job's is derived from its videos' (``job_status``).
QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED = "queued", "processing", "completed", "failed", "cancelled"
FINAL = (COMPLETED, FAILED, CANCELLED)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("error", Text),
    Index("ix_jobs_created_at", "created_at"),
)

videos = Table(
    "videos",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),  # its place in the job's upload
    Column("filename", String(255), nullable=False),  # the upload's name, sanitised
    Column("location", Text, nullable=False),  # where the upload is stored
    Column("name", String(255), nullable=False, unique=True),  # the outputs' name
    Column("size_bytes", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("stage", String(16), nullable=False),  # the pipeline's stage (planned, extract, ...)
    Column("frames_done", Integer, nullable=False),
    Column("frames_total", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),  # claims so far
    Column("claimed_by", String(255)),
    Column("lease_until", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),  # the latest claim
    Column("finished_at", DateTime),
    Column("error", Text),
    Column("outputs", JSON),  # downloadable files: [{key, output, label, filename, path}]
    Column("result", JSON),  # a few numbers of the finished video
    Index("ix_videos_job_id", "job_id"),
    Index("ix_videos_status_created", "status", "created_at"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("video_id", String(32), ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("start_frame", Integer, nullable=False),
    Column("end_frame", Integer, nullable=False),  # exclusive
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),  # times it was sent to a worker
    Column("claimed_by", String(255)),  # the service process that sent it
    Column("worker", String(255)),  # the Dask worker that tracked it
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("seconds", Float),
    Column("artifact", Text),  # the landmarks file in the video's work folder
    Column("reused", Boolean, nullable=False),  # finished by an earlier claim
    Column("error", Text),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def owner_id() -> str:
    """This process, as a claim's holder: host, PID and the process' start time (PIDs are reused)."""
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{int(me.create_time())}"


def owner_gone(owner: str) -> bool:
    """``owner`` ran on this machine and is no longer running (a holder elsewhere: False)."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return int(psutil.Process(int(pid)).create_time()) != int(started or 0)
    except psutil.NoSuchProcess:
        return True


def connect(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and write-locking transactions."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi, _record) -> None:
            dbapi.isolation_level = None  # SQLAlchemy's "begin" event below opens the transactions
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (several processes at once: one migrates, the others wait)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            conn.commit()
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        finally:
            if postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()


class JobStore:
    """Every read and write of the service's tables, each in a transaction of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = connect(url)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def begin(self):
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- jobs ------------------------------------------------------------------------
    def add_job(self, job_id: str, rows: list[dict]) -> None:
        """A job and its videos (``rows``: id, position, filename, location, name, size_bytes, frames_total)."""
        now = utcnow()
        with self.begin() as conn:
            conn.execute(jobs.insert().values(id=job_id, status=QUEUED, created_at=now, updated_at=now))
            conn.execute(
                videos.insert(),
                [
                    row
                    | {"job_id": job_id, "status": QUEUED, "stage": "queued", "frames_done": 0, "attempts": 0}
                    | {"created_at": now}
                    for row in rows
                ],
            )

    def job(self, job_id: str) -> dict | None:
        with self.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if row is None:
                return None
            return self._with_videos(conn, [dict(row)])[0]

    def video(self, video_id: str) -> dict | None:
        with self.begin() as conn:
            row = conn.execute(select(videos).where(videos.c.id == video_id)).mappings().first()
            return None if row is None else dict(row)

    def list_jobs(self, limit: int = 50) -> list[dict]:
        with self.begin() as conn:
            rows = conn.execute(select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id).limit(limit)).mappings()
            return self._with_videos(conn, [dict(r) for r in rows])

    def _with_videos(self, conn: Connection, found: list[dict]) -> list[dict]:
        ids = [job["id"] for job in found]
        by_job: dict[str, list[dict]] = {i: [] for i in ids}
        by_video: dict[str, dict] = {}
        for row in conn.execute(select(videos).where(videos.c.job_id.in_(ids)).order_by(videos.c.position)).mappings():
            video = dict(row) | {"chunks": []}
            by_job[row["job_id"]].append(video)
            by_video[row["id"]] = video
        if by_video:
            query = select(chunks).where(chunks.c.video_id.in_(list(by_video))).order_by(chunks.c.idx)
            for row in conn.execute(query).mappings():
                by_video[row["video_id"]]["chunks"].append(dict(row))
        return [job | {"videos": by_job[job["id"]]} for job in found]

    def unfinished_videos(self) -> int:
        with self.begin() as conn:
            query = select(func.count()).select_from(videos).where(videos.c.status.in_((QUEUED, PROCESSING)))
            return conn.execute(query).scalar_one()

    def cancel_job(self, job_id: str) -> list[dict]:
        """Cancel the job's unfinished videos; returns those that were claimed (``name``, ``claimed_by``)."""
        now = utcnow()
        with self.begin() as conn:
            query = select(videos.c.id, videos.c.name, videos.c.claimed_by, videos.c.status).where(
                videos.c.job_id == job_id, videos.c.status.in_((QUEUED, PROCESSING))
            )
            rows = [dict(r) for r in conn.execute(query).mappings()]
            if rows:
                conn.execute(
                    update(videos)
                    .where(videos.c.id.in_([r["id"] for r in rows]))
                    .values(status=CANCELLED, error="cancelled", finished_at=now, lease_until=None)
                )
            self._settle_job(conn, job_id, now)
            return [r for r in rows if r["status"] == PROCESSING]

    def cancelled_among(self, video_ids: Iterable[str]) -> list[str]:
        ids = list(video_ids)
        if not ids:
            return []
        with self.begin() as conn:
            query = select(videos.c.id).where(videos.c.id.in_(ids), videos.c.status == CANCELLED)
            return list(conn.execute(query).scalars())

    # -- claims ------------------------------------------------------------------------
    def claim_videos(self, owner: str, limit: int, lease_s: float) -> list[dict]:
        """Up to ``limit`` videos that are queued, or whose holder's lease ran out (or whose
        holder on this machine is gone), oldest first; they become ``owner``'s for ``lease_s``."""
        if limit <= 0:
            return []
        now = utcnow()
        with self.begin() as conn:
            self._expire_gone(conn, now)
            self._give_up(conn, now)
            claimable = or_(videos.c.status == QUEUED, and_(videos.c.status == PROCESSING, videos.c.lease_until < now))
            query = (
                select(videos.c.id)
                .where(claimable)
                .order_by(videos.c.created_at, videos.c.job_id, videos.c.position)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            conn.execute(
                update(videos)
                .where(videos.c.id.in_(ids))
                .values(
                    status=PROCESSING,
                    claimed_by=owner,
                    lease_until=now + dt.timedelta(seconds=lease_s),
                    attempts=videos.c.attempts + 1,
                    started_at=now,
                )
            )
            claimed = [dict(r) for r in conn.execute(select(videos).where(videos.c.id.in_(ids))).mappings()]
            for job_id in {row["job_id"] for row in claimed}:
                self._settle_job(conn, job_id, now)
            return sorted(claimed, key=lambda r: (r["created_at"], r["job_id"], r["position"]))

    def _expire_gone(self, conn: Connection, now: dt.datetime) -> None:
        """End the leases of holders on this machine that are no longer running."""
        query = select(videos.c.claimed_by).where(videos.c.status == PROCESSING, videos.c.lease_until >= now)
        gone = [owner for owner in set(conn.execute(query).scalars()) if owner and owner_gone(owner)]
        if gone:
            stale = now - dt.timedelta(seconds=1)
            where = and_(videos.c.status == PROCESSING, videos.c.claimed_by.in_(gone))
            conn.execute(update(videos).where(where).values(lease_until=stale))

    def _give_up(self, conn: Connection, now: dt.datetime) -> None:
        """A video whose lease ran out ``MAX_ATTEMPTS`` times fails instead of being claimed again."""
        where = and_(videos.c.status == PROCESSING, videos.c.lease_until < now, videos.c.attempts >= MAX_ATTEMPTS)
        stuck = list(conn.execute(select(videos.c.id, videos.c.job_id).where(where)).mappings())
        if stuck:
            error = f"its processing stopped {MAX_ATTEMPTS} times without an answer (the service was killed)"
            conn.execute(
                update(videos)
                .where(videos.c.id.in_([row["id"] for row in stuck]))
                .values(status=FAILED, stage=FAILED, error=error, finished_at=now, lease_until=None)
            )
            for job_id in {row["job_id"] for row in stuck}:
                self._settle_job(conn, job_id, now)

    def renew(self, owner: str, video_ids: Iterable[str], lease_s: float) -> None:
        ids = list(video_ids)
        if ids:
            until = utcnow() + dt.timedelta(seconds=lease_s)
            where = and_(videos.c.id.in_(ids), videos.c.claimed_by == owner, videos.c.status == PROCESSING)
            with self.begin() as conn:
                conn.execute(update(videos).where(where).values(lease_until=until))

    def release(self, owner: str, video_ids: Iterable[str]) -> None:
        """Hand unfinished videos back to the queue (a service stopping): another process, or
        this one restarted, takes them at once."""
        ids = list(video_ids)
        if ids:
            where = and_(videos.c.id.in_(ids), videos.c.claimed_by == owner, videos.c.status == PROCESSING)
            now = utcnow()
            with self.begin() as conn:
                conn.execute(update(videos).where(where).values(status=QUEUED, lease_until=None, stage="queued"))
                for job_id in set(conn.execute(select(videos.c.job_id).where(videos.c.id.in_(ids))).scalars()):
                    self._settle_job(conn, job_id, now)

    # -- progress ------------------------------------------------------------------------
    def video_progress(self, owner: str, video_id: str, stage: str, frames_done: int, frames_total: int,
                       chunk_events: list[dict]) -> None:  # fmt: skip
        """A progress event of a video ``owner`` holds: its stage and frames, and its chunks'
        status (each a dict of a ChunkEvent's fields)."""
        now = utcnow()
        with self.begin() as conn:
            where = and_(videos.c.id == video_id, videos.c.claimed_by == owner, videos.c.status == PROCESSING)
            values = {"stage": stage, "frames_done": frames_done}
            if frames_total:
                values["frames_total"] = frames_total
            if not conn.execute(update(videos).where(where).values(**values)).rowcount:
                return  # cancelled, or claimed by another process since
            for chunk in chunk_events:
                self._chunk(conn, owner, video_id, chunk, now)

    def _chunk(self, conn: Connection, owner: str, video_id: str, chunk: dict, now: dt.datetime) -> None:
        key = and_(chunks.c.video_id == video_id, chunks.c.idx == chunk["index"])
        status = chunk["status"]
        values: dict = {"status": status, "error": chunk.get("error") or None}
        if status == "processing":  # sent to a worker by ``owner``
            values |= {"attempts": chunks.c.attempts + 1, "started_at": now, "finished_at": None, "worker": None}
            values |= {"claimed_by": owner}
        elif status == "completed":
            values |= {"artifact": chunk["artifact"], "reused": chunk["reused"]}
            if not chunk["reused"]:
                values |= {"finished_at": now, "seconds": chunk["seconds"], "worker": chunk["worker"]}
        elif status == "failed":
            values |= {"finished_at": now}
        if conn.execute(update(chunks).where(key).values(**values)).rowcount:
            return
        row = {"video_id": video_id, "idx": chunk["index"], "start_frame": chunk["start"], "end_frame": chunk["end"],
               "status": status, "attempts": 1 if status == "processing" else 0, "reused": False}  # fmt: skip
        row |= {"claimed_by": owner if status != "queued" else None}
        conn.execute(chunks.insert().values(row | {k: v for k, v in values.items() if k != "attempts"}))

    def video_finished(self, owner: str, video_id: str, status: str, error: str | None, outputs: list[dict],
                       result: dict) -> None:  # fmt: skip
        now = utcnow()
        with self.begin() as conn:
            where = and_(videos.c.id == video_id, videos.c.claimed_by == owner, videos.c.status == PROCESSING)
            values = {"status": status, "stage": status, "error": error, "outputs": outputs, "result": result}
            values |= {"finished_at": now, "lease_until": None}
            conn.execute(update(videos).where(where).values(**values))
            job_id = conn.execute(select(videos.c.job_id).where(videos.c.id == video_id)).scalar_one()
            self._settle_job(conn, job_id, now)

    def _settle_job(self, conn: Connection, job_id: str, now: dt.datetime) -> None:
        statuses = list(conn.execute(select(videos.c.status).where(videos.c.job_id == job_id)).scalars())
        status = job_status(statuses)
        values = {"status": status, "updated_at": now, "finished_at": now if status in FINAL else None}
        if status == FAILED:
            values["error"] = f"{statuses.count(FAILED)} of {len(statuses)} videos failed"
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


def job_status(statuses: list[str]) -> str:
    """A job is queued until a video is claimed, processing while any video is unfinished, then
    completed (every video), cancelled (the user stopped it) or failed (any video failed)."""
    if any(s in (QUEUED, PROCESSING) for s in statuses):
        return PROCESSING if any(s != QUEUED for s in statuses) else QUEUED
    if CANCELLED in statuses:
        return CANCELLED
    return FAILED if FAILED in statuses else COMPLETED


def sqlite_url(path: str | os.PathLike) -> str:
    return f"sqlite:///{Path(path).resolve()}"

"""The job database on PostgreSQL: claims with FOR UPDATE SKIP LOCKED never hand a row to two
claimers nor make one wait for another; two service processes share one database and no
video or chunk is taken by both."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from pipeline.serve.db import JobStore, migrate, videos
from serve.harness import Service
from serve.postgres import Postgres


@pytest.fixture(scope="module")
def postgres():
    server = Postgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def store(postgres):
    store = JobStore(postgres.create_database(f"claims_{uuid.uuid4().hex[:8]}"))
    migrate(store.engine)
    yield store
    store.close()


def _queue(store: JobStore, count: int) -> list[str]:
    rows = [
        {"id": f"v{i:03d}", "position": i, "filename": f"{i}.mp4", "location": f"/up/{i}.mp4", "name": f"v{i:03d}",
         "size_bytes": 1, "frames_total": 10}
        for i in range(count)
    ]  # fmt: skip
    store.add_job("job", rows)
    return [r["id"] for r in rows]


def test_the_claim_is_select_for_update_skip_locked(store):
    statement = select(videos.c.id).with_for_update(skip_locked=True)
    assert "FOR UPDATE SKIP LOCKED" in str(statement.compile(dialect=store.engine.dialect))
    assert store.dialect == "postgresql"


def test_concurrent_claimers_share_the_rows_without_overlap(store):
    ids = _queue(store, 60)
    start = threading.Barrier(6)

    def claimer(n: int) -> list[str]:
        start.wait()
        mine: list[str] = []
        while claimed := store.claim_videos(f"claimer-{n}", 4, lease_s=60):
            mine += [row["id"] for row in claimed]
        return mine

    with ThreadPoolExecutor(6) as pool:
        taken = list(pool.map(claimer, range(6)))
    every = [video for mine in taken for video in mine]
    assert sorted(every) == sorted(ids), "a video was claimed twice or not at all"
    assert sum(1 for mine in taken if mine) >= 2, "one claimer took everything: no concurrency was tested"


def test_a_locked_row_is_skipped_not_waited_for(store):
    ids = _queue(store, 6)
    with store.engine.connect() as holder:  # another process in the middle of its claim
        query = select(videos.c.id).order_by(videos.c.position).limit(2).with_for_update()
        locked = list(holder.execute(query).scalars())
        started = time.monotonic()
        claimed = [row["id"] for row in store.claim_videos("other", 10, lease_s=60)]
        assert time.monotonic() - started < 5
        holder.rollback()
    assert locked == ids[:2] and claimed == ids[2:]


def test_two_services_share_one_database_and_take_no_video_twice(postgres, tmp_path, short_clip):
    url = postgres.create_database("service")
    options = ("--database", url, "--max_live", "2", "--workers", "1", "--memory_limit", "0.15")
    services = [Service(tmp_path / "shared", *options, name=f"service-{n}") for n in "ab"]  # one data folder
    try:
        for svc in services:
            svc.start()
        first, second = services
        with first.client() as client:
            names = [f"player-{i}.mp4" for i in range(4)]
            job = first.upload(client, *[short_clip] * 4, names=names).json()
            with second.client() as other:  # the job is visible through either service
                assert other.get(f"/api/jobs/{job['id']}").json()["id"] == job["id"]
            done = first.wait_job(client, job["id"], timeout=400)
        assert done["status"] == "completed", done
        owners = {video["claimed_by"] for video in done["videos"]}
        assert len(owners) == 2, f"one service did every video: {owners}"
        for video in done["videos"]:
            assert video["attempts"] == 1, video
            for chunk in video["chunks"]:
                assert chunk["attempts"] == 1 and chunk["claimed_by"] == video["claimed_by"], chunk
        for svc in services:  # the database's password is in no log line (the URL is shown without it)
            log = svc.log()
            assert postgres.password not in log and f"postgresql+psycopg://127.0.0.1:{postgres.port}/" in log
    finally:
        for svc in services:
            svc.close()

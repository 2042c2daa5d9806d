"""The job database without a service (SQLite): the migrations make the tables the code
declares, claims and leases, a gone holder's videos, the retry cap, a job's status, and
the upload checks (names, first bytes)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import media
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from pipeline.serve.db import MAX_ATTEMPTS, JobStore, job_status, metadata, migrate, owner_id, sqlite_url, videos
from pipeline.serve.uploads import UploadRejected, check_video, safe_filename, sniff


@pytest.fixture
def store(tmp_path):
    store = JobStore(sqlite_url(tmp_path / "jobs.db"))
    migrate(store.engine)
    yield store
    store.close()


def _add(store: JobStore, job: str, count: int) -> list[str]:
    rows = [
        {"id": f"{job}-{i}", "position": i, "filename": f"{i}.mp4", "location": f"/up/{job}-{i}.mp4",
         "name": f"{job}-{i}", "size_bytes": 1, "frames_total": 10}
        for i in range(count)
    ]  # fmt: skip
    store.add_job(job, rows)
    return [r["id"] for r in rows]


def test_the_migrations_make_the_declared_tables(store):
    migrate(store.engine)  # a second start changes nothing
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_claims_are_oldest_first_and_leased(store):
    first = _add(store, "a", 3)
    second = _add(store, "b", 2)
    claimed = store.claim_videos("me", 4, lease_s=60)
    assert [r["id"] for r in claimed] == first + second[:1]
    assert all(r["status"] == "processing" and r["claimed_by"] == "me" and r["attempts"] == 1 for r in claimed)
    assert store.job("a")["status"] == "processing" and store.job("b")["status"] == "processing"
    assert [r["id"] for r in store.claim_videos("other", 4, lease_s=60)] == second[1:]
    assert store.claim_videos("other", 4, lease_s=60) == []  # held leases are not taken


def test_an_expired_lease_is_taken_over_and_a_live_remote_one_is_not(store):
    (video,) = _add(store, "a", 1)
    store.claim_videos("elsewhere:1:1", 1, lease_s=60)  # a holder on another machine: alive as far as we know
    assert store.claim_videos("me", 1, lease_s=60) == []
    with store.begin() as conn:  # its lease runs out
        conn.execute(update(videos).values(lease_until=dt.datetime(2000, 1, 1)))
    (taken,) = store.claim_videos("me", 1, lease_s=60)
    assert taken["id"] == video and taken["attempts"] == 2


def test_a_holder_on_this_machine_that_is_gone_loses_its_videos_at_once(store):
    _add(store, "a", 1)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = owner_id().rsplit(":", 2)[0] + f":{gone.pid}:1"
    store.claim_videos(dead, 1, lease_s=600)
    assert store.claim_videos(owner_id(), 1, lease_s=60)[0]["claimed_by"] == owner_id()


def test_a_video_that_keeps_losing_its_holder_fails(store):
    _add(store, "a", 1)
    for _ in range(MAX_ATTEMPTS):
        assert store.claim_videos("elsewhere:1:1", 1, lease_s=60)
        with store.begin() as conn:
            conn.execute(update(videos).values(lease_until=dt.datetime(2000, 1, 1)))
    assert store.claim_videos("me", 1, lease_s=60) == []
    job = store.job("a")
    assert job["status"] == "failed" and "stopped 3 times" in job["videos"][0]["error"]


def test_release_and_cancel(store):
    ids = _add(store, "a", 2)
    store.claim_videos("me", 1, lease_s=60)
    store.release("me", ids[:1])  # a stopping service hands its video back
    assert store.job("a")["status"] == "queued"
    store.claim_videos("me", 1, lease_s=60)
    running = store.cancel_job("a")
    assert [r["id"] for r in running] == ids[:1]  # the claimed one: its holder is told
    assert store.cancelled_among(ids) == ids and store.job("a")["status"] == "cancelled"
    assert store.claim_videos("me", 2, lease_s=60) == []


@pytest.mark.parametrize(
    ("statuses", "status"),
    [
        (["queued", "queued"], "queued"),
        (["queued", "processing"], "processing"),
        (["completed", "queued"], "processing"),
        (["completed", "completed"], "completed"),
        (["completed", "failed"], "failed"),
        (["cancelled", "completed"], "cancelled"),
    ],
)
def test_job_status(statuses, status):
    assert job_status(statuses) == status


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\coach\\..\\jump.MP4", "jump.mp4"),
        (".hidden.mov", "hidden.mov"),
        ("Évil clip (1).mp4", "Evil_clip_1.mp4"),
        ("..", "video"),
        ("", "video"),
        ("a.b.c.mkv", "a_b_c.mkv"),
    ],
)
def test_upload_names_are_made_safe(given, safe):
    assert safe_filename(given) == safe


def test_the_type_comes_from_the_first_bytes(tmp_path, sample_video):
    assert sniff(sample_video.read_bytes()[:16]) == "mp4"
    assert sniff(b"\x1a\x45\xdf\xa3" + bytes(12)) == "matroska"
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff(b"Shopping list\n- oil") is None
    with pytest.raises(UploadRejected) as rejected:
        check_video(media.text_as_mp4(tmp_path), "notes.mp4")
    assert rejected.value.status == 415
    with pytest.raises(UploadRejected) as rejected:
        check_video(media.truncated_mp4(tmp_path, sample_video), "cut.mp4")
    assert rejected.value.status == 422 and str(rejected.value).startswith("cut.mp4: truncated")
    assert check_video(sample_video, "demo.mp4").frame_count == 230

"""ObjectLock against a real S3-compatible server (moto): taking the lock is a put
with If-None-Match, the lease is renewed with puts conditional on the ETag, a dead
holder's lock (lease expired, or a process of this host that is gone) is taken
over by a conditional put that only one contender wins, and a release never
deletes the lock of a run that took it over."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import psutil
import pytest
from conftest import REPO
from s3_server import ACCESS_KEY, SECRET_KEY

from pipeline.errors import OutputError
from pipeline.storage.locks import FileLock, LockOwner, LockTimeout, ObjectLock, lock_for

ME = LockOwner(os.getpid(), socket.gethostname())

HOLD = (
    "import sys, time\n"
    "from pipeline.storage.locks import ObjectLock\n"
    "lock = ObjectLock(sys.argv[1], lease_s=600)\n"
    "assert lock.try_acquire() is None\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def bucket(s3_bucket):
    return s3_bucket


@pytest.fixture
def new_lock():
    """``new_lock(location, **kw)``: an ObjectLock that is released at the end of the test."""
    made: list[ObjectLock] = []

    def make(location: str, **kwargs) -> ObjectLock:
        lock = ObjectLock(location, **kwargs)
        made.append(lock)
        return lock

    yield make
    for lock in made:
        lock.release()


@pytest.fixture
def no_secrets(caplog):
    """Every log line of the test, which must not carry the server's credentials."""
    caplog.set_level(logging.INFO, logger="pipeline.storage.locks")
    yield caplog
    assert ACCESS_KEY not in caplog.text and SECRET_KEY not in caplog.text


def record_of(s3, location: str) -> dict:
    return json.loads(s3.filesystem().cat_file(location))


def write_record(s3, location: str, record: dict) -> None:
    s3.filesystem().pipe_file(location, json.dumps(record).encode())


def other_host_record(expires: float) -> dict:
    """The record of a run on another machine (its PID means nothing here)."""
    return {"pid": 4242, "host": "elsewhere", "run_id": uuid.uuid4().hex, "expires": expires}


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lease ")]


def test_acquire_holder_release(bucket, s3, new_lock):
    location = f"{bucket}/out/.work/demo.lock"
    lock = new_lock(location)
    assert lock.location == location
    assert lock.holder() is None and not lock.held

    before = time.time()
    assert lock.try_acquire() is None
    assert lock.held and lock.holder() == ME
    assert lock.try_acquire() is None  # held already: still ours
    record = record_of(s3, location)
    assert (record["pid"], record["host"]) == (ME.pid, ME.host)
    assert len(record["run_id"]) == 32
    assert before + 60 <= record["expires"] <= time.time() + 60
    assert new_lock(location).holder() == ME  # read from the store by another lock object
    assert len(lease_threads()) == 1

    lock.release()
    assert not lock.held
    assert not s3.filesystem().exists(location)
    assert lease_threads() == []
    assert new_lock(location).holder() is None
    lock.release()  # idempotent

    lock.acquire(timeout=1)
    assert lock.held and record_of(s3, location)["run_id"] != record["run_id"]  # a new run id each time
    lock.release()
    assert not s3.filesystem().exists(location)


def test_a_taken_lock_names_its_owner_and_acquire_times_out(bucket, new_lock, no_secrets):
    location = f"{bucket}/out/.work/demo.lock"
    first = new_lock(location)
    assert first.try_acquire() is None
    second = new_lock(location)
    assert second.try_acquire() == ME
    assert not second.held
    assert second.holder() == ME

    started = time.monotonic()
    with pytest.raises(
        LockTimeout, match=f"^{re.escape(location)} is held by another run \\(PID {ME.pid}\\)"
    ) as caught:
        second.acquire(timeout=0.5, poll_s=0.05)
    waited = time.monotonic() - started
    assert 0.5 <= waited < 3, waited
    assert ACCESS_KEY not in str(caught.value) and SECRET_KEY not in str(caught.value)
    assert first.held and not second.held

    first.release()
    second.acquire(timeout=1)
    assert second.held and first.holder() == ME


def test_the_lease_is_renewed(bucket, s3, new_lock, no_secrets):
    location = f"{bucket}/x.lock"
    lock = new_lock(location, lease_s=1.5)
    assert lock.try_acquire() is None
    first = record_of(s3, location)
    time.sleep(2.0)  # past the first lease
    assert lock.held
    renewed = record_of(s3, location)
    assert renewed["run_id"] == first["run_id"]
    assert renewed["expires"] > first["expires"]
    assert renewed["expires"] > time.time()
    assert new_lock(location).try_acquire() == ME  # not taken over: the lease is alive
    assert "lost the lock" not in no_secrets.text


def test_an_expired_lease_is_taken_over(bucket, s3, new_lock, no_secrets):
    location = f"{bucket}/x.lock"
    write_record(s3, location, other_host_record(expires=time.time() + 60))
    lock = new_lock(location)
    # A live lease of another machine is respected (its PID is not ours to check).
    assert lock.try_acquire() == LockOwner(4242, "elsewhere")
    assert lock.holder() == LockOwner(4242, "elsewhere")
    assert lock.holder().describe() == "PID 4242 on elsewhere"

    write_record(s3, location, other_host_record(expires=time.time() - 1))
    assert lock.holder() is None  # a dead holder's lock is free
    assert lock.try_acquire() is None
    assert lock.held
    assert record_of(s3, location)["pid"] == os.getpid()
    assert f"took over the lock {location} from PID 4242 on elsewhere (its lease had expired)" in no_secrets.text


def test_a_dead_holder_on_this_host_is_taken_over_at_once(bucket, s3, new_lock, started, no_secrets):
    location = f"{bucket}/out/.work/demo.lock"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, location],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(psutil.Process(child.pid))
    assert child.stdout.readline().strip() == "held"
    lock = new_lock(location)
    assert lock.try_acquire() == LockOwner(child.pid, socket.gethostname())  # alive: respected
    assert record_of(s3, location)["expires"] > time.time() + 500  # its lease is far from over

    child.kill()  # SIGKILL: no release
    child.wait(timeout=10)
    child.stdout.close()
    began = time.monotonic()
    assert lock.try_acquire() is None
    assert time.monotonic() - began < 2
    assert lock.held
    assert record_of(s3, location)["pid"] == os.getpid()
    assert f"from PID {child.pid} (its process is gone)" in no_secrets.text


def race(contenders: list[ObjectLock]) -> list[LockOwner | None]:
    """``try_acquire`` of every contender, each in its own thread, started together."""
    results: list = [LockOwner(0, "not run")] * len(contenders)
    barrier = threading.Barrier(len(contenders))

    def contend(i: int) -> None:
        barrier.wait(timeout=5)
        results[i] = contenders[i].try_acquire()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(contenders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_of_four_contenders_for_a_free_lock_exactly_one_wins(bucket, s3, new_lock):
    location = f"{bucket}/x.lock"
    for _ in range(5):
        contenders = [new_lock(location) for _ in range(4)]
        results = race(contenders)
        assert sorted(results, key=lambda r: r is not None) == [None, ME, ME, ME]
        winner = contenders[results.index(None)]
        assert [lock.held for lock in contenders] == [lock is winner for lock in contenders]
        assert record_of(s3, location)["run_id"] == winner._record["run_id"]
        winner.release()


def test_of_two_contenders_for_a_takeover_exactly_one_wins(bucket, s3, new_lock):
    location = f"{bucket}/x.lock"
    for _ in range(5):
        write_record(s3, location, other_host_record(expires=time.time() - 1))
        contenders = [new_lock(location), new_lock(location)]
        results = race(contenders)
        assert sorted(results, key=lambda r: r is not None) == [None, ME]  # the loser names the winner
        assert [lock.held for lock in contenders] == [r is None for r in results]
        winner = contenders[results.index(None)]
        assert record_of(s3, location)["run_id"] == winner._record["run_id"]
        winner.release()
        assert not s3.filesystem().exists(location)


def test_a_lock_taken_over_is_lost_and_its_release_leaves_the_new_owners(bucket, s3, new_lock, no_secrets):
    location = f"{bucket}/x.lock"
    first = new_lock(location, lease_s=1.5)
    assert first.try_acquire() is None
    # The first run's lease ran out (its renewals stalled): here another writer leaves an expired record.
    write_record(s3, location, other_host_record(expires=time.time() - 1))
    second = new_lock(location)
    assert second.try_acquire() is None
    taken = record_of(s3, location)

    deadline = time.monotonic() + 3
    while first.held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not first.held  # its next renewal was refused
    assert "lost the lock" in no_secrets.text
    first.release()
    assert record_of(s3, location) == taken
    assert second.held and second.holder() == ME
    time.sleep(0.6)  # the first lock's renewals have stopped: the object is still the second's
    assert record_of(s3, location) == taken


def test_a_takeover_between_the_check_and_the_delete_keeps_the_new_owners(bucket, s3, new_lock, no_secrets):
    location = f"{bucket}/x.lock"
    lock = new_lock(location)
    assert lock.try_acquire() is None
    taken = {**record_of(s3, location), "pid": 4242, "host": "elsewhere"}  # same run id: the check passes
    store = lock._store
    read = store.read

    def read_then_taken_over():
        current = read()
        write_record(s3, location, taken)  # another run writes right after our read
        return current

    store.read = read_then_taken_over
    lock.release()  # the delete is conditional on the ETag read: refused
    assert not lock.held
    assert record_of(s3, location) == taken
    assert f"the lock {location} was taken over by another run; left to it" in no_secrets.text


def test_memory_filesystem_is_best_effort_but_works(new_lock):
    location = f"memory://locks-{uuid.uuid4().hex[:8]}/x.lock"
    first = new_lock(location)
    assert first.try_acquire() is None
    second = new_lock(location)
    assert second.try_acquire() == ME
    with pytest.raises(LockTimeout):
        second.acquire(timeout=0.2)
    first.release()
    assert second.holder() is None
    second.acquire(timeout=1)
    assert second.held


def test_lock_for_picks_the_kind_of_lock(tmp_path, bucket):
    assert isinstance(lock_for(tmp_path / "a.lock"), FileLock)
    assert isinstance(lock_for(f"file://{tmp_path}/a.lock"), FileLock)
    assert isinstance(lock_for(f"{bucket}/a.lock"), ObjectLock)
    assert isinstance(lock_for("memory://x/a.lock"), ObjectLock)
    with pytest.raises(OutputError):
        FileLock(f"{bucket}/a.lock")
    with pytest.raises(OutputError):
        ObjectLock(tmp_path / "a.lock")

"""A service killed mid-job (SIGKILL to its whole process group) and started again: the job
resumes from the database and the work folder, the chunks finished before the kill are not
computed again, and the outputs are those of an uninterrupted run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from media import _from_sample

from serve.harness import Service


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_video):
    """150 frames (5 s) of the sample at half its size: long enough for chunks that finish apart."""
    return _from_sample(sample_video, tmp_path_factory.mktemp("clip") / "clip.mp4", 0, 150, "scale=884:-2")


def _outputs(client, job: dict) -> dict[str, object]:
    """The video's outputs, compared across two jobs: the pose JSON without the upload's path, and
    the annotated video, angles CSV and tables as they are."""
    files = {f["key"]: f["url"] for f in job["videos"][0]["files"]}
    pose = client.get(files["pose_json"]).json()
    pose["video"].pop("path", None)
    tables = {}
    for key in ("tables", "tables-1"):
        data = client.get(files[key]).content
        tables[key] = pq.read_table(__import__("io").BytesIO(data)).to_pylist()
    return {
        "pose_json": json.dumps(pose, sort_keys=True),
        "annotated_video": client.get(files["annotated_video"]).content,
        "angles_csv": client.get(files["angles_csv"]).content,
        "tables": tables,
    }


def test_a_killed_service_resumes_its_job_and_computes_no_chunk_twice(tmp_path, clip):
    svc = Service(tmp_path / "data", "--memory_limit", "0.2", "--workers", "2")
    try:
        svc.start()
        with svc.client() as client:
            job = svc.upload(client, clip).json()

            def one_chunk_done(found: dict) -> bool:
                return any(c["status"] == "completed" for c in found["videos"][0]["chunks"])

            before = svc.wait_job(client, job["id"], timeout=300, until=one_chunk_done)
            assert before["status"] == "processing"
            finished = {c["index"]: c for c in before["videos"][0]["chunks"] if c["status"] == "completed"}
            done_before = set(finished)
            svc.kill()

            svc.start()
            after = svc.wait_job(client, job["id"], timeout=300)
            assert after["status"] == "completed", after
            video = after["videos"][0]
            assert video["attempts"] == 2  # claimed by the killed service, then by the new one
            assert video["summary"]["chunks_reused"] >= len(done_before) >= 1
            chunks = {c["index"]: c for c in video["chunks"]}
            for index in done_before:  # finished before the kill: reused, sent to a worker once, by the first service
                assert chunks[index]["reused"] and chunks[index]["attempts"] == 1, chunks[index]
                for key in ("worker", "seconds", "claimed_by"):
                    assert chunks[index][key] == finished[index][key], (index, key)
            for index in set(chunks) - done_before:
                assert chunks[index]["status"] == "completed" and chunks[index]["attempts"] <= 2

            # The same clip, uninterrupted, in the same service: the same outputs.
            again = svc.upload(client, clip).json()
            reference = svc.wait_job(client, again["id"], timeout=300)
            assert reference["status"] == "completed"
            assert not any(c["reused"] for c in reference["videos"][0]["chunks"])
            resumed, uninterrupted = _outputs(client, after), _outputs(client, reference)
            for key in uninterrupted:
                assert resumed[key] == uninterrupted[key], f"the {key} differs"
    finally:
        svc.close()

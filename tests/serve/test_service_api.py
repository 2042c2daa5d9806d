"""The job service's API over real HTTP (uvicorn on 127.0.0.1, the real pipeline behind it):
upload, server-sent progress, downloads, bad uploads, twenty uploads at once, cancel, the
token, and the OpenAPI page."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import media
import pytest
import requests

from serve.harness import Service, events

# A real user's upload: the file name has folders and odd characters; it is kept as a name only.
TRAVERSAL_NAME = "../../..//etc/Évil clip (1).mp4"


@pytest.fixture(scope="module")
def client(service):
    with service.client() as c:
        yield c


@pytest.fixture(scope="module")
def sample_job(service, client, sample_video):
    """The sample clip, uploaded once and followed through its server-sent events."""
    response = service.upload(client, sample_video)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and job["videos"][0]["frames_total"] == 230
    seen = events(client, job["id"], timeout=300)
    return job["id"], seen


def test_a_job_moves_chunk_by_chunk_to_completed(sample_job):
    job_id, seen = sample_job
    final = seen[-1]
    assert final["status"] == "completed", final
    assert final["progress"] == 1.0
    progress = [e["progress"] for e in seen]
    assert progress == sorted(progress), "the progress went back"
    assert any(0 < p < 1 for p in progress), "no event between the start and the end"
    video = final["videos"][0]
    assert video["chunks_total"] >= 2 and video["chunks_done"] == video["chunks_total"]
    # Each chunk was sent once and finished once, on a worker; none was reused.
    for chunk in video["chunks"]:
        assert chunk["status"] == "completed" and chunk["attempts"] == 1 and not chunk["reused"]
        assert chunk["worker"] and chunk["seconds"] > 0
    spans = sorted((c["start"], c["end"]) for c in video["chunks"])
    assert spans[0][0] == 0 and spans[-1][1] == 230
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
    # Chunks were seen processing, then done one after another; an ETA was given on the way.
    done_counts = [e["chunks_done"] for e in seen]
    assert len(set(done_counts)) >= 2, done_counts
    assert any(e["eta_s"] is not None for e in seen)
    assert video["summary"]["frames"] == 230 and video["summary"]["persons"] >= 1


def test_the_outputs_download(service, client, sample_job):
    job = client.get(f"/api/jobs/{sample_job[0]}").json()
    files = {f["key"]: f for f in job["videos"][0]["files"]}
    assert {"annotated_video", "pose_json", "report", "angles_csv", "llm_examples", "tables"} <= set(files)
    assert files["pose_json"]["filename"] == "demo_pose.json"  # named after the upload
    pose = client.get(files["pose_json"]["url"])
    assert pose.status_code == 200 and "attachment" in pose.headers["content-disposition"]
    assert len(pose.json()["frames"]) == 230
    report = client.get(files["report"]["url"])
    assert report.headers["content-type"].startswith("text/html") and "<img" in report.text
    # The annotated video is served in ranges, as a browser's player asks for it.
    video_url = files["annotated_video"]["url"]
    whole = client.get(video_url).content
    part = client.get(video_url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == whole[100:1100]
    assert whole[4:8] == b"ftyp"
    # A key that is not one of the video's files, or a path, is not found.
    for key in ("../../jobs.db", "..%2F..%2Fjobs.db", "nothing"):
        assert client.get(f"/api/videos/{job['videos'][0]['id']}/files/{key}").status_code == 404


def test_bad_uploads_fail_alone_with_one_line(service, client, short_clip, sample_video, tmp_path):
    good = service.upload(client, short_clip, names=[TRAVERSAL_NAME])
    assert good.status_code == 201, good.text
    over_cap = tmp_path / "long.mp4"  # a real MP4 with padding past the 4 MiB cap
    over_cap.write_bytes(sample_video.read_bytes() + bytes(600 * 1024))
    bad = {
        "notes.txt": (media.text_as_mp4(tmp_path / "a").read_bytes(), 415, "not a video file name"),
        "notes.mp4": (media.text_as_mp4(tmp_path / "b").read_bytes(), 415, "not a video"),
        "truncated.mp4": (media.truncated_mp4(tmp_path / "c", sample_video).read_bytes(), 422, "truncated"),
        "long.mp4": (over_cap.read_bytes(), 413, "larger than"),
    }
    for name, (data, status, words) in bad.items():
        response = client.post("/api/jobs", files=[("files", (name, data, "video/mp4"))])
        assert response.status_code == status, (name, response.text)
        detail = response.json()["detail"]
        assert words in detail and "\n" not in detail, detail
        if status != 413 or name in detail:
            assert name in detail, detail
    many = [("files", (f"c{i}.mp4", b"x", "video/mp4")) for i in range(21)]
    too_many = client.post("/api/jobs", files=many)
    assert too_many.status_code == 400 and "most is 20" in too_many.json()["detail"]
    # Nothing of the refused files is kept; the good upload is stored under a safe name of its own.
    stored = sorted(p.name for p in (service.data_dir / "uploads").iterdir())
    assert not [n for n in stored if n.endswith(".part") or "notes" in n or "truncated" in n or "long" in n]
    video = good.json()["videos"][0]
    assert video["filename"] == "Evil_clip_1.mp4"
    assert f"{video['id']}-Evil_clip_1.mp4" in stored
    done = service.wait_job(client, good.json()["id"], timeout=300)
    assert done["status"] == "completed", done


def test_twenty_uploads_at_once_complete_within_the_budget(service, client, short_clip):
    def upload(i: int) -> requests.Response:
        with service.client() as own:
            return service.upload(own, short_clip, names=[f"athlete-{i:02d}.mp4"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(upload, range(20)))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
    jobs = [service.wait_job(client, r.json()["id"], timeout=600) for r in responses]
    assert [j["status"] for j in jobs] == ["completed"] * 20, [j["error"] for j in jobs]
    assert all(j["videos"][0]["summary"]["frames"] == 45 for j in jobs)
    listed = {j["id"] for j in client.get("/api/jobs", params={"limit": 100}).json()["jobs"]}
    assert {j["id"] for j in jobs} <= listed
    memory = client.get("/api/health").json()["memory"]
    assert 0 < memory["peak_bytes"] <= memory["budget_bytes"], memory


def test_cancel_stops_a_job_and_the_others_go_on(service, client, sample_video, short_clip):
    running = service.upload(client, sample_video).json()
    service.wait_job(client, running["id"], until=lambda job: job["status"] == "processing")
    cancelled = client.post(f"/api/jobs/{running['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    after = client.post(f"/api/jobs/{running['id']}/cancel").json()  # a second cancel changes nothing
    assert after["status"] == "cancelled" and after["videos"][0]["error"] == "cancelled"
    other = service.upload(client, short_clip).json()
    assert service.wait_job(client, other["id"])["status"] == "completed"
    final = client.get(f"/api/jobs/{running['id']}").json()
    assert final["status"] == "cancelled" and final["videos"][0]["files"] == []
    # The pipeline stopped the video (its result came back cancelled), rather than finishing it unseen.
    assert f"job {running['id']}: demo.mp4 cancelled (cancelled)" in service.log()
    assert f"job {running['id']}: demo.mp4 completed" not in service.log()
    assert client.post("/api/jobs/nosuchjob/cancel").status_code == 404


def test_the_token_is_required_and_never_shown(service, client):
    with service.client(auth=False) as anonymous:
        assert anonymous.get("/api/health").status_code == 200  # the page needs it to ask for the token
        for method, path in (("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/x/events")):
            response = anonymous.request(method, path)
            assert response.status_code == 401, (path, response.status_code)
            assert "token" in response.json()["detail"]
        wrong = anonymous.get("/api/jobs", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        assert anonymous.post("/api/login", json={"token": "not-the-token"}).status_code == 401
        login = anonymous.post("/api/login", json={"token": service.token})
        assert login.status_code == 204
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and service.token not in cookie
        assert anonymous.get("/api/jobs").status_code == 200  # the session cookie
    listing = client.get("/api/jobs").text + client.get("/api/health").text
    assert service.token not in listing
    assert service.token not in service.log()


def test_openapi_describes_the_api(service, client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel"} <= set(paths)
    assert "multipart/form-data" in json.dumps(paths["/api/jobs"]["post"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop-zone"' in page.text


def test_an_open_address_without_a_token_is_refused(tmp_path):
    """Off loopback the service will not start without a token: before it binds or starts an engine."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "POSE_SERVICE_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.serve", "--host", "0.0.0.0", "--data_dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--token" in lines[0], done.stderr


def test_a_restarted_service_keeps_its_jobs(tmp_path, short_clip):
    """The database is the jobs' record: a service stopped with SIGTERM and started again lists them."""
    svc = Service(tmp_path / "data", "--memory_limit", "0.15", "--workers", "1")
    try:
        svc.start()
        with svc.client() as c:
            job = svc.upload(c, short_clip).json()
            assert svc.wait_job(c, job["id"])["status"] == "completed"
            # uvicorn shuts down gracefully, then ends by the signal it was sent (as a service manager expects).
            assert svc.stop() in (0, -15)
            assert "Application shutdown complete" in svc.log()
            assert Path(svc.data_dir / "jobs.db").exists()
            svc.start()
            again = c.get(f"/api/jobs/{job['id']}").json()
            assert again["status"] == "completed" and again["videos"][0]["files"]
            assert c.get(again["videos"][0]["files"][0]["url"]).status_code == 200
    finally:
        svc.close()

"""The job service's fixtures: a short real clip, and one service for the API and page tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SERVICE_UPLOAD_CAP_MB = 4  # the sample (3.8 MiB) fits; the over-cap file does not


@pytest.fixture(scope="package")
def short_clip(tmp_path_factory, sample_video) -> Path:
    """45 frames (1.5 s, 640x360) of the sample: the two people, the man on his box."""
    from media import _small_clip

    return _small_clip(sample_video, tmp_path_factory.mktemp("short") / "short.mp4", 60, 45)


@pytest.fixture(scope="package")
def service(tmp_path_factory):
    """One job service for the API and page tests (stopped when tests/serve is done): SQLite, an API
    token, a 4 MiB upload cap."""
    import secrets

    from serve.harness import Service

    svc = Service(
        tmp_path_factory.mktemp("service"), "--max_upload_mb", str(SERVICE_UPLOAD_CAP_MB), "--memory_limit", "0.2",
        token=secrets.token_urlsafe(24),
    )  # fmt: skip
    try:
        yield svc.start()
    finally:
        svc.close()

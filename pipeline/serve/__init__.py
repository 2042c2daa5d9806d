"""The job service: ``python pipeline.py serve`` (or ``python -m pipeline.serve``).

An HTTP API and a page on 127.0.0.1:8000: upload videos, follow each job chunk by chunk,
play the annotated video, read the report, download the data. One pipeline (the same
engines as the command line, embedded or attached) runs every job, inside one memory
budget; a job database (SQLite, or PostgreSQL for several service processes) keeps the
jobs, their videos and chunks, so a restarted service resumes where it stopped.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from pipeline.config import MEMORY_LIMIT_RANGE, QUALITY_PRESETS, PipelineConfig, load_env
from pipeline.errors import ConfigError, redact

TOKEN_ENV = "POSE_SERVICE_TOKEN"
DATABASE_ENV = "POSE_SERVICE_DATABASE"
EXIT_USAGE = 2
logger = logging.getLogger("pipeline")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline.py serve",
        description="The job service: a page and an HTTP API to upload videos and follow them to the report.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on; any but loopback needs --token (default 127.0.0.1)")
    add("--port", type=int, default=8000, help="port (default 8000)")
    add("--data_dir", default="service", help="uploads, outputs and the SQLite database (default ./service)")
    add("--database", default=None, help=f"SQLAlchemy URL of the job database, e.g. postgresql+psycopg://… "
        f"(default: SQLite in --data_dir; or ${DATABASE_ENV})")  # fmt: skip
    add("--token", default=None, help=f"API token required from clients (or ${TOKEN_ENV}); required off loopback")
    add(
        "--max_upload_mb",
        type=float,
        default=4096,
        help="most MiB one upload may hold, its files together (default 4096)",
    )
    add("--max_files", type=int, default=20, help="most files in one upload (default 20)")
    add("--max_queued", type=int, default=200, help="most videos waiting or in progress (default 200)")
    add("--max_live", type=int, default=24, help="videos this process runs at once (default 24)")
    add("--memory_limit", type=float, default=0.4, help="fraction of system RAM for the whole service (default 0.4)")
    add("--quality", default="fast", choices=sorted(QUALITY_PRESETS), help="quality preset (default fast)")
    add("--workers", type=int, default=None, help="Dask worker processes (default: as the memory budget holds)")
    add("--dask_address", default=None, help="attach to this Dask scheduler (default: embedded)")
    add("--ray_address", default=None, help="attach to this Ray cluster (default: embedded)")
    add("--verbose", action="store_true", help="debug logging")
    return parser


def settings_from_args(args: argparse.Namespace):
    from pipeline.serve.app import MiB, ServiceSettings
    from pipeline.serve.db import sqlite_url

    low, high = MEMORY_LIMIT_RANGE
    if not low <= args.memory_limit <= high:
        raise ConfigError(f"--memory_limit is a fraction of system RAM in [{low}, {high}], got {args.memory_limit}")
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        raise ConfigError(
            f"--host {args.host} is reachable from other machines: give an API token (--token or ${TOKEN_ENV})"
        )
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    url = args.database or os.environ.get(DATABASE_ENV) or sqlite_url(data / "jobs.db")
    config = PipelineConfig(
        output_dir=str(data / "output"),
        models_dir=str(data / "models"),
        llm_data_dir=str(data / "llm_training_data"),
        quality=args.quality,
        memory_limit=args.memory_limit,
        workers=args.workers,
        dask_address=args.dask_address,
        ray_address=args.ray_address,
    )
    return ServiceSettings(
        data_dir=data,
        database_url=url,
        pipeline=config,
        token=token,
        max_upload_bytes=int(args.max_upload_mb * MiB),
        max_files=args.max_files,
        max_queued=args.max_queued,
        max_live=args.max_live,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("DASK_DISTRIBUTED__LOGGING__DISTRIBUTED", "warning")
    os.environ.setdefault("RAY_LOG_TO_STDERR", "0")
    for name in ("ray", "botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "httpx", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    load_env()
    try:
        settings = settings_from_args(args)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    import uvicorn

    from pipeline.serve.app import create_app

    app = create_app(settings)
    logger.info(
        "job service on http://%s:%d (database %s, data in %s%s)",
        args.host, args.port, redact(settings.database_url), settings.data_dir,
        ", API token required" if settings.token else "",
    )  # fmt: skip
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="info" if not args.verbose else "debug",
        timeout_graceful_shutdown=5, log_config=None, server_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 3

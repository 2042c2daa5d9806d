"""A PostgreSQL cluster of the test's own (Debian's package): ``initdb`` in a temporary folder,
the server on a free port of 127.0.0.1 only, a password login, stopped with ``pg_ctl``."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from serve.harness import free_port

INSTALL_HINT = "the PostgreSQL tests need Debian's postgresql package (make test installs it as root)"


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise AssertionError(INSTALL_HINT)
    return found[-1].parent


class Postgres:
    """``user``/``password`` own the cluster; ``url(db)`` is a SQLAlchemy URL for one of its databases."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        # PostgreSQL refuses to run as root: as root, the cluster belongs to Debian's postgres user,
        # in a folder of /tmp that user can reach (pytest's folders are root's alone).
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = Path(tempfile.mkdtemp(prefix="pose-pg-", dir="/tmp"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.user, self.password = "pose", secrets.token_hex(12)
        self.log = self.root / "server.log"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{args[0]}: {done.stderr[-2000:]}"
        return done

    def start(self) -> Postgres:
        password_file = self.root / "password"
        password_file.write_text(self.password)
        if self.as_user:
            shutil.chown(self.root, "postgres")
            shutil.chown(password_file, "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=100"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

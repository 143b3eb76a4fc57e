"""Builds the adapters a command needs from the loaded configuration.

Wiring only: no SQL and no HTTP happen here, and heavy libraries are imported
when a command asks for its targets, never when the CLI starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from e2ee_ops.context import AppContext
from e2ee_ops.errors import ConfigError, UnreachableError

if TYPE_CHECKING:
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.postgres import OpsDatabase
    from e2ee_ops.adapters.redis_client import RedisProbe
    from e2ee_ops.adapters.restarter import Restarter
    from e2ee_ops.procedures.redis_outage import Canary, RedisTargets


def api_clients(env: AppContext, token: str | None) -> list[ApiClient]:
    from e2ee_ops.adapters.api import clients_for

    return [env.closing(c) for c in clients_for(env.settings, token=token, environ=env.environ)]


def api_client(env: AppContext, token: str) -> ApiClient:
    """A client of the first API instance acting with the configured token `token`."""
    from e2ee_ops.adapters.api import ApiClient

    s = env.settings
    return env.closing(
        ApiClient(
            s.api.base_urls[0],
            token=s.tokens.resolve(token, environ=env.environ),
            timeout=s.api.timeout_seconds,
            retries=s.api.retries,
            max_response_bytes=s.api.max_response_bytes,
        )
    )


def database(env: AppContext, *, required: bool = True) -> OpsDatabase | None:
    from e2ee_ops.adapters.postgres import OpsDatabase

    pg = env.settings.postgres
    if not pg.url and not required:
        return None
    password = (
        pg.password.resolve(key="postgres.password", environ=env.environ) if pg.password else None
    )
    return OpsDatabase(
        pg.url,
        password=password.reveal() if password else None,
        connect_timeout=pg.connect_timeout_seconds,
        statement_timeout_ms=pg.statement_timeout_ms,
    )


def redis_probe(env: AppContext) -> RedisProbe:
    from e2ee_ops.adapters.redis_client import RedisProbe

    return env.closing(RedisProbe.from_settings(env.settings.redis, environ=env.environ))


def restarter(env: AppContext, service: str) -> Restarter:
    from e2ee_ops.adapters.restarter import Restarter

    services = env.settings.services
    spec = getattr(services, service).restart
    return Restarter(service, spec)


def canary(env: AppContext) -> Canary | None:
    """The canary pair, or None when it is not configured at all."""
    from e2ee_ops.procedures.redis_outage import Canary

    s = env.settings
    c = s.canary
    if s.tokens.canary_a is None and s.tokens.canary_b is None:
        return None
    missing = [
        key
        for key, value in (
            ("tokens.canary_a", s.tokens.canary_a),
            ("tokens.canary_b", s.tokens.canary_b),
            ("canary.device_a", c.device_a),
            ("canary.account_b", c.account_b),
            ("canary.device_b", c.device_b),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"the canary is half configured: {', '.join(missing)} missing")
    assert c.device_a and c.account_b and c.device_b
    return Canary(
        sender=api_client(env, "canary_a"),
        sender_device=c.device_a,
        receiver=api_client(env, "canary_b"),
        receiver_account=c.account_b,
        receiver_device=c.device_b,
    )


def redis_targets(env: AppContext, *, with_restarter: bool = False) -> RedisTargets:
    from e2ee_ops.procedures.redis_outage import RedisTargets

    return RedisTargets(
        admin_apis=api_clients(env, "admin"),
        redis=redis_probe(env),
        db=database(env, required=False),
        canary=canary(env),
        thresholds=env.settings.thresholds,
        restarter=restarter(env, "redis") if with_restarter else None,
        progress=env.progress,
        heartbeat_wait_seconds=env.settings.canary.delivery_timeout_seconds,
    )


@contextmanager
def action_lock(env: AppContext, section: str, *, command: str) -> Iterator[None]:
    """The lock an acting command of `section` (redis, rollback, abuse, ...) holds while
    it acts: an advisory lock on the service's PostgreSQL, which holds across hosts, or a
    lock file beside the journal when no database is configured or it cannot be reached.
    """
    from e2ee_ops.adapters.locks import file_lock
    from e2ee_ops.journal import current_actor

    holder = f"e2ee-ops {command} by {current_actor(env.environ)} pid {os.getpid()}"
    wait = env.settings.locks.wait_seconds
    db = database(env, required=False)
    with ExitStack() as stack:
        locked = False
        if db is not None:
            try:
                stack.enter_context(
                    db.advisory_lock(
                        section, holder=holder, wait_seconds=wait, on_wait=env.progress
                    )
                )
                locked = True
            except UnreachableError as exc:
                env.progress(f"{exc.sentence}; taking the local lock only")
        if not locked:
            path = env.settings.journal.path.expanduser().parent / f"{section}.lock"
            stack.enter_context(
                file_lock(path, holder=holder, wait_seconds=wait, on_wait=env.progress)
            )
        yield

"""The one place that turns settings into adapters and the targets procedures receive.

Wiring only: no SQL and no HTTP happen here, and heavy libraries are imported
when a command asks for its targets, never when the CLI starts. Adapters take plain
values (URLs, `Secret`s, timeouts); only this module reads the settings for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2ee_ops.context import AppContext
from e2ee_ops.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from e2ee_ops.adapters.abuse_db import AbuseDatabase
    from e2ee_ops.adapters.api import ApiClient
    from e2ee_ops.adapters.devices_db import DevicesDatabase
    from e2ee_ops.adapters.migrations import Migrations
    from e2ee_ops.adapters.notifiers import Notifier
    from e2ee_ops.adapters.postgres import OpsDatabase
    from e2ee_ops.adapters.redis_client import RedisProbe
    from e2ee_ops.adapters.restarter import Restarter
    from e2ee_ops.adapters.sentinel import SentinelAdmin
    from e2ee_ops.procedures.doctor import DoctorTargets
    from e2ee_ops.procedures.incident import Channels
    from e2ee_ops.procedures.redis_outage import Canary, RedisTargets
    from e2ee_ops.procedures.rollback_flag import FlagTargets
    from e2ee_ops.procedures.rollback_git import GitTargets
    from e2ee_ops.procedures.rollback_migration import MigrationTargets
    from e2ee_ops.secret import Secret

VERIFY_TOKENS = ("user", "canary_a", "canary_b")


def api_urls(env: AppContext) -> list[str]:
    """The API instances: api.base_urls, or the ready endpoints of the Kubernetes Service
    in api.discover (asked once per command)."""
    api = env.settings.api
    if api.discover is None:
        return list(api.base_urls)
    if "api_urls" not in env.wiring:
        from e2ee_ops.adapters.kubernetes import service_urls

        k = api.discover.kubernetes
        env.wiring["api_urls"] = service_urls(
            k.service,
            namespace=k.namespace,
            port=k.port,
            context=k.context,
            scheme=k.scheme,
            timeout=k.timeout_seconds,
        )
    urls: list[str] = env.wiring["api_urls"]
    return urls


def api_clients(env: AppContext, token: str | None) -> list[ApiClient]:
    """One client per API instance, acting with the configured token `token`
    (admin, user, ...), or anonymous when `token` is None."""
    from e2ee_ops.adapters.api import ApiClient

    s = env.settings
    secret = s.tokens.resolve(token, environ=env.environ) if token else None
    return [
        env.closing(
            ApiClient(url, token=secret, timeout=s.api.timeout_seconds, retries=s.api.retries)
        )
        for url in api_urls(env)
    ]


def api_client(env: AppContext, token: str) -> ApiClient:
    """A client of the first API instance acting with the configured token `token`."""
    from e2ee_ops.adapters.api import ApiClient

    s = env.settings
    return env.closing(
        ApiClient(
            api_urls(env)[0],
            token=s.tokens.resolve(token, environ=env.environ),
            timeout=s.api.timeout_seconds,
            retries=s.api.retries,
        )
    )


def verifier(env: AppContext, name: str | None) -> ApiClient | None:
    """The client acting as the user whose configured token is `name` (--verify-token)."""
    if name is None:
        return None
    if name not in VERIFY_TOKENS:
        raise UsageError(f"--verify-token {name!r}: choose user, canary_a or canary_b")
    return api_client(env, name)


def _secret(env: AppContext, ref: Any, key: str) -> Secret | None:
    """The secret the reference `ref` at `key` points to, or None when it is not set."""
    return ref.resolve(key=key, environ=env.environ) if ref is not None else None


def database(env: AppContext, *, required: bool = True) -> OpsDatabase | None:
    from e2ee_ops.adapters.postgres import OpsDatabase

    pg = env.settings.postgres
    if not pg.url and not required:
        return None
    password = _secret(env, pg.password, "postgres.password")
    return OpsDatabase(
        pg.url,
        password=password.reveal() if password else None,
        connect_timeout=pg.connect_timeout_seconds,
        statement_timeout_ms=pg.statement_timeout_ms,
    )


def _required_database(env: AppContext) -> OpsDatabase:
    db = database(env)
    assert db is not None
    return db


def devices_db(env: AppContext) -> DevicesDatabase:
    from e2ee_ops.adapters.devices_db import DevicesDatabase

    return DevicesDatabase(_required_database(env))


def abuse_db(env: AppContext) -> AbuseDatabase:
    from e2ee_ops.adapters.abuse_db import AbuseDatabase

    return AbuseDatabase(_required_database(env))


def migrations(env: AppContext, db: OpsDatabase) -> Migrations:
    """Alembic against the configured database, with the same password as every query."""
    from e2ee_ops.adapters.migrations import Migrations

    s = env.settings
    return Migrations(
        s.alembic.config,
        db.url,
        password=db.password,
        connect_timeout=s.postgres.connect_timeout_seconds,
    )


def redis_probe(env: AppContext) -> RedisProbe:
    from e2ee_ops.adapters.redis_client import RedisProbe

    r = env.settings.redis
    password = _secret(env, r.password, "redis.password")
    if r.sentinel is not None:
        probe = RedisProbe(
            sentinel_hosts=r.sentinel.hosts,
            service_name=r.sentinel.service_name,
            password=password,
            timeout=r.timeout_seconds,
        )
    elif r.url:
        probe = RedisProbe(url=r.url, password=password, timeout=r.timeout_seconds)
    else:
        raise ConfigError(
            "Redis is not configured", hint="set redis.url or redis.sentinel in the config"
        )
    return env.closing(probe)


def sentinel_admin(env: AppContext) -> SentinelAdmin | None:
    """The sentinels of redis.sentinel, or None when Redis is reached by URL."""
    from e2ee_ops.adapters.sentinel import SentinelAdmin

    r = env.settings.redis
    if r.sentinel is None:
        return None
    return env.closing(
        SentinelAdmin(
            r.sentinel.hosts,
            r.sentinel.service_name,
            password=_secret(env, r.password, "redis.password"),
            timeout=r.timeout_seconds,
        )
    )


def restarter(env: AppContext, service: str) -> Restarter:
    from e2ee_ops.adapters.restarter import Restarter, RestartSpec

    settings = getattr(env.settings.services, service).restart
    spec = (
        None
        if settings is None
        else RestartSpec(
            method=settings.method,
            unit=settings.unit,
            container=settings.container,
            command=list(settings.command) if settings.command else None,
            sudo=settings.sudo,
            timeout_seconds=settings.timeout_seconds,
            kind=settings.kind,
            name=settings.name,
            namespace=settings.namespace,
            context=settings.context,
        )
    )
    return Restarter(service, spec, remaining=env.remaining)


def notifiers(env: AppContext, channels: list[str]) -> list[Notifier]:
    """One notifier per requested channel, refusing a channel that is not configured."""
    from e2ee_ops.adapters.notifiers import PushNotifier, SmtpNotifier, WebhookNotifier

    n = env.settings.notifiers
    built: list[Notifier] = []
    for channel in channels:
        if channel == "webhook" and n.webhook:
            w = n.webhook
            built.append(
                WebhookNotifier(
                    w.url, slack_compatible=w.slack_compatible, timeout=w.timeout_seconds
                )
            )
        elif channel == "push" and n.push:
            p = n.push
            token = _secret(env, p.token, "notifiers.push.token")
            built.append(PushNotifier(p.url, token=token, timeout=p.timeout_seconds))
        elif channel == "email" and n.smtp:
            m = n.smtp
            built.append(
                SmtpNotifier(
                    m.host,
                    port=m.port,
                    from_address=m.from_address,
                    starttls=m.starttls,
                    use_ssl=m.use_ssl,
                    username=m.username,
                    password=_secret(env, m.password, "notifiers.smtp.password"),
                    timeout=m.timeout_seconds,
                )
            )
        else:
            key = {"email": "smtp"}.get(channel, channel)
            raise ConfigError(
                f"--notify {channel}: notifiers.{key} is not configured",
                hint="configure it in the config file or drop it from --notify",
            )
    return [env.closing(x) for x in built]


def incident_channels(env: AppContext) -> Channels:
    """The configured announcement channels, wired to the notify adapter."""
    from e2ee_ops.adapters.incident_notify import pagerduty_event, post_webhook
    from e2ee_ops.procedures.incident import Channels

    cfg = env.settings.incident
    found = Channels()
    url = _secret(env, cfg.webhook, "incident.webhook")
    if url is not None:
        hook = url
        found.webhook = lambda text: post_webhook(hook, text, timeout=cfg.timeout_seconds)
    pd = cfg.pagerduty
    if pd is not None:
        key = pd.routing_key.resolve(key="incident.pagerduty.routing_key", environ=env.environ)

        def page(
            action: str, dedup: str, summary: str, severity: str, details: Mapping[str, Any]
        ) -> None:
            pagerduty_event(
                pd.events_url,
                key,
                action=action,
                dedup_key=dedup,
                summary=summary,
                severity=severity,
                details=dict(details),
                timeout=cfg.timeout_seconds,
            )

        found.pager = page
    return found


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
        delivery_timeout_seconds=c.delivery_timeout_seconds,
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
        sentinel=sentinel_admin(env),
        progress=env.progress,
    )


def doctor_targets(env: AppContext) -> DoctorTargets:
    from e2ee_ops.procedures.doctor import DoctorTargets

    db = database(env, required=False)
    return DoctorTargets(
        public_apis=api_clients(env, None),
        admin_apis=api_clients(env, "admin"),
        redis=redis_probe(env),
        sentinel=sentinel_admin(env),
        db=db,
        migrations=migrations(env, db) if db is not None else None,
        thresholds=env.settings.thresholds,
    )


def flag_targets(env: AppContext, env_file: Path | None) -> FlagTargets:
    from e2ee_ops.procedures.rollback_flag import FlagTargets

    r = env.settings.rollback
    path = env_file or r.env_file
    if path is None:
        raise ConfigError(
            "no env file to edit", hint="give --env-file PATH or set rollback.env_file"
        )
    return FlagTargets(
        env_file=path,
        apis=api_clients(env, "user"),
        restarter=restarter(env, "api"),
        verify_device=r.verify_device,
        health_deadline_seconds=r.health_deadline_seconds,
        stream_close_seconds=r.stream_close_seconds,
        clock=env.clock,
        progress=env.progress,
    )


def migration_targets(env: AppContext) -> MigrationTargets:
    from e2ee_ops.adapters.schema_db import SchemaDatabase
    from e2ee_ops.procedures.rollback_migration import MigrationTargets

    db = _required_database(env)
    return MigrationTargets(
        migrations=migrations(env, db),
        schema=SchemaDatabase(db),
        protected=env.settings.rollback.protected_tables,
        progress=env.progress,
    )


def git_targets(
    env: AppContext, *, repo: Path | None, remote: str, branch: str | None
) -> GitTargets:
    from e2ee_ops.adapters.git import GitRepo
    from e2ee_ops.procedures.rollback_git import GitTargets

    return GitTargets(
        repo=GitRepo(
            repo or env.cwd or Path.cwd(), timeout=env.settings.rollback.git_timeout_seconds
        ),
        remote=remote,
        branch=branch or f"rollback-e2ee-{env.clock().astimezone():%Y%m%d}",
        progress=env.progress,
    )

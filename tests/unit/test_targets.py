"""cli/targets.py: settings become adapters here and nowhere else."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from e2ee_ops.cli import targets
from e2ee_ops.context import AppContext
from e2ee_ops.errors import ConfigError, UnreachableError, UsageError

TOKEN = "adm-TOKEN-1234567"


@pytest.fixture
def context(tmp_path: Path) -> Iterator[AppContext]:
    contexts: list[AppContext] = []

    def make(settings: Mapping[str, str], yaml: str = "") -> AppContext:
        config = tmp_path / "e2ee-ops.yaml"
        config.write_text(yaml, encoding="utf-8")
        env = AppContext.create(
            environ={"HOME": "/nonexistent", **settings}, cwd=tmp_path, config_file=config
        )
        contexts.append(env)
        return env

    yield make  # type: ignore[misc]
    for env in contexts:
        env.resources.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_one_api_client_per_base_url_with_the_named_token(context) -> None:  # type: ignore[no-untyped-def]
    env = context(
        {
            "E2EE_OPS_API__BASE_URLS": "http://a:1,http://b:2",
            "E2EE_OPS_TOKENS__ADMIN__ENV": "ADMIN_T",
            "ADMIN_T": TOKEN,
        }
    )
    clients = targets.api_clients(env, "admin")
    assert [c.host for c in clients] == ["a:1", "b:2"]
    assert all(c._headers()["Authorization"] == f"Bearer {TOKEN}" for c in clients)


def test_redis_through_sentinel_without_sentinels_is_unreachable(context) -> None:  # type: ignore[no-untyped-def]
    env = context(
        {"E2EE_OPS_REDIS__TIMEOUT_SECONDS": "0.3"},
        yaml=f"redis: {{sentinel: {{hosts: ['127.0.0.1:{closed_port()}'], service_name: dm}}}}",
    )
    probe = targets.redis_probe(env)
    assert probe.host.startswith("sentinel service dm")
    with pytest.raises(UnreachableError):
        probe.ping()


def test_unconfigured_redis_is_a_config_error(context) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="set redis.url or redis.sentinel"):
        targets.redis_probe(context({}))


def test_restarter_gets_the_configured_method(context) -> None:  # type: ignore[no-untyped-def]
    env = context(
        {}, yaml="services: {redis: {restart: {method: systemctl, unit: redis-server, sudo: true}}}"
    )
    assert targets.restarter(env, "redis").describe() == "sudo -n systemctl restart redis-server"
    assert targets.restarter(env, "api").spec is None


def test_doctor_and_rollback_check_the_schema_with_the_same_password(context) -> None:  # type: ignore[no-untyped-def]
    env = context(
        {
            "E2EE_OPS_POSTGRES__URL": "postgresql://ops@127.0.0.1:5/dm",
            "E2EE_OPS_POSTGRES__PASSWORD__ENV": "PG_PW",
            "PG_PW": "pg-secret-pw-42",
            "E2EE_OPS_API__BASE_URLS": "http://a:1",
            "E2EE_OPS_REDIS__URL": "redis://127.0.0.1:6",
            "E2EE_OPS_TOKENS__ADMIN__ENV": "ADMIN_T",
            "ADMIN_T": TOKEN,
        }
    )
    doctor = targets.doctor_targets(env).migrations
    rollback = targets.migration_targets(env).migrations
    assert doctor is not None
    assert doctor.password == rollback.password == "pg-secret-pw-42"
    assert doctor.database_url == rollback.database_url


def test_verify_token_names_a_user_token(context) -> None:  # type: ignore[no-untyped-def]
    env = context({})
    assert targets.verifier(env, None) is None
    with pytest.raises(UsageError, match="choose user, canary_a or canary_b"):
        targets.verifier(env, "admin")


def test_the_canary_waits_as_long_as_configured(context) -> None:  # type: ignore[no-untyped-def]
    env = context(
        {"A_T": TOKEN, "B_T": TOKEN + "b"},
        yaml="tokens: {canary_a: {env: A_T}, canary_b: {env: B_T}}\n"
        "canary: {device_a: da, account_b: '2', device_b: db, delivery_timeout_seconds: 4}\n",
    )
    canary = targets.canary(env)
    assert canary is not None and canary.delivery_timeout_seconds == 4

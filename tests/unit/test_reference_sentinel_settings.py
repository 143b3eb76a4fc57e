"""The reference server reaches Redis through Sentinel when E2EE_REDIS_SENTINELS is set."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from e2ee_ops.reference.relay import redis_client
from e2ee_ops.reference.settings import ServerSettings

DB = "postgresql://u@h/db"


def test_sentinels_replace_the_url_and_the_client_asks_them_for_the_primary() -> None:
    settings = ServerSettings.from_env(
        {
            "E2EE_DATABASE_URL": DB,
            "E2EE_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380",
            "E2EE_REDIS_SENTINEL_SERVICE": "e2ee",
        }
    )
    assert settings.redis_sentinels == ("10.0.0.1:26379", "10.0.0.2:26380")
    assert settings.redis_sentinel_service == "e2ee"
    client = redis_client(settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "e2ee" and pool.is_master
        hosts = [c.connection_pool.connection_kwargs for c in pool.sentinel_manager.sentinels]
        assert [(h["host"], h["port"]) for h in hosts] == [
            ("10.0.0.1", 26379),
            ("10.0.0.2", 26380),
        ]
    finally:
        asyncio.run(client.aclose())


def test_without_sentinels_the_url_is_required() -> None:
    with pytest.raises(SystemExit, match="E2EE_REDIS_URL is not set"):
        ServerSettings.from_env({"E2EE_DATABASE_URL": DB})

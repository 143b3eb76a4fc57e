"""RedisProbe without a Redis server: construction and the errors of a dead host.

The probe's behaviour against a real Redis is covered by the integration tests.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from e2ee_ops.adapters.redis_client import RedisProbe
from e2ee_ops.config import Secret
from e2ee_ops.errors import TimedOutError, UnreachableError


@pytest.fixture
def closed_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_unreachable_redis_names_the_host_not_the_password(closed_port: int) -> None:
    probe = RedisProbe(
        url=f"redis://ops:pa55word@127.0.0.1:{closed_port}/0",
        password=Secret("other-secret-pw"),
        timeout=0.5,
    )
    with pytest.raises(UnreachableError) as caught:
        probe.ping()
    assert caught.value.host == f"127.0.0.1:{closed_port}"
    assert "pa55word" not in caught.value.sentence
    assert "other-secret-pw" not in caught.value.sentence
    assert "pa55word" not in repr(probe)


def test_silent_redis_times_out(silent_port: int) -> None:
    probe = RedisProbe(url=f"redis://127.0.0.1:{silent_port}", timeout=0.3)
    with pytest.raises(TimedOutError, match="did not answer PING within 0.3 s"):
        probe.ping()


def test_rediss_url_is_accepted(closed_port: int) -> None:
    probe = RedisProbe(url=f"rediss://127.0.0.1:{closed_port}", timeout=0.3)
    assert probe.host == f"127.0.0.1:{closed_port}"
    with pytest.raises(
        UnreachableError, match=f"cannot connect to Redis at 127.0.0.1:{closed_port}"
    ):
        probe.info("stats")


def test_exactly_one_connection_method() -> None:
    with pytest.raises(ValueError, match="give exactly one of url or sentinel_hosts"):
        RedisProbe()
    with pytest.raises(ValueError, match="give exactly one of url or sentinel_hosts"):
        RedisProbe(url="redis://x", sentinel_hosts=["h:26379"])

"""A sandbox whose Redis runs as production runs it: a primary, one replica and three
sentinels (`sandbox up --redis sentinel`), shared by the Sentinel tests of one module."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2ee_ops import sandbox
from e2ee_ops.adapters.sentinel import SentinelAdmin
from e2ee_ops.procedures.redis_sentinel import sentinel_findings
from e2ee_ops.status import Status


@pytest.fixture(scope="module")
def sentinel_sandbox() -> Iterator[sandbox.SandboxState]:
    with tempfile.TemporaryDirectory(prefix="e2ee-ops-sentinel-") as state_dir:
        state = sandbox.up(Path(state_dir), api_instances=2, redis_mode="sentinel")
        try:
            yield state
        finally:
            sandbox.down(Path(state_dir))


@pytest.fixture
def sentinels(sentinel_sandbox: sandbox.SandboxState) -> Iterator[SentinelAdmin]:
    """The sandbox's sentinels; every Redis process runs and the topology is whole
    again after the test."""
    state = sentinel_sandbox
    admin = SentinelAdmin(state.sentinel_hosts, state.sentinel_service, timeout=1.0)
    yield admin
    sandbox.start_service(state.dir, "redis")
    wait_healthy(admin)


def wait_healthy(admin: SentinelAdmin, deadline: float = 30.0) -> None:
    """Until every sentinel finding is OK (quorum, primary, replicas linked)."""
    end = time.monotonic() + deadline
    while True:
        findings = sentinel_findings(admin)
        if all(f.status is Status.OK for f in findings):
            return
        if time.monotonic() > end:
            raise AssertionError([f.summary for f in findings])
        time.sleep(0.2)

"""A real sandbox (embedded PostgreSQL, Redis, two reference server instances) shared by every
integration test that drives `e2ee-ops` end to end: one per test session."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2ee_ops import sandbox
from e2ee_ops.reference.client import ReferenceClient


@pytest.fixture(scope="session")
def sandbox_state() -> Iterator[sandbox.SandboxState]:
    # Not tmp_path_factory: pytest prunes old numbered temp dirs, and a concurrent
    # pytest run could delete a live sandbox's data directory under it.
    with tempfile.TemporaryDirectory(prefix="e2ee-ops-sandbox-") as state_dir:
        state = sandbox.up(Path(state_dir), api_instances=2)
        try:
            yield state
        finally:
            sandbox.down(Path(state_dir))


@pytest.fixture
def sandbox_config(sandbox_state: sandbox.SandboxState) -> Iterator[Path]:
    """The sandbox's config; Redis and the API are running again after each test."""
    yield sandbox_state.config_path
    for service in ("redis", "api"):
        sandbox.start_service(sandbox_state.dir, service)


@pytest.fixture
def sandbox_settings(sandbox_state: sandbox.SandboxState) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(sandbox_state.config_path.read_text())  # type: ignore[no-any-return]


def token_of(state: sandbox.SandboxState, key: str) -> str:
    return Path(state.accounts[key].token_file).read_text().strip()


@pytest.fixture
def admin_client(sandbox_state: sandbox.SandboxState) -> Iterator[ReferenceClient]:
    with ReferenceClient(sandbox_state.api_url, token_of(sandbox_state, "admin")) as client:
        yield client

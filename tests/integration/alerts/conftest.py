"""A config pointing e2ee-ops at the session's reference server and database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.config import write_ops_config


@pytest.fixture
def ops_config(tmp_path, reference_server, clean_db, admin_token) -> Path:  # type: ignore[no-untyped-def]
    return write_ops_config(tmp_path, reference_server.url, clean_db, admin_token)

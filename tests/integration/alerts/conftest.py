"""A config pointing e2ee-ops at the session's reference server and database."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def write_config(tmp_path: Path, base_url: str, database_url: str, admin_token: str, **extra):  # type: ignore[no-untyped-def]
    token = tmp_path / "admin.token"
    token.write_text(admin_token)
    token.chmod(0o600)
    config = {
        "api": {"base_urls": [base_url], "timeout_seconds": 5},
        "tokens": {"admin": {"file": str(token)}},
        "postgres": {"url": database_url},
        "journal": {"path": str(tmp_path / "journal.jsonl")},
        **extra,
    }
    path = tmp_path / "e2ee-ops.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def ops_config(tmp_path, reference_server, clean_db, admin_token) -> Path:  # type: ignore[no-untyped-def]
    return write_config(tmp_path, reference_server.url, clean_db, admin_token)

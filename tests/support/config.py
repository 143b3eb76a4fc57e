"""Write an e2ee-ops config for a test into its tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_config(tmp_path: Path, **sections: Any) -> Path:
    """`e2ee-ops.yaml` in `tmp_path` with `sections`, the journal in `tmp_path`."""
    config = tmp_path / "e2ee-ops.yaml"
    config.write_text(
        yaml.safe_dump({"journal": {"path": str(tmp_path / "journal.jsonl")}, **sections})
    )
    return config


def write_ops_config(
    tmp_path: Path, base_url: str, database_url: str, admin_token: str, **extra: Any
) -> Path:
    """A config pointing at one API instance (the admin token in a 0600 file) and a
    database, plus `extra` sections."""
    token = tmp_path / "admin.token"
    token.write_text(admin_token)
    token.chmod(0o600)
    return write_config(
        tmp_path,
        api={"base_urls": [base_url], "timeout_seconds": 5},
        tokens={"admin": {"file": str(token)}},
        postgres={"url": database_url},
        **extra,
    )

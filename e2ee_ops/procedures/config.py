"""`config validate`: what the schema cannot check, secrets and files resolvable."""

from __future__ import annotations

from collections.abc import Mapping

from e2ee_ops.config import LoadedConfig, secret_refs
from e2ee_ops.errors import ConfigError
from e2ee_ops.status import Finding, Report, Status


def check_config(loaded: LoadedConfig, *, environ: Mapping[str, str] | None = None) -> Report:
    """What `config validate` reports beyond the schema: secrets and files resolvable."""
    findings = [
        Finding(
            name="config file",
            status=Status.OK,
            value=str(loaded.file) if loaded.file else "none",
            summary=(
                f"parsed {loaded.file}" + (f" (profile {loaded.profile})" if loaded.profile else "")
                if loaded.file
                else "no config file found; using environment and defaults"
            ),
        )
    ]
    for key, ref in secret_refs(loaded.settings):
        try:
            ref.resolve(key=key, environ=environ)
        except ConfigError as exc:
            findings.append(Finding(key, Status.WARNING, ref.describe(), exc.sentence))
        else:
            findings.append(Finding(key, Status.OK, ref.describe(), f"{key} is readable"))
    settings = loaded.settings
    files = [("alembic.config", settings.alembic.config)]
    if settings.rollback.env_file is not None:
        files.append(("rollback.env_file", settings.rollback.env_file))
    for key, path in files:
        exists = path.expanduser().is_file()
        findings.append(
            Finding(
                key,
                Status.OK if exists else Status.WARNING,
                str(path),
                f"{key} exists" if exists else f"{key}: {path} does not exist",
            )
        )
    return Report(title="config validate", findings=findings)

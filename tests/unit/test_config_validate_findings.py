"""`config validate` findings: the file parsed (and its profile), each secret reference
readable or not, and each configured file present or not, with their exact wording."""

from __future__ import annotations

from pathlib import Path

from e2ee_ops.config import load_config
from e2ee_ops.procedures.config import check_config
from e2ee_ops.status import Finding, Status


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_without_a_file_defaults_and_environment_are_used(tmp_path: Path) -> None:
    loaded = load_config(environ={"HOME": str(tmp_path)}, cwd=tmp_path)
    report = check_config(loaded, environ={})
    assert report.title == "config validate"
    assert report.findings[0] == Finding(
        "config file", Status.OK, "none", "no config file found; using environment and defaults"
    )
    assert [f.name for f in report.findings[1:]] == ["alembic.config"]


def test_a_file_its_profile_its_secrets_and_its_files(tmp_path: Path) -> None:
    ini = write(tmp_path / "alembic.ini", "[alembic]\n")
    missing = tmp_path / "nowhere.env"
    config = write(
        tmp_path / "c.yaml",
        "tokens: {admin: {env: ADMIN_T}, user: {env: USER_T}}\n"
        f"alembic: {{config: '{ini}'}}\n"
        "profiles: {prod: {rollback: {env_file: '" + str(missing) + "'}}}\n",
    )
    loaded = load_config(
        config_file=config, profile="prod", environ={"HOME": str(tmp_path)}, cwd=tmp_path
    )
    report = check_config(loaded, environ={"ADMIN_T": "x" * 12})
    assert report.findings == [
        Finding("config file", Status.OK, str(config), f"parsed {config} (profile prod)"),
        Finding("tokens.admin", Status.OK, "env:ADMIN_T", "tokens.admin is readable"),
        Finding(
            "tokens.user",
            Status.WARNING,
            "env:USER_T",
            "tokens.user: environment variable USER_T is not set or empty: "
            "export USER_T or point tokens.user at a file",
        ),
        Finding("alembic.config", Status.OK, str(ini), "alembic.config exists"),
        Finding(
            "rollback.env_file",
            Status.WARNING,
            str(missing),
            f"rollback.env_file: {missing} does not exist",
        ),
    ]


def test_a_file_without_a_profile(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "tokens: {}\n")
    loaded = load_config(config_file=config, environ={"HOME": str(tmp_path)}, cwd=tmp_path)
    first = check_config(loaded, environ={}).findings[0]
    assert first == Finding("config file", Status.OK, str(config), f"parsed {config}")


def test_secrets_are_read_from_the_process_environment_by_default(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    config = write(tmp_path / "c.yaml", "tokens: {admin: {env: ADMIN_FROM_PROCESS}}\n")
    loaded = load_config(config_file=config, environ={"HOME": str(tmp_path)}, cwd=tmp_path)
    monkeypatch.setenv("ADMIN_FROM_PROCESS", "y" * 12)
    [admin] = [f for f in check_config(loaded).findings if f.name == "tokens.admin"]
    assert admin.status is Status.OK

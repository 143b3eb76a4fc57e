from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from e2ee_ops.config import load_config, packaged_alembic_ini
from e2ee_ops.errors import REDACTED, ConfigError
from e2ee_ops.procedures.config import check_config
from e2ee_ops.secret import Secret, write_secret_file
from e2ee_ops.status import Status

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def env_with(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


def test_defaults_are_the_runbook_numbers(tmp_path: Path) -> None:
    loaded = load_config(environ=env_with(tmp_path), cwd=tmp_path)
    t = loaded.settings.thresholds
    assert (t.otpk_critical, t.otpk_warning, t.signed_prekey_max_age_days) == (5, 10, 90)
    assert (t.identity_changes_per_day, t.redis_down_seconds, t.sse_failure_rate) == (2, 60, 0.10)
    assert (t.delivery_p99_ms, t.pubsub_lag_seconds, t.undelivered_window_minutes) == (500, 2, 5)
    assert loaded.settings.alembic.config == packaged_alembic_ini()
    assert loaded.settings.journal.path == tmp_path / ".local/state/e2ee-ops/journal.jsonl"
    assert loaded.file is None and loaded.source_of("thresholds.otpk_critical") == "default"


def test_precedence_env_over_yaml_over_default(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "api:\n  timeout_seconds: 3\n  retries: 4\nthresholds:\n  otpk_warning: 20\n",
    )
    loaded = load_config(
        config_file=config,
        environ=env_with(
            tmp_path, E2EE_OPS_API__TIMEOUT_SECONDS="7", E2EE_OPS_THRESHOLDS__OTPK_WARNING="15"
        ),
    )
    s = loaded.settings
    assert s.api.timeout_seconds == 7
    assert loaded.source_of("api.timeout_seconds") == "env E2EE_OPS_API__TIMEOUT_SECONDS"
    assert s.thresholds.otpk_warning == 15
    assert loaded.source_of("thresholds.otpk_warning") == "env E2EE_OPS_THRESHOLDS__OTPK_WARNING"
    assert s.api.retries == 4 and loaded.source_of("api.retries") == f"file {config}"
    assert s.thresholds.otpk_critical == 5
    assert loaded.source_of("thresholds.otpk_critical") == "default"


def test_env_lists_are_comma_separated(tmp_path: Path) -> None:
    loaded = load_config(
        environ=env_with(tmp_path, E2EE_OPS_API__BASE_URLS="http://a:1, http://b:2/"),
        cwd=tmp_path,
    )
    assert loaded.settings.api.base_urls == ["http://a:1", "http://b:2"]


def test_unknown_env_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="E2EE_OPS_THRESHOLDS__OTPK_CRITCAL names no setting"):
        load_config(environ=env_with(tmp_path, E2EE_OPS_THRESHOLDS__OTPK_CRITCAL="3"), cwd=tmp_path)


def test_control_variables_are_not_settings(tmp_path: Path) -> None:
    environ = env_with(tmp_path, E2EE_OPS_ACTOR="me", E2EE_OPS_TEST_DATABASE_URL="x")
    loaded = load_config(environ=environ, cwd=tmp_path)  # no "names no setting" error
    plain = load_config(environ=env_with(tmp_path), cwd=tmp_path)
    assert loaded.settings == plain.settings
    assert loaded.provenance == {}
    assert all(e.source == "default" for e in loaded.entries())
    # ...while a variable shaped like a setting (double underscore) must name one.
    with pytest.raises(ConfigError, match="E2EE_OPS_ACTOR__NAME names no setting"):
        load_config(environ=env_with(tmp_path, E2EE_OPS_ACTOR__NAME="me"), cwd=tmp_path)


def test_profiles_override_the_top_level(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        """
api: {base_urls: [http://base:8000], retries: 1}
tokens: {admin: {env: BASE_ADMIN}}
default_profile: staging
profiles:
  staging: {api: {base_urls: [http://staging:8000]}}
  prod:
    api: {base_urls: [http://p1:8000, http://p2:8000]}
    tokens: {admin: {file: prod-admin.token}}
""",
    )
    staging = load_config(config_file=config, environ=env_with(tmp_path))
    assert staging.profile == "staging"
    assert staging.settings.api.base_urls == ["http://staging:8000"]
    assert staging.settings.api.retries == 1
    assert staging.source_of("api.base_urls") == f"file {config} (profile staging)"

    prod = load_config(config_file=config, profile="prod", environ=env_with(tmp_path))
    admin = prod.settings.tokens.admin
    # a profile's {file:} replaces the base {env:} whole, relative to the config file
    assert admin is not None and admin.env is None and admin.file == tmp_path / "prod-admin.token"

    via_env = load_config(config_file=config, environ=env_with(tmp_path, E2EE_OPS_PROFILE="prod"))
    assert via_env.profile == "prod"

    with pytest.raises(ConfigError, match=r"profile 'qa' is not defined .*prod, staging"):
        load_config(config_file=config, profile="qa", environ=env_with(tmp_path))


def test_file_lookup_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    user = write(home / ".config/e2ee-ops/config.yaml", "api: {retries: 1}\n")
    assert load_config(environ=env_with(home), cwd=cwd).file == user

    xdg = write(tmp_path / "xdg/e2ee-ops/config.yaml", "api: {retries: 5}\n")
    environ = env_with(home, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert load_config(environ=environ, cwd=cwd).file == xdg

    local = write(cwd / "e2ee-ops.yaml", "api: {retries: 2}\n")
    assert load_config(environ=environ, cwd=cwd).file == local

    named = write(tmp_path / "named.yaml", "api: {retries: 3}\n")
    environ["E2EE_OPS_CONFIG"] = str(named)
    assert load_config(environ=environ, cwd=cwd).settings.api.retries == 3

    flag = write(tmp_path / "flag.yaml", "api: {retries: 4}\n")
    assert load_config(config_file=flag, environ=environ, cwd=cwd).settings.api.retries == 4

    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.yaml", environ=environ, cwd=cwd)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "thresholds:\n  otpk_critical: lots\n",
            "thresholds.otpk_critical: Input should be a valid integer",
        ),
        ("thresholds:\n  otpk_criticle: 3\n", "thresholds.otpk_criticle: unknown key"),
        ("colour: blue\n", "colour: unknown key"),
        (
            "tokens:\n  admin: abc123\n",
            "tokens.admin: a literal secret is not allowed here; "
            "give {env: VARIABLE} or {file: PATH}",
        ),
        ("tokens:\n  admin: {env: A, file: b}\n", "tokens.admin: give exactly one of"),
        (
            "notifiers:\n  smtp: {host: h, from: a@b, password: pw}\n",
            "notifiers.smtp.password: a literal secret",
        ),
        ("redis: {url: 'http://x'}\n", "redis.url: must start with redis://"),
        ("api: {base_urls: []}\n", "api.base_urls: give at least one"),
        (
            "services:\n  redis:\n    restart: {method: docker}\n",
            "services.redis.restart: method docker needs container",
        ),
        (
            "services:\n  redis:\n    restart: {method: ssh}\n",
            "services.redis.restart.method: Input should be",
        ),
        ("thresholds: {otpk_warning: 3}\n", "otpk_warning (3) must not be below otpk_critical (5)"),
        ("- a list\n", "must hold a mapping"),
        ("api: [unclosed\n", "is not valid YAML at line"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = write(tmp_path / "c.yaml", yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_config(config_file=config, environ=env_with(tmp_path))
    assert message in caught.value.sentence


def test_invalid_value_error_says_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(from env E2EE_OPS_API__RETRIES\)"):
        load_config(environ=env_with(tmp_path, E2EE_OPS_API__RETRIES="many"), cwd=tmp_path)


def test_secret_never_shows_itself() -> None:
    secret = Secret("tok-ABCDEFGH-1234")
    assert str(secret) == REDACTED and "tok-ABCDEFGH" not in repr(secret)
    assert f"{secret}" == REDACTED
    assert secret.reveal() == "tok-ABCDEFGH-1234"


def test_tokens_resolve_from_env_and_file_only_when_asked(tmp_path: Path) -> None:
    token_file = tmp_path / "user.token"
    config = write(
        tmp_path / "c.yaml",
        f"tokens:\n  admin: {{env: ADMIN_T}}\n  user: {{file: {token_file}}}\n",
    )
    # Loading does not read the token file or need the variable.
    loaded = load_config(config_file=config, environ=env_with(tmp_path))
    tokens = loaded.settings.tokens
    with pytest.raises(ConfigError, match="tokens.admin: environment variable ADMIN_T is not set"):
        tokens.resolve("admin", environ={})
    assert tokens.resolve("admin", environ={"ADMIN_T": "adm-1234567\n"}).reveal() == "adm-1234567"
    with pytest.raises(ConfigError, match="does not exist"):
        tokens.resolve("user")
    write_secret_file(token_file, "usr-7654321\n")
    assert tokens.resolve("user").reveal() == "usr-7654321"
    with pytest.raises(ConfigError, match="no canary_a token is configured"):
        tokens.resolve("canary_a")


def test_world_readable_secret_file_is_refused(tmp_path: Path) -> None:
    token_file = write(tmp_path / "t", "abcdef")
    token_file.chmod(0o644)
    config = write(tmp_path / "c.yaml", f"tokens: {{admin: {{file: {token_file}}}}}\n")
    tokens = load_config(config_file=config, environ=env_with(tmp_path)).settings.tokens
    refused = r"accessible to its group or other users \(mode 0644\).*chmod 600"
    with pytest.raises(ConfigError, match=refused):
        tokens.resolve("admin")


def test_write_secret_file_uses_mode_0600_even_over_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "secret"
    write_secret_file(path, "one")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_secret_file(path, "two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "two"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_entries_show_references_not_secrets_and_redact_urls(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "tokens: {admin: {env: ADMIN_T}}\npostgres: {url: 'postgresql://ops:pw123@db/app'}\n",
    )
    loaded = load_config(config_file=config, environ=env_with(tmp_path, ADMIN_T="sekrit-value"))
    entries = {e.key: e for e in loaded.entries()}
    assert entries["tokens.admin"].value == "env:ADMIN_T"
    assert entries["tokens.admin"].source == f"file {config}"
    assert "pw123" not in entries["postgres.url"].value
    assert entries["thresholds.otpk_critical"].source == "default"
    assert all("sekrit-value" not in e.value for e in entries.values())


def test_check_config_reports_unresolvable_secrets_as_warnings(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "tokens: {admin: {env: ADMIN_T}, user: {env: USER_T}}\n")
    loaded = load_config(config_file=config, environ=env_with(tmp_path))
    report = check_config(loaded, environ={"ADMIN_T": "x" * 12})
    by_name = {f.name: f for f in report.findings}
    assert by_name["tokens.admin"].status is Status.OK
    assert by_name["tokens.user"].status is Status.WARNING
    assert report.status is Status.WARNING


def test_example_config_is_valid_for_every_profile(tmp_path: Path) -> None:
    example = REPO / "config.example.yaml"
    for profile in (None, "staging", "prod"):
        loaded = load_config(config_file=example, profile=profile, environ=env_with(tmp_path))
        assert loaded.settings.services.redis.restart is not None


def test_settings_are_not_read_at_import_time(tmp_path: Path) -> None:
    import subprocess
    import sys

    environ = dict(os.environ, E2EE_OPS_CONFIG=str(tmp_path / "missing.yaml"))
    code = "import e2ee_ops.config, e2ee_ops.cli.main, e2ee_ops.context"
    subprocess.run([sys.executable, "-c", code], check=True, env=environ, cwd=tmp_path)


def test_every_setting_is_read_by_something() -> None:
    # A documented key nothing reads is a promise the toolkit does not keep.
    from e2ee_ops.config import Settings
    from e2ee_ops.schema import Section, field_type, fields_of

    package = REPO / "e2ee_ops"
    code = "\n".join(
        p.read_text(encoding="utf-8")
        for p in package.rglob("*.py")
        if p.name != "config.py" and "reference" not in p.parts
    )

    def unread(section: type[Section], prefix: str = "") -> list[str]:
        missing = []
        for f in fields_of(section):
            inner = field_type(section, f.name)
            if isinstance(inner, type) and issubclass(inner, Section):
                missing += unread(inner, f"{prefix}{f.name}.")
            elif f".{f.name}" not in code and f'"{f.name}"' not in code:
                missing.append(prefix + f.name)
        return missing

    assert unread(Settings) == []

"""Secrets never show: masked whole, refused when unsafe."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_ops.errors import REDACTED, redact
from tests.support.cli import cli
from tests.unit.conftest import isolated_env

__all__ = ["isolated_env"]  # the fixture, used by name below


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ops:p@ss@word@db:5432/e2ee", f"postgresql://ops:{REDACTED}@db:5432/e2ee"),
        ("redis://:s3cr@t@localhost:6379/0", f"redis://:{REDACTED}@localhost:6379/0"),
        ("https://u:pw@h/p?q=a@b", f"https://u:{REDACTED}@h/p?q=a@b"),
    ],
)
def test_url_password_with_at_signs_is_masked_whole(url: str, shown: str) -> None:
    assert redact(f"cannot reach {url} now") == f"cannot reach {shown} now"


SLACK = "https://hooks.slack.example/services/T000/B000/very-secret-path"


def test_webhook_and_push_urls_are_secret_references_shown_masked(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    push_file = tmp_path / "push.url"
    push_file.write_text("https://push.example.test/v1/secret-gateway-path\n")
    push_file.chmod(0o600)
    config = tmp_path / "c.yaml"
    config.write_text(
        "notifiers:\n"
        "  webhook: {url: {env: HOOK_URL}}\n"
        f"  push: {{url: {{file: {push_file}}}}}\n"
    )
    shown = cli("--config", str(config), "-o", "json", "config", "show", env={"HOOK_URL": SLACK})
    assert shown.exit_code == 0, shown.stderr
    values = {i["key"]: i["value"] for i in shown.json["items"]}
    assert values["notifiers.webhook.url"] == "env:HOOK_URL"
    assert values["notifiers.push.url"] == f"file:{push_file}"
    assert "very-secret-path" not in shown.stdout and "secret-gateway-path" not in shown.stdout

    literal = tmp_path / "literal.yaml"
    literal.write_text(f"notifiers:\n  webhook: {{url: '{SLACK}'}}\n")
    refused = cli("--config", str(literal), "config", "show")
    assert refused.exit_code == 3
    assert "notifiers.webhook.url: a literal secret is not allowed here" in refused.stderr
    assert "very-secret-path" not in refused.stderr


def test_a_token_with_a_line_break_is_refused_at_load_time(
    isolated_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("tokens: {admin: {env: ADMIN_T}}\napi: {base_urls: ['http://127.0.0.1:9']}\n")
    token = "first-half-of-token\nsecond-half-of-token"
    result = cli("--config", str(config), "--debug", "abuse", "block", "5", "--reason", "x",
                 env={"ADMIN_T": token})  # fmt: skip
    assert result.exit_code == 3
    assert (
        "tokens.admin: the secret from env:ADMIN_T contains a line break or control character"
        in result.stderr
    )
    assert "first-half" not in result.stderr and "second-half" not in result.stderr


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o604, 0o610])
def test_token_files_open_to_group_or_others_are_refused(
    isolated_env: dict[str, str], tmp_path: Path, mode: int
) -> None:
    token = tmp_path / "admin.token"
    token.write_text("token-value-0123456789\n")
    token.chmod(mode)
    config = tmp_path / "c.yaml"
    config.write_text(f"tokens: {{admin: {{file: {token}}}}}\n")
    result = cli("--config", str(config), "-o", "json", "config", "validate")
    assert result.exit_code == 1  # config validate reports it as a WARNING finding
    finding = next(f for f in result.json["findings"] if f["name"] == "tokens.admin")
    assert f"accessible to its group or other users (mode {mode:04o})" in finding["summary"]
    token.chmod(0o600)
    assert cli("--config", str(config), "config", "validate").exit_code == 0

"""Reminders at most once: recorded before sending, an unanswered send counts as sent,
and the receiver gets a key to de-duplicate on."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from tests.integration.robustness.conftest import TOKEN_ENV, write_config
from tests.integration.robustness.fakes import after, hang, json_body
from tests.support.cli import cli


@pytest.fixture
def stuck_user(users) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    account_id, client = users.new("reminded")
    return account_id, client.register_device("phone", prekeys=2)["device_id"]


def _config(tmp_path: Path, database_url: str) -> Path:
    return write_config(
        tmp_path,
        postgres={"url": database_url},
        notifiers={"webhook": {"url": {"env": "ROBUST_HOOK"}, "timeout_seconds": 0.5}},
    )


def _remind(config: Path, account_id: int, hook_url: str):  # type: ignore[no-untyped-def]
    return cli(
        "--config", str(config), "-o", "json", "devices", "stuck", "--user", str(account_id),
        "--notify", "webhook", "--execute", "--yes",
        env={**TOKEN_ENV, "ROBUST_HOOK": hook_url},
    )  # fmt: skip


def _posts(server) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [r for r in server.raw_requests if r.startswith(b"POST /hook")]


def test_a_webhook_that_never_answers_is_reminded_once(
    fake_server, stuck_user, database_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    account_id, device_id = stuck_user
    hook = fake_server({"/hook": hang})
    config = _config(tmp_path, database_url)

    first = _remind(config, account_id, f"{hook.url}/hook")
    assert first.exit_code == 1, first.stdout + first.stderr  # WARNING: unconfirmed
    assert "webhook: sent, unconfirmed" in first.json["steps"][0]["outcome"]
    second = _remind(config, account_id, f"{hook.url}/hook")
    assert second.exit_code == 0, second.stdout + second.stderr
    assert "webhook: already reminded" in second.json["steps"][0]["outcome"]

    posts = _posts(hook)
    assert len(posts) == 1
    key = f"idempotency-key: e2ee-ops-reminder-{device_id}-".encode()
    assert key in posts[0].lower()


def test_postgres_lost_right_after_the_send_does_not_send_again(
    fake_server, stuck_user, database_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    account_id, _ = stuck_user

    def lose_postgres() -> None:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'e2ee-ops%%' AND pid <> pg_backend_pid()"
            )

    hook = fake_server({"/hook": after(lose_postgres, json_body({"ok": True}))})
    config = _config(tmp_path, database_url)

    first = _remind(config, account_id, f"{hook.url}/hook")
    assert first.exit_code == 3, first.stdout + first.stderr  # it lost PostgreSQL mid-run
    assert "PostgreSQL" in first.stderr
    second = _remind(config, account_id, f"{hook.url}/hook")
    assert second.exit_code == 0, second.stdout + second.stderr
    assert "webhook: already reminded" in second.json["steps"][0]["outcome"]
    assert len(_posts(hook)) == 1

"""Receivers for reminders (a real SMTP server, a real HTTP server) and an e2ee-ops config
pointing at the session's reference server, its PostgreSQL and those receivers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from e2ee_ops.dburl import libpq_url
from tests.support.receiver import HttpReceiver


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        from email import message_from_bytes

        with self.lock:
            self.messages.append(
                (list(envelope.rcpt_tos), message_from_bytes(envelope.original_content))
            )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on localhost, plain (no TLS, no auth)."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # aiosmtpd checks readiness by connecting: no port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, mailbox
    finally:
        controller.stop()


@pytest.fixture
def ops_config(
    tmp_path: Path,
    reference_server: Any,
    clean_db: str,
    admin_token: str,
    http_receiver: HttpReceiver,
    smtp_server: tuple[str, int, Mailbox],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """An e2ee-ops config for the session's server, database and local receivers."""
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS e2ee_ops_notifications")
    token_file = tmp_path / "admin.token"
    token_file.write_text(admin_token)
    token_file.chmod(0o600)
    monkeypatch.setenv("PUSH_TOKEN_FOR_TESTS", "push-gateway-secret-123")
    monkeypatch.setenv("WEBHOOK_URL_FOR_TESTS", f"{http_receiver.url}/hook")
    monkeypatch.setenv("PUSH_URL_FOR_TESTS", f"{http_receiver.url}/push")
    host, port, _ = smtp_server
    config = {
        "api": {"base_urls": [reference_server.url]},
        "tokens": {"admin": {"file": str(token_file)}},
        "postgres": {"url": clean_db},
        "notifiers": {
            "webhook": {"url": {"env": "WEBHOOK_URL_FOR_TESTS"}},
            "push": {
                "url": {"env": "PUSH_URL_FOR_TESTS"},
                "token": {"env": "PUSH_TOKEN_FOR_TESTS"},
            },
            "smtp": {"host": host, "port": port, "starttls": False, "from": "ops@example.com"},
        },
        "journal": {"path": str(tmp_path / "journal.jsonl")},
    }
    path = tmp_path / "e2ee-ops.yaml"
    path.write_text(yaml.safe_dump(config))
    return path

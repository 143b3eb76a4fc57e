"""Notifier adapters: webhook and push over HTTP (respx), email against a real SMTP server
with STARTTLS and AUTH (aiosmtpd on loopback, a certificate made for the test)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from e2ee_ops.adapters.notifiers import (
    PushNotifier,
    Reminder,
    SmtpNotifier,
    WebhookNotifier,
)
from e2ee_ops.errors import ActionFailed, AuthError, SkipReminder, TimedOutError, UnreachableError
from e2ee_ops.secret import Secret

HOOK = "https://hooks.example.test/services/T000/B000/very-secret-path"
PUSH = "https://push.example.test/v1/notify"


def reminder(email: str | None = "grace@example.test") -> Reminder:
    return Reminder(
        user_id=7,
        username="grace",
        email=email,
        device_id="d-1",
        device_name="grace-phone",
        prekeys_remaining=3,
        severity="CRITICAL",
        subject="Please open the app to refresh your security keys",
        text="Your device needs to refresh security keys. Please open the app.",
    )


@respx.mock
def test_webhook_posts_plain_and_slack_shapes() -> None:
    route = respx.post(HOOK).mock(return_value=httpx.Response(200))
    with_plain = WebhookNotifier(HOOK, timeout=2)
    with_plain.send(reminder())
    slack = WebhookNotifier(HOOK, timeout=2, slack_compatible=True)
    slack.send(reminder())
    plain_body, slack_body = (call.request.content for call in route.calls)
    assert b'"device_id":"d-1"' in plain_body.replace(b" ", b"")
    assert b'"text"' in slack_body and b"grace-phone" in slack_body
    with_plain.close()
    slack.close()


@respx.mock
def test_push_sends_the_gateway_token_and_never_shows_it() -> None:
    route = respx.post(PUSH).mock(return_value=httpx.Response(401))
    push = PushNotifier(PUSH, timeout=2, token=Secret("gateway-token-xyz"))
    with pytest.raises(AuthError) as refused:
        push.send(reminder())
    assert route.calls[0].request.headers["Authorization"] == "Bearer gateway-token-xyz"
    assert "gateway-token-xyz" not in str(refused.value)
    push.close()


@pytest.mark.parametrize(
    ("side_effect", "error"),
    [
        (httpx.Response(503), ActionFailed),
        (httpx.ConnectTimeout("slow"), TimedOutError),
        (httpx.ConnectError("refused"), UnreachableError),
    ],
)
@respx.mock
def test_webhook_failures_name_the_host_not_the_secret_path(side_effect: Any, error: type) -> None:
    respx.post(HOOK).mock(side_effect=[side_effect])
    hook = WebhookNotifier(HOOK, timeout=2)
    with pytest.raises(error) as failed:
        hook.send(reminder())
    assert "hooks.example.test" in str(failed.value)
    assert "very-secret-path" not in str(failed.value)
    hook.close()


# ---- SMTP, for real ----------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.original_content))
        return "250 OK"


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[int, Inbox, ssl.SSLContext]]:
    """aiosmtpd requiring STARTTLS and AUTH (user ops / password s3cret-pw)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"ops",
            b"s3cret-pw",
        )
        return AuthResult(success=ok, handled=False)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield port, inbox, client_ctx
    finally:
        controller.stop()


def _smtp(port: int, ctx: ssl.SSLContext, **overrides: Any) -> SmtpNotifier:
    options: dict[str, Any] = {
        "port": port,
        "from_address": "e2ee-ops@example.test",
        "starttls": True,
        "username": "ops",
        "password": Secret("s3cret-pw"),
        "timeout": 5,
        "ssl_context": ctx,
    }
    options.update(overrides)
    return SmtpNotifier("127.0.0.1", **options)


def test_email_over_starttls_with_login(tls_smtp: tuple[int, Inbox, ssl.SSLContext]) -> None:
    port, inbox, ctx = tls_smtp
    _smtp(port, ctx).send(reminder())
    assert len(inbox.messages) == 1
    sent = inbox.messages[0]
    assert sent["To"] == "grace@example.test"
    assert sent["Subject"] == "Please open the app to refresh your security keys"


def test_wrong_password_is_an_auth_error_without_the_password(
    tls_smtp: tuple[int, Inbox, ssl.SSLContext],
) -> None:
    port, inbox, ctx = tls_smtp
    with pytest.raises(AuthError) as refused:
        _smtp(port, ctx, password=Secret("wrong-password-123")).send(reminder())
    assert "wrong-password-123" not in str(refused.value) and not inbox.messages


def test_without_starttls_the_server_refuses_and_nothing_is_sent(
    tls_smtp: tuple[int, Inbox, ssl.SSLContext],
) -> None:
    port, inbox, ctx = tls_smtp
    with pytest.raises((ActionFailed, AuthError)):
        _smtp(port, ctx, starttls=False).send(reminder())
    assert not inbox.messages


def test_an_untrusted_certificate_is_refused(tls_smtp: tuple[int, Inbox, ssl.SSLContext]) -> None:
    port, inbox, _ = tls_smtp
    with pytest.raises(UnreachableError, match=r"cannot reach .*\(SSLCertVerificationError\)"):
        _smtp(port, ssl.create_default_context()).send(reminder())
    assert not inbox.messages


def test_owner_without_email_is_skipped() -> None:
    with pytest.raises(SkipReminder, match="user .* has no email address"):
        SmtpNotifier("127.0.0.1", port=1, from_address="x@example.test").send(reminder(None))


def test_email_has_date_and_message_id(tls_smtp: tuple[int, Inbox, ssl.SSLContext]) -> None:
    from email.utils import parsedate_to_datetime

    port, inbox, ctx = tls_smtp
    sent_at = dt.datetime(2026, 11, 29, 1, 2, 3, tzinfo=dt.UTC)
    notifier = _smtp(port, ctx, clock=lambda: sent_at)
    notifier.send(reminder())
    notifier.send(reminder())
    first, second = inbox.messages
    assert parsedate_to_datetime(first["Date"]) == sent_at
    assert first["Message-ID"].startswith("<") and first["Message-ID"].endswith("@example.test>")
    assert first["Message-ID"] != second["Message-ID"]


@respx.mock
def test_slack_text_is_escaped_so_mentions_and_links_stay_text() -> None:
    route = respx.post(HOOK).mock(return_value=httpx.Response(200))
    sneaky = dataclasses.replace(reminder(), device_name="<!channel> & <https://x.test|click>")
    slack = WebhookNotifier(HOOK, timeout=2, slack_compatible=True)
    slack.send(sneaky)
    slack.close()
    text = json.loads(route.calls[0].request.content)["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://x.test|click&gt;" in text
    assert "device “" in text  # the name as people write it, not a Python repr


@respx.mock
def test_webhook_retries_429_after_the_wait_retry_after_asks_for() -> None:
    route = respx.post(HOOK).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(429),
            httpx.Response(200),
        ]
    )
    waits: list[float] = []
    hook = WebhookNotifier(HOOK, timeout=2, sleep=waits.append)
    hook.send(reminder())
    hook.close()
    assert route.call_count == 3 and waits == [2.0, 1.0]


@respx.mock
def test_webhook_429_asking_too_long_a_wait_fails_without_waiting() -> None:
    respx.post(HOOK).mock(return_value=httpx.Response(429, headers={"Retry-After": "3600"}))
    waits: list[float] = []
    hook = WebhookNotifier(HOOK, timeout=2, sleep=waits.append)
    with pytest.raises(ActionFailed, match="HTTP 429") as caught:
        hook.send(reminder())
    hook.close()
    assert waits == [] and "very-secret-path" not in str(caught.value)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from e2ee_ops.adapters.http import retry_after_seconds

    now = dt.datetime(2026, 11, 29, 1, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Sun, 29 Nov 2026 01:00:30 GMT", now=now) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@respx.mock
def test_incident_webhook_escapes_the_title() -> None:
    from e2ee_ops.adapters.incident_notify import post_webhook

    route = respx.post(HOOK).mock(return_value=httpx.Response(200))
    post_webhook(Secret(HOOK), "P1 opened: <!channel> redis down", timeout=2)
    assert json.loads(route.calls[0].request.content) == {
        "text": "P1 opened: &lt;!channel&gt; redis down"
    }

"""Reminders to a device's owner: a webhook, email over SMTP, a push gateway.

Each notifier sends one `Reminder` per call, with a timeout, and raises the e2ee-ops
error tree on failure. Messages name the host only: a webhook URL (Slack's carry a
secret in their path), a gateway token or an SMTP password never appears in an error.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any, Protocol

from e2ee_ops.adapters.http import host_of, http_client, post_json
from e2ee_ops.adapters.slack import slack_escape
from e2ee_ops.errors import (
    ActionFailed,
    AuthError,
    ConfigError,
    MaybeDelivered,
    SkipReminder,
    TimedOutError,
    UnreachableError,
)

if TYPE_CHECKING:
    import httpx

    from e2ee_ops.secret import Secret

CHANNELS = ("push", "email", "webhook")


@dataclass(frozen=True)
class Reminder:
    """What one device's owner is told. Metadata only."""

    user_id: int
    username: str
    email: str | None
    device_id: str
    device_name: str
    prekeys_remaining: int
    severity: str  # CRITICAL or WARNING
    subject: str
    text: str
    # The same for every run inside one de-duplication window: receivers that honour an
    # Idempotency-Key header (or de-duplicate by Message-ID) act on it once.
    key: str = ""


class Notifier(Protocol):
    channel: str

    def send(self, reminder: Reminder) -> None: ...

    def close(self) -> None: ...


def _domain(address: str) -> str:
    """The domain of an address (`ops@example.com` -> `example.com`), for Message-IDs."""
    domain = address.rpartition("@")[2].strip(" >")
    return domain or "e2ee-ops.invalid"


class _HttpNotifier:
    channel = ""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        token: Secret | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"notifiers.{self.channel}.url is not an http(s) URL")
        self.url = url
        self.host = host_of(url)
        self.timeout = timeout
        self._token = token
        self._sleep = sleep
        self._http = http_client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _post(self, body: Mapping[str, Any], key: str) -> None:
        headers = {"Authorization": f"Bearer {self._token.reveal()}"} if self._token else {}
        if key:
            headers["Idempotency-Key"] = f"{key}.{self.channel}"
        post_json(
            self._http,
            self.url,
            body,
            what=f"the {self.channel} endpoint at {self.host}",
            timeout=self.timeout,
            headers=headers,
            sending="the reminder",
            hint=f"check notifiers.{self.channel} credentials",
            sleep=self._sleep,
        )


class WebhookNotifier(_HttpNotifier):
    """A JSON POST per reminder; Slack-compatible bodies are `{"text": ...}`."""

    channel = "webhook"

    def __init__(self, url: str, *, slack_compatible: bool = False, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.slack_compatible = slack_compatible

    def send(self, reminder: Reminder) -> None:
        if self.slack_compatible:
            text = (
                f"{reminder.severity}: {reminder.username}'s device "
                f"\u201c{reminder.device_name}\u201d ({reminder.device_id}): {reminder.text}"
            )
            body: dict[str, Any] = {"text": slack_escape(text)}
        else:
            body = {
                "event": "e2ee_ops.device_reminder",
                "severity": reminder.severity,
                "user_id": reminder.user_id,
                "username": reminder.username,
                "device_id": reminder.device_id,
                "device_name": reminder.device_name,
                "prekeys_remaining": reminder.prekeys_remaining,
                "subject": reminder.subject,
                "text": reminder.text,
            }
        self._post(body, reminder.key)


class PushNotifier(_HttpNotifier):
    """A push gateway's HTTP endpoint: it knows how to reach the user's device."""

    channel = "push"

    def send(self, reminder: Reminder) -> None:
        self._post(
            {
                "user_id": reminder.user_id,
                "device_id": reminder.device_id,
                "title": reminder.subject,
                "body": reminder.text,
                "category": "e2ee_key_refresh",
            },
            reminder.key,
        )


class SmtpNotifier:
    """Email through an SMTP relay (stdlib smtplib): STARTTLS or implicit TLS, optional auth."""

    channel = "email"

    def __init__(
        self,
        host: str,
        *,
        port: int,
        from_address: str,
        starttls: bool = True,
        use_ssl: bool = False,
        username: str | None = None,
        password: Secret | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host, self.port = host, port
        self._clock = clock
        self.from_address = from_address
        self.starttls, self.use_ssl = starttls, use_ssl
        self.username, self._password = username, password
        self.timeout = timeout
        self._context = ssl_context

    def close(self) -> None:
        """Nothing held open: one SMTP session per reminder keeps failures apart."""

    def send(self, reminder: Reminder) -> None:
        if not reminder.email:
            raise SkipReminder(f"user {reminder.username} has no email address")
        message = EmailMessage()
        message["From"] = self.from_address
        message["To"] = reminder.email
        message["Subject"] = reminder.subject
        # RFC 5322 requires Date; Message-ID lets mail systems thread and de-duplicate:
        # the same reminder in the same window keeps the same one.
        message["Date"] = format_datetime(self._clock())
        message["Message-ID"] = (
            f"<{reminder.key}.email@{_domain(self.from_address)}>"
            if reminder.key
            else make_msgid(domain=_domain(self.from_address))
        )
        message.set_content(reminder.text + "\n")
        where = f"SMTP server {self.host}:{self.port}"
        context = self._context or ssl.create_default_context()
        sending = False  # past this point a timeout may come after the message was accepted
        try:
            smtp: smtplib.SMTP = (
                smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
                if self.use_ssl
                else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            )
            with smtp:
                if self.starttls and not self.use_ssl:
                    smtp.starttls(context=context)
                if self.username:
                    password = self._password.reveal() if self._password else ""
                    smtp.login(self.username, password)
                sending = True
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError(
                f"{where} rejected the login for {self.username} (SMTP {exc.smtp_code})",
                hint="check notifiers.smtp.username and password",
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise ActionFailed(
                f"{where} does not offer STARTTLS or AUTH",
                hint="check notifiers.smtp.starttls, use_ssl and username",
            ) from None
        except smtplib.SMTPRecipientsRefused:
            raise ActionFailed(
                f"{where} refused the recipient of user {reminder.username}"
            ) from None
        except smtplib.SMTPException as exc:
            raise ActionFailed(f"{where} failed: {type(exc).__name__}") from None
        except TimeoutError:
            if sending:
                raise MaybeDelivered(
                    f"{where} did not answer within {self.timeout:g} s after the message was sent",
                    host=self.host,
                ) from None
            raise TimedOutError(
                f"{where} did not answer within {self.timeout:g} s", host=self.host
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise UnreachableError(
                f"cannot reach {where} ({type(exc).__name__})", host=self.host
            ) from None

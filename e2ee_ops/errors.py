"""The one exception tree of e2ee-ops, and the redaction every message goes through.

    E2eeOpsError                  base: one clear sentence for the operator
     ├── ConfigError              the configuration is missing, malformed or unusable
     │    └── InvalidSettings     settings failed validation: every problem by its key
     ├── UsageError               the command line asks for something impossible
     ├── UnreachableError         could not connect to a host (API, Redis, Postgres)
     ├── TimedOutError            a host or the whole command ran out of time
     │    ├── DeadlinePassed      a read reached its own deadline in mid-answer
     │    └── MaybeDelivered      a request went out, its answer did not come back
     ├── AuthError                a token was missing, invalid or lacked the scope (401/403)
     ├── RefusedError             the service understood and refused (4xx with a code, 429)
     ├── ServiceError             the service failed (5xx) or answered something unreadable
     │    └── AnswerTooLarge      an answer went past its size cap
     ├── ActionFailed             a mutation we ran (restart, write) did not succeed
     │    └── GitError            a git command exited non-zero
     ├── VerificationFailed       a step ran but the runbook's verification did not hold
     └── SkipReminder             a channel cannot reach this owner: skipped, not failed

Interrupts are not errors: Ctrl-C is Python's KeyboardInterrupt, and SIGTERM (what
`timeout`, systemd and Kubernetes send) becomes `Terminated`, a KeyboardInterrupt too,
so every cleanup that handles one handles both.

The core (procedures, adapters) raises these and never prints or exits; the CLI's
single top-level handler turns them into one line on stderr and an exit code
(`e2ee_ops.status.exit_code_for`). Every message is passed through `redact()` so a
token pasted into a URL or echoed by a server cannot reach the terminal.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "**********"

# Values of secrets loaded at run time (tokens, passwords): scrubbed from any text.
_known_secrets: set[str] = set()

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Authorization: Bearer abc.def": token-like words only, so "bearer token" stays readable
    (
        re.compile(r"(?i)\b(bearer)(\s+)(?![a-z]+\b)[A-Za-z0-9._~+/=-]{8,}"),
        rf"\1\2{REDACTED}",
    ),
    # scheme://user:password@host -> keep the user, hide the password (up to the last `@`
    # of the authority: an unencoded `@` in a password must not leave its tail showing)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):([^\s/]+)@"), rf"\1:{REDACTED}@"),
    # token=..., password=..., secret=..., api_key=... in query strings or env-file lines
    (
        re.compile(
            r"(?i)\b((?:access_|api_|auth_)?(?:token|password|passwd|secret|api_key)s?)"
            r"(\s*=\s*)(?!\*{10})[\"']?[^\s&\"',;]+"
        ),
        rf"\1\2{REDACTED}",
    ),
)


def remember_secret(value: str) -> None:
    """Register a secret value so that `redact()` removes it from any later text."""
    if len(value) >= 4:  # shorter values would redact ordinary words
        _known_secrets.add(value)


def redact(text: str) -> str:
    """Hide bearer tokens, URL passwords, key=value secrets and every known secret value."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class E2eeOpsError(Exception):
    """Base of every error e2ee-ops raises on purpose.

    `message` says what failed (and on which host); `hint` says what to try.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = redact(message)
        self.hint = redact(hint) if hint else None
        super().__init__(self.sentence)

    @property
    def sentence(self) -> str:
        """The message and the hint as the one line shown to the operator."""
        if not self.hint:
            return self.message
        return f"{self.message.rstrip('.')}: {self.hint}"


class ConfigError(E2eeOpsError):
    """The configuration file, environment or flags are invalid or incomplete."""


def dotted_key(loc: tuple[str | int, ...]) -> str:
    """A setting's location as operators write it: `services.redis.restart.method`."""
    return ".".join(str(part) for part in loc) or "(top level)"


class InvalidSettings(ConfigError):
    """Settings that failed validation; `problems` holds each location (below the section
    validated) and its message."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{dotted_key(loc)}: {message}" for loc, message in problems))


class UsageError(E2eeOpsError):
    """The command line is inconsistent (e.g. mutually exclusive options)."""


class UnreachableError(E2eeOpsError):
    """A connection to a host could not be established."""

    def __init__(self, message: str, *, host: str, hint: str | None = None) -> None:
        self.host = host
        super().__init__(message, hint=hint)


class TimedOutError(E2eeOpsError):
    """A host did not answer in time, or the command's --timeout expired."""

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None) -> None:
        self.host = host
        super().__init__(message, hint=hint)


class DeadlinePassed(TimedOutError):
    """A read reached its own deadline while the other side was still sending (a body
    that drips, an event never completed); the adapter words it for the operator."""


class MaybeDelivered(TimedOutError):
    """A request was sent but no answer came in time: the receiver may have acted on it.
    Whoever must not act twice (a reminder) counts it as done."""


class AuthError(E2eeOpsError):
    """The token was missing, invalid or lacked the needed scope (HTTP 401/403, Redis AUTH)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, hint: str | None = None
    ) -> None:
        self.status_code = status_code
        super().__init__(message, hint=hint)


class RefusedError(E2eeOpsError):
    """The service understood the request and refused it (4xx with a reason)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        detail: str | None = None,
        retry_in_seconds: float | None = None,
        body: Any = None,
        hint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.retry_in_seconds = retry_in_seconds
        self.body = body
        super().__init__(message, hint=hint)


class ServiceError(E2eeOpsError):
    """The service failed (5xx) or its answer could not be understood."""

    def __init__(self, message: str, *, status_code: int | None = None, hint: str | None = None):
        self.status_code = status_code
        super().__init__(message, hint=hint)


class AnswerTooLarge(ServiceError):
    """An answer went past its size cap; the adapter words it for the operator."""


class ActionFailed(E2eeOpsError):
    """An action e2ee-ops performed (a restart, a write) did not succeed."""


class GitError(ActionFailed):
    """A git command exited non-zero."""

    def __init__(self, message: str, *, stderr: str, hint: str | None = None) -> None:
        self.stderr = stderr
        super().__init__(message, hint=hint)


class VerificationFailed(E2eeOpsError):
    """An action ran, but the runbook's verification of its effect did not hold."""


class SkipReminder(E2eeOpsError):
    """This channel cannot reach this owner (e.g. no email address): not a failure."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by SIGTERM."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"terminated by signal {signum}")

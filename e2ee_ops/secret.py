"""Secret values and secret files.

A `Secret` never shows itself in str(), repr() or f-strings; secret files are read
only when other users cannot read or write them, and written with mode 0600.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from e2ee_ops.errors import REDACTED, ConfigError, remember_secret


class Secret:
    """A secret value that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember_secret(value)

    def reveal(self) -> str:
        """The actual value, for the one place that must send it (an HTTP header)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def read_secret_file(path: Path, *, key: str) -> str:
    """Read a secret file, refusing one that its group or other users can read or write."""
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{key}: secret file {path} is accessible to its group or other users "
                f"(mode {stat.S_IMODE(mode):04o})",
                hint=f"run chmod 600 {path}",
            )
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ConfigError(f"{key}: secret file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read secret file {path} ({exc})") from exc
    if not value:
        raise ConfigError(f"{key}: secret file {path} is empty")
    return value


def one_line(value: str, *, key: str, source: str) -> str:
    """`value` if it is one line of printable text; a line break or control character in
    a token is refused here, before it can reach a header, a log or a traceback."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(
            f"{key}: the secret from {source} contains a line break or control character",
            hint="a secret is one line: fix the variable or file",
        )
    return value


def write_secret_file(path: Path, content: str) -> None:
    """Write a secrets file atomically with mode 0600 (directory 0700 when created)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

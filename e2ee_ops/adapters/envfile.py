"""Set one variable in a dotenv-style file (`KEY=value` lines), the way an operator would
by hand: rewrite that one line, never append a duplicate.

Comments, blank lines, the order of lines, an `export ` prefix, indentation, the value's
quoting and a trailing comment are all kept. A missing variable is appended once;
duplicates (which dotenv readers resolve differently) collapse into the first one.
Writes are atomic (a temporary file in the same directory, fsync, rename) and the old
file is first copied to a timestamped backup beside it. A symlinked env file is
followed, so the link stays a link.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from e2ee_ops.errors import ActionFailed, ConfigError

_ASSIGNMENT = re.compile(
    r"^(?P<lead>[ \t]*(?:export[ \t]+)?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>[ \t]*=[ \t]*)"
    r"(?P<rest>.*?)(?P<eol>\r?\n)?$",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Value:
    text: str  # unquoted value
    quote: str  # "", "'" or '"'
    tail: str  # what follows the value on its line (a comment), kept as is


def _split_value(rest: str) -> _Value:
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        if end != -1:
            return _Value(rest[1:end], quote, rest[end + 1 :])
    comment = re.search(r"[ \t]+#", rest)
    if comment:
        return _Value(rest[: comment.start()], "", rest[comment.start() :])
    stripped = rest.rstrip(" \t")
    return _Value(stripped, "", rest[len(stripped) :])


@dataclass(frozen=True)
class EnvEdit:
    """What setting `key` to `value` in `path` does (computed; nothing written yet)."""

    path: Path  # the real file (symlinks resolved)
    key: str
    value: str
    current: str | None  # the effective value now (the last assignment), None if unset
    lines: tuple[int, ...]  # 1-based numbers of the lines that assign `key`
    old_text: str
    new_text: str

    @property
    def changes(self) -> bool:
        return self.new_text != self.old_text

    def describe(self) -> str:
        where = f"line {self.lines[0]}" if self.lines else "no line yet"
        if not self.changes:
            return f"{self.key} is already {self.value} in {self.path} ({where}): file unchanged"
        if not self.lines:
            return f"append {self.key}={self.value} to {self.path} (it has no {self.key} line)"
        extra = (
            f"; remove the duplicate line(s) {', '.join(map(str, self.lines[1:]))}"
            if len(self.lines) > 1
            else ""
        )
        return (
            f"set {self.key}={self.value} in {self.path} by rewriting {where} "
            f"(now {self.current}){extra}"
        )


def read_env_text(path: Path) -> tuple[Path, str]:
    """The file's real path and text; a missing or unreadable file is a ConfigError."""
    real = path.expanduser().resolve()
    try:
        with real.open(encoding="utf-8", newline="") as fh:  # keep \r\n as it is
            return real, fh.read()
    except FileNotFoundError:
        raise ConfigError(
            f"the env file {path} does not exist",
            hint="give --env-file PATH or set rollback.env_file to the service's .env",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the env file {path} ({exc})") from None


def plan_env_edit(path: Path, key: str, value: str) -> EnvEdit:
    """Compute the new text of `path` with `key` set to `value`."""
    real, text = read_env_text(path)
    out: list[str] = []
    lines: list[int] = []
    current: str | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        match = _ASSIGNMENT.match(line)
        if match is None or match["key"] != key:
            out.append(line)
            continue
        old = _split_value(match["rest"])
        current = old.text
        lines.append(number)
        if len(lines) > 1:
            continue  # a duplicate: dropped, the first line carries the value
        quote = old.quote
        out.append(
            f"{match['lead']}{key}{match['eq']}{quote}{value}{quote}{old.tail}"
            + (match["eol"] or "")
        )
    if not lines:
        newline = "\r\n" if "\r\n" in text else "\n"
        if text and not text.endswith("\n"):
            out.append(newline)
        out.append(f"{key}={value}{newline}")
    return EnvEdit(real, key, value, current, tuple(lines), text, "".join(out))


def apply_env_edit(edit: EnvEdit, *, now: datetime) -> Path | None:
    """Write the edit atomically after backing up the old file; returns the backup path.

    Refuses when the file changed since the edit was planned, so a concurrent hand edit
    is never overwritten. Nothing is written (and None returned) when nothing changes.
    """
    if not edit.changes:
        return None
    _, text = read_env_text(edit.path)
    if text != edit.old_text:
        raise ActionFailed(
            f"the env file {edit.path} changed while e2ee-ops was working on it; nothing written",
            hint="run the command again",
        )
    backup = edit.path.with_name(f"{edit.path.name}.{now:%Y%m%dT%H%M%S%fZ}.bak")
    try:
        shutil.copy2(edit.path, backup)  # keeps mode and times
        _atomic_write(edit.path, edit.new_text)
    except OSError as exc:
        raise ActionFailed(
            f"cannot write the env file {edit.path} ({exc.strerror or exc})",
            hint="check the file's and its directory's permissions",
        ) from None
    return backup


def _atomic_write(path: Path, text: str) -> None:
    info = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, info.st_mode & 0o7777)
        try:
            os.chown(tmp, info.st_uid, info.st_gid)
        except PermissionError:
            pass  # not root: the file stays ours, as it was
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)

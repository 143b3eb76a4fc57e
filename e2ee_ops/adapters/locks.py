"""One actor at a time: the waiting loop every lock shares, and the local file lock.

Acting commands hold a lock for the whole run: a PostgreSQL advisory lock on the
service's database when one is configured (it holds across hosts; see
`OpsDatabase.advisory_lock`), else an flock on a file beside the journal. A second run
waits up to a bound, then refuses with a sentence naming the holder.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from e2ee_ops.errors import ConfigError, TimedOutError

POLL_SECONDS = 0.2


def wait_for_lock(
    try_once: Callable[[], bool],
    *,
    what: str,
    holder: Callable[[], str],
    wait_seconds: float,
    on_wait: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Call `try_once` until it takes the lock; past `wait_seconds`, refuse naming the holder."""
    deadline = monotonic() + wait_seconds
    told = False
    while not try_once():
        if monotonic() >= deadline:
            raise TimedOutError(
                f"{what} is held by {holder() or 'another run'} "
                f"and was not released within {wait_seconds:g} s",
                hint="let that run finish, then check again; nothing was changed",
            )
        if not told:
            on_wait(f"{what} is held by {holder() or 'another run'}; waiting")
            told = True
        sleep(POLL_SECONDS)


@contextmanager
def file_lock(
    path: Path,
    *,
    holder: str,
    wait_seconds: float,
    on_wait: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold an flock on `path` for the block; the file names the holder while it is held."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot use the lock file {path} ({exc.strerror or type(exc).__name__})",
            hint="set journal.path to a writable place: the lock file lives beside it",
        ) from None

    def try_once() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def current_holder() -> str:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 512).decode("utf-8", "replace").strip()

    try:
        wait_for_lock(
            try_once,
            what=f"the lock {path}",
            holder=current_holder,
            wait_seconds=wait_seconds,
            on_wait=on_wait,
            sleep=sleep,
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode("utf-8") + b"\n", 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the lock

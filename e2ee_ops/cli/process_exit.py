"""How the console script's process starts collecting garbage and how it ends.

A one-shot command is over once its output is flushed. What CPython does after that
(clearing every module, running the collector over them, the C libraries' own exit
handlers: psycopg's libpq, OpenSSL) took about 30 ms of a 180 ms `devices stuck`, and
the collections that module imports trigger in the first tenths of a second about 10 ms
more (`bench/startup.py`). Both are skipped here without losing anything a command
relies on: atexit handlers still run and the standard streams are flushed; the journal,
textfiles and env files are written with `os.write` and renames that are on disk before
the command returns.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn

# Long enough for start-up and a typical query; a command still running then (serve,
# watch, a recovery) collects as any Python process does.
COLLECTION_PAUSE_SECONDS = 1.0


def pause_collection(seconds: float = COLLECTION_PAUSE_SECONDS) -> None:
    """Hold the cyclic collector for the process's first `seconds`: imports create
    objects by the hundred thousand and no garbage worth a collection."""
    if not gc.isenabled():
        return
    gc.disable()
    timer = threading.Timer(seconds, gc.enable)
    timer.daemon = True  # never keeps the process alive
    timer.start()


def _exit_status(code: str | int | None) -> int:
    """The status `sys.exit(code)` gives the process (its message, if any, on stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def leave(code: str | int | None) -> NoReturn:
    """End the process with `code` as `sys.exit` would, without the interpreter's
    teardown. Falls back to `sys.exit` when the teardown has work to do: a thread that
    is not a daemon (Python waits for it), or a stream that cannot be flushed (Python
    reports the broken pipe and exits 120)."""
    if any(t.is_alive() and not t.daemon for t in _others()):
        sys.exit(code)
    atexit._run_exitfuncs()  # logging's shutdown among them: handlers flushed and closed
    try:
        status = _exit_status(code)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(status)


def _others() -> list[threading.Thread]:
    main = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main]

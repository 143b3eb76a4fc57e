"""The console script's quick exit loses nothing `sys.exit` would keep: the status, the
buffered output, the atexit handlers, a thread still working, a broken pipe's report;
and the collector paused at start-up comes back on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Output stays in the buffers until the end, as in production.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _python(body: str, *, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(body)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=BUFFERED,
    )


def _ended(body: str) -> tuple[int, str, str]:
    process = _python(body)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


@pytest.mark.parametrize("code", ["None", "0", "1", "2", "64", "143", "256", "-1", "'bye'"])
def test_leave_ends_with_what_sys_exit_would_give(code: str) -> None:
    body = """
        import sys
        from e2ee_ops.cli.process_exit import leave
        sys.stdout.write("buffered, not yet flushed")
        sys.stderr.write("on stderr ")
        {exit}({code})
    """
    ours = _ended(body.format(exit="leave", code=code))
    theirs = _ended(body.format(exit="sys.exit", code=code))
    assert ours == theirs
    assert ours[1] == "buffered, not yet flushed"


def test_atexit_handlers_run_once_before_the_process_ends() -> None:
    status, out, _ = _ended(
        """
        import atexit
        from e2ee_ops.cli.process_exit import leave
        atexit.register(print, "first registered, last run")
        atexit.register(print, "last registered, first run")
        leave(3)
        """
    )
    assert (status, out) == (3, "last registered, first run\nfirst registered, last run\n")


def test_a_thread_still_working_is_waited_for() -> None:
    status, out, _ = _ended(
        """
        import threading, time
        from e2ee_ops.cli.process_exit import leave
        def work():
            time.sleep(0.3)
            print("the thread's work, done after leave() was called", flush=True)
        threading.Thread(target=work).start()
        leave(1)
        """
    )
    assert (status, out) == (1, "the thread's work, done after leave() was called\n")


def test_a_daemon_thread_does_not_hold_the_exit() -> None:
    status, out, _ = _ended(
        """
        import threading
        from e2ee_ops.cli.process_exit import leave
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        print("main done")
        leave(0)
        """
    )
    assert (status, out) == (0, "main done\n")


def test_a_reader_gone_away_is_reported_as_python_reports_it() -> None:
    body = """
        import os, sys
        from e2ee_ops.cli.process_exit import leave
        read_end, write_end = os.pipe()  # stdout becomes a pipe nobody reads
        os.dup2(write_end, 1)
        os.close(read_end)
        os.close(write_end)
        sys.stdout.write("still in the buffer when the process ends")
        {exit}(0)
    """
    ours = _ended(body.format(exit="leave"))
    theirs = _ended(body.format(exit="sys.exit"))
    assert ours[0] == theirs[0] == 120
    assert "BrokenPipeError" in ours[2]
    assert ours[2].count("BrokenPipeError") == theirs[2].count("BrokenPipeError")


def test_the_collector_is_paused_at_start_up_then_resumes() -> None:
    status, out, _ = _ended(
        """
        import gc, time
        from e2ee_ops.cli.process_exit import pause_collection
        pause_collection(0.2)
        print(gc.isenabled())
        deadline = time.monotonic() + 30
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(gc.isenabled())
        """
    )
    assert (status, out) == (0, "False\nTrue\n")


def test_a_collector_turned_off_stays_off() -> None:
    status, out, _ = _ended(
        """
        import gc, threading, time
        from e2ee_ops.cli.process_exit import pause_collection
        gc.disable()
        pause_collection(0.05)
        time.sleep(0.3)
        print(gc.isenabled(), threading.active_count())
        """
    )
    assert (status, out) == (0, "False 1\n")

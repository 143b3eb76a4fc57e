"""Running the server: one uvicorn process, or `--workers N` processes on one socket."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from typing import Any


def run_server(args: argparse.Namespace, sockets: list[socket.socket] | None = None) -> None:
    import uvicorn

    from e2ee_ops.reference.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # E2EE_LOG_LEVEL=debug shows the server's own debug lines (one per closed stream).
    logging.getLogger("e2ee_ops").setLevel(os.environ.get("E2EE_LOG_LEVEL", "INFO").upper())
    app = create_app()

    class Server(uvicorn.Server):
        # Streams must end when asked to stop, or a graceful shutdown waits on them.
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.e2ee.close()
            super().handle_exit(sig, frame)

    server = Server(_config(args, app))
    server.run(sockets)  # on the event loop `loop` names


def _config(args: argparse.Namespace, app: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
        access_log=args.access_log,
        # httptools when installed (the `server` extra installs it and uvloop). uvloop only
        # when asked (--loop, E2EE_LOOP): see the README on it and Sentinel failovers.
        loop=args.loop,
        http=args.http,
    )


def supervise(args: argparse.Namespace) -> int:
    """`--workers N`: N server processes accepting on one socket bound here. Each is a
    member of the fleet of its own (its relay, pools and instance id `ID/wK`); SIGTERM
    and SIGINT are passed on to them, and this process ends when they all have."""
    import multiprocessing

    sock = _config(args, None).bind_socket()
    base_id = os.environ.get("E2EE_INSTANCE_ID") or f"{args.host}:{args.port}"
    spawn = multiprocessing.get_context("spawn")
    # The options only: the parsed command's own function lives in __main__, which a
    # spawned process cannot import.
    args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
    workers = [
        spawn.Process(target=_worker, args=(args, sock, f"{base_id}/w{k + 1}", os.getpid()))
        for k in range(args.workers)
    ]
    for worker in workers:
        worker.start()

    def pass_on(sig: int, frame: Any) -> None:
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, sig)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    for worker in workers:
        worker.join()
    sock.close()
    return max(abs(worker.exitcode or 0) for worker in workers)


def _worker(args: argparse.Namespace, sock: socket.socket, instance_id: str, parent: int) -> None:
    os.setsid()  # a terminal's Ctrl-C reaches the supervisor only, which passes it on once
    os.environ["E2EE_INSTANCE_ID"] = instance_id
    # A supervisor killed outright cannot pass a signal on: its workers end by themselves.
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()
    run_server(args, [sock])


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)

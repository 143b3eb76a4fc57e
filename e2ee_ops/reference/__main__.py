"""`python -m e2ee_ops.reference serve|migrate|create-account`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any


def _serve(args: argparse.Namespace) -> int:
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

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=5,
        access_log=args.access_log,
        # httptools when installed (the `server` extra installs it and uvloop). uvloop only
        # when asked: under it the relay's redis client does not follow a Sentinel failover.
        loop=args.loop,
        http=args.http,
    )
    server = Server(config)
    server.run()  # on the event loop `loop` names
    return 0


def _database_url() -> str:
    url = os.environ.get("E2EE_DATABASE_URL")
    if not url:
        print("E2EE_DATABASE_URL is not set", file=sys.stderr)
        raise SystemExit(2)
    return url


def _migrate(args: argparse.Namespace) -> int:
    from e2ee_ops.reference.bootstrap import migrate

    migrate(_database_url(), args.revision)
    return 0


def _create_account(args: argparse.Namespace) -> int:
    from e2ee_ops.reference.bootstrap import create_account

    issued = create_account(_database_url(), args.username, scope=args.scope, email=args.email)
    # The token goes to stdout once, for the caller to store; nothing else is printed.
    print(
        json.dumps(
            {"account_id": issued.account_id, "username": issued.username, "token": issued.token}
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2ee_ops.reference")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the API server (env: E2EE_DATABASE_URL, E2EE_REDIS_URL)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="asyncio")
    serve.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    serve.set_defaults(func=_serve)
    mig = sub.add_parser("migrate", help="alembic upgrade to a revision (default head)")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=_migrate)
    acct = sub.add_parser("create-account", help="create a user and print a new token as JSON")
    acct.add_argument("username")
    acct.add_argument("--scope", choices=("user", "admin"), default="user")
    acct.add_argument("--email")
    acct.set_defaults(func=_create_account)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

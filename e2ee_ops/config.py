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
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from e2ee_ops.errors import ConfigError, redact
from e2ee_ops.secret import Secret, read_secret_file

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
    "notifiers.push.token",
    "incident.webhook",
    "incident.pagerduty.routing_key",
)
# Path-valued keys: relative values in a YAML file are relative to that file.
PATH_KEYS = ("*.file", "alembic.config", "rollback.env_file", "journal.path")


# --------------------------------------------------------------------------- secrets


def _reject_literal(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "a literal secret is not allowed here; give {env: VARIABLE} or {file: PATH}"
        )
    return value


class _SecretRefModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _SecretRefModel:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of {env: VARIABLE} or {file: PATH}")
        return self

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
            return Secret(value.strip())
        assert self.file is not None
        return Secret(read_secret_file(self.file, key=key))


SecretRef = Annotated[_SecretRefModel, BeforeValidator(_reject_literal)]


# --------------------------------------------------------------------------- models


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KubernetesServiceSettings(_Section):
    """A Service whose ready endpoints are the API instances (`kubectl get endpoints`)."""

    service: str
    namespace: str = "default"
    port: int = Field(gt=0, le=65535)
    context: str | None = None
    scheme: Literal["http", "https"] = "http"
    timeout_seconds: float = Field(default=10.0, gt=0)


class ApiDiscoverSettings(_Section):
    kubernetes: KubernetesServiceSettings


class ApiSettings(_Section):
    base_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000"])
    # Instead of base_urls: list the instances from a Kubernetes Service's endpoints.
    discover: ApiDiscoverSettings | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _one_way_to_the_instances(self) -> ApiSettings:
        if self.discover is not None and "base_urls" in self.model_fields_set:
            raise ValueError("give either base_urls or discover, not both")
        return self

    @field_validator("base_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("give at least one API base URL")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return [url.rstrip("/") for url in urls]


class TokenSettings(_Section):
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
        assert isinstance(ref, _SecretRefModel)
        return ref.resolve(key=f"tokens.{name}", environ=environ)


class CanarySettings(_Section):
    """The canary pair: A's device sends a test message to B's device, which receives it
    over SSE. With tokens.canary_a/b set, device_a, account_b and device_b are needed."""

    device_a: str | None = None
    account_b: str | None = None
    device_b: str | None = None
    delivery_timeout_seconds: float = Field(default=15.0, gt=0)


class PostgresSettings(_Section):
    url: str | None = None
    password: SecretRef | None = None
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=5000, gt=0)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return url


class SentinelSettings(_Section):
    hosts: list[str]
    service_name: str = "mymaster"

    @field_validator("hosts")
    @classmethod
    def _host_ports(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("give at least one sentinel as host:port")
        for host in hosts:
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"{host!r} is not host:port")
        return hosts


class RedisSettings(_Section):
    url: str | None = None
    sentinel: SentinelSettings | None = None
    password: SecretRef | None = None
    timeout_seconds: float = Field(default=2.0, gt=0)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url

    @model_validator(mode="after")
    def _one_way_in(self) -> RedisSettings:
        if self.url and self.sentinel:
            raise ValueError("give either url or sentinel, not both")
        return self


class RestartSettings(_Section):
    method: Literal["systemctl", "docker", "kubernetes", "command"]
    unit: str | None = None
    container: str | None = None
    command: list[str] | None = None
    sudo: bool = False  # prefix systemctl/docker with `sudo -n`
    timeout_seconds: float = Field(default=60.0, gt=0)
    # kubernetes: `kubectl rollout restart KIND/NAME` then `kubectl rollout status`.
    kind: Literal["deployment", "statefulset"] = "deployment"
    name: str | None = None
    namespace: str = "default"
    context: str | None = None

    @model_validator(mode="after")
    def _target_for_method(self) -> RestartSettings:
        needed = {
            "systemctl": "unit",
            "docker": "container",
            "kubernetes": "name",
            "command": "command",
        }[self.method]
        if not getattr(self, needed):
            raise ValueError(f"method {self.method} needs {needed}")
        return self


class ServiceSettings(_Section):
    restart: RestartSettings | None = None


class ServicesSettings(_Section):
    redis: ServiceSettings = Field(default_factory=ServiceSettings)
    api: ServiceSettings = Field(default_factory=ServiceSettings)


def packaged_alembic_ini() -> Path:
    """The reference server's alembic.ini, found without importing the server."""
    return Path(__file__).resolve().parent / "reference" / "alembic.ini"


class AlembicSettings(_Section):
    config: Path = Field(default_factory=packaged_alembic_ini)


class RollbackSettings(_Section):
    env_file: Path | None = None
    # `rollback flag`: the user's device whose SSE stream must be closed by the server
    # (default: the user token's first active device), and how long to wait for things.
    verify_device: str | None = None
    health_deadline_seconds: float = Field(default=60, gt=0)  # API back on /health
    stream_close_seconds: float = Field(default=15, gt=0)  # open stream closed by the server
    # `rollback migration` refuses to drop or empty these tables while they hold rows.
    protected_tables: list[str] = Field(default_factory=lambda: ["e2ee_*", "dm_*"])
    git_timeout_seconds: float = Field(default=60, gt=0)  # each git command (push, ls-remote)


class Thresholds(_Section):
    """The runbook's numbers, each overridable."""

    otpk_critical: int = Field(default=5, ge=0)  # prekeys remaining below this: critical
    otpk_warning: int = Field(default=10, ge=0)  # below this: warning
    signed_prekey_max_age_days: float = Field(default=90, gt=0)
    identity_changes_per_day: int = Field(default=2, ge=0)
    redis_down_seconds: float = Field(default=60, gt=0)
    sse_failure_rate: float = Field(default=0.10, ge=0, le=1)
    delivery_p99_ms: float = Field(default=500, gt=0)
    pubsub_lag_seconds: float = Field(default=2, gt=0)
    undelivered_window_minutes: float = Field(default=5, gt=0)
    device_inactive_days: float = Field(default=30, gt=0)
    recover_deadline_seconds: float = Field(default=300, gt=0)
    # Abuse bursts: per sender, per hour (counts over another --window are scaled to an hour).
    # The runbook gives no numbers; these sit well above a person chatting and well below
    # the reference server's own rate limit (60 messages a minute).
    abuse_messages_per_hour_warning: float = Field(default=200, gt=0)
    abuse_messages_per_hour_critical: float = Field(default=1000, gt=0)
    abuse_fanout_per_hour_warning: float = Field(default=20, gt=0)  # distinct recipients
    abuse_fanout_per_hour_critical: float = Field(default=50, gt=0)
    abuse_new_conversations_per_hour_warning: float = Field(default=10, gt=0)  # churn
    abuse_new_conversations_per_hour_critical: float = Field(default=30, gt=0)
    abuse_rate_limited_per_hour_warning: float = Field(default=1, gt=0)  # 429s; above 1 warns
    abuse_rate_limited_per_hour_critical: float = Field(default=20, gt=0)

    @model_validator(mode="after")
    def _warning_above_critical(self) -> Thresholds:
        if self.otpk_warning < self.otpk_critical:
            raise ValueError(
                f"otpk_warning ({self.otpk_warning}) must not be below "
                f"otpk_critical ({self.otpk_critical})"
            )
        return self


class WebhookSettings(_Section):
    url: str
    slack_compatible: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0)


class SmtpSettings(_Section):
    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    starttls: bool = True
    use_ssl: bool = False  # implicit TLS (port 465) instead of STARTTLS
    username: str | None = None
    password: SecretRef | None = None
    from_address: str = Field(alias="from")
    timeout_seconds: float = Field(default=10.0, gt=0)


class PushSettings(_Section):
    url: str
    token: SecretRef | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class NotifierSettings(_Section):
    webhook: WebhookSettings | None = None
    smtp: SmtpSettings | None = None
    push: PushSettings | None = None
    dedup_window_hours: float = Field(default=24, gt=0)
    lock_wait_seconds: float = Field(default=120, gt=0)  # a concurrent run waits this long


class PagerDutySettings(_Section):
    routing_key: SecretRef  # the integration key of an Events API v2 integration
    events_url: str = "https://events.pagerduty.com/v2/enqueue"


class IncidentSettings(_Section):
    """Where `incident open` and `incident close` announce themselves."""

    webhook: SecretRef | None = None  # a Slack-compatible webhook URL: the URL is the secret
    pagerduty: PagerDutySettings | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class JournalSettings(_Section):
    path: Path


class Settings(_Section):
    """The validated, effective configuration."""

    api: ApiSettings = Field(default_factory=ApiSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)
    alembic: AlembicSettings = Field(default_factory=AlembicSettings)
    rollback: RollbackSettings = Field(default_factory=RollbackSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    notifiers: NotifierSettings = Field(default_factory=NotifierSettings)
    incident: IncidentSettings = Field(default_factory=IncidentSettings)
    journal: JournalSettings


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
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe_validation(exc, provenance)) from None
    return LoadedConfig(settings=settings, provenance=provenance, file=path, profile=selected)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings at the top")
    return document


def _describe_validation(exc: ValidationError, provenance: Mapping[str, str]) -> str:
    parts = []
    for error in exc.errors()[:5]:
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        source = _nearest(provenance, key)
        parts.append(f"{key}: {message}" + (f" (from {source})" if source else ""))
    more = len(exc.errors()) - 5
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
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for part in parts:
        if model is None:
            return None
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        annotation = field.annotation
        model = _model_in(annotation)
    return _is_list(annotation)


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) is list for a in _unwrap(annotation))


def _display_tree(model: BaseModel) -> dict[str, Any]:
    """The settings as plain data, each secret reference replaced by its description."""
    tree: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        key = field.alias or name
        if isinstance(value, _SecretRefModel):
            tree[key] = value.describe()
        elif isinstance(value, BaseModel):
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


def secret_refs(model: BaseModel, prefix: str = "") -> list[tuple[str, _SecretRefModel]]:
    """Every secret reference in `model`, with its key (`tokens.admin`, ...)."""
    refs: list[tuple[str, _SecretRefModel]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{field.alias or name}"
        if isinstance(value, _SecretRefModel):
            refs.append((key, value))
        elif isinstance(value, BaseModel):
            refs.extend(secret_refs(value, f"{key}."))
    return refs

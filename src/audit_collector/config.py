"""The Lambda's configuration, read from the environment once and checked before any AWS call.

boto3's own settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``, profiles) are never read or overridden
here: boto3 applies them itself, which is how moto_server and VPC endpoints keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .archive import normalize_prefix
from .asana import DEFAULT_BASE_URL as ASANA_DEFAULT_BASE_URL
from .collector.core import Settings
from .errors import ConfigError
from .slack import DEFAULT_BASE_URL as SLACK_DEFAULT_BASE_URL

PROVIDERS = ("slack", "asana")

# Every variable the collector reads, with its default (None: required or optional without one).
ENVIRONMENT_VARIABLES: dict[str, str | None] = {
    "STATE_TABLE_NAME": None,
    "ARCHIVE_BUCKET_NAME": None,
    "ARCHIVE_PREFIX": "",
    "SLACK_TOKEN_SECRET_ID": None,
    "ASANA_TOKEN_SECRET_ID": None,
    "ASANA_WORKSPACE_GID": None,
    "SLACK_API_BASE_URL": SLACK_DEFAULT_BASE_URL,
    "ASANA_API_BASE_URL": ASANA_DEFAULT_BASE_URL,
    "SETTLE_SECONDS": "120",
    "INITIAL_LOOKBACK_DAYS": "7",
    "HTTP_TIMEOUT_SECONDS": "30",
    # Lower these when other apps use the same limit (Slack's is shared by every app of the org).
    "SLACK_CALLS_PER_MINUTE": str(Settings.slack_calls_per_minute),
    "ASANA_CALLS_PER_MINUTE": str(Settings.asana_calls_per_minute),
}


@dataclass(frozen=True)
class Config:
    state_table_name: str
    archive_bucket_name: str
    archive_prefix: str
    slack_token_secret_id: str | None
    asana_token_secret_id: str | None
    asana_workspace_gid: str | None
    slack_api_base_url: str
    asana_api_base_url: str
    settle_seconds: int
    initial_lookback_days: float
    http_timeout_seconds: float
    slack_calls_per_minute: float
    asana_calls_per_minute: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Raises ``ConfigError`` naming the variable and what it should hold."""

        def get(name: str) -> str | None:
            value = env.get(name, ENVIRONMENT_VARIABLES[name])
            return value.strip() if isinstance(value, str) and value.strip() else None

        missing = [name for name in ("STATE_TABLE_NAME", "ARCHIVE_BUCKET_NAME") if not get(name)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")
        asana_secret, workspace = get("ASANA_TOKEN_SECRET_ID"), get("ASANA_WORKSPACE_GID")
        if bool(asana_secret) != bool(workspace):
            raise ConfigError(
                "Asana needs both ASANA_TOKEN_SECRET_ID and ASANA_WORKSPACE_GID (set both, or neither to disable it)"
            )
        config = cls(
            state_table_name=get("STATE_TABLE_NAME") or "",
            archive_bucket_name=get("ARCHIVE_BUCKET_NAME") or "",
            archive_prefix=normalize_prefix(get("ARCHIVE_PREFIX")),
            slack_token_secret_id=get("SLACK_TOKEN_SECRET_ID"),
            asana_token_secret_id=asana_secret,
            asana_workspace_gid=workspace,
            slack_api_base_url=_url(get("SLACK_API_BASE_URL") or "", "SLACK_API_BASE_URL"),
            asana_api_base_url=_url(get("ASANA_API_BASE_URL") or "", "ASANA_API_BASE_URL"),
            settle_seconds=int(_number(get("SETTLE_SECONDS"), "SETTLE_SECONDS", 0, 86400, integer=True)),
            initial_lookback_days=_number(get("INITIAL_LOOKBACK_DAYS"), "INITIAL_LOOKBACK_DAYS", 0.001, 3650),
            http_timeout_seconds=_number(get("HTTP_TIMEOUT_SECONDS"), "HTTP_TIMEOUT_SECONDS", 1, 300),
            # At most the default pace: just under the published limit, which a run must not exceed.
            slack_calls_per_minute=_number(
                get("SLACK_CALLS_PER_MINUTE"), "SLACK_CALLS_PER_MINUTE", 1, Settings.slack_calls_per_minute
            ),
            asana_calls_per_minute=_number(
                get("ASANA_CALLS_PER_MINUTE"), "ASANA_CALLS_PER_MINUTE", 1, Settings.asana_calls_per_minute
            ),
        )
        if not config.enabled_providers:
            raise ConfigError(
                "no provider is enabled: set SLACK_TOKEN_SECRET_ID, or ASANA_TOKEN_SECRET_ID and ASANA_WORKSPACE_GID"
            )
        return config

    @property
    def enabled_providers(self) -> tuple[str, ...]:
        enabled = {"slack": bool(self.slack_token_secret_id), "asana": bool(self.asana_token_secret_id)}
        return tuple(p for p in PROVIDERS if enabled[p])

    def settings(self) -> Settings:
        return Settings(
            settle_seconds=self.settle_seconds,
            initial_lookback_days=self.initial_lookback_days,
            http_timeout=self.http_timeout_seconds,
            slack_calls_per_minute=self.slack_calls_per_minute,
            asana_calls_per_minute=self.asana_calls_per_minute,
        )


def _number(raw: str | None, name: str, low: float, high: float, *, integer: bool = False) -> float:
    try:
        value = int(raw or "") if integer else float(raw or "")
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low} to {high}, got {raw!r}")
    return value


def _url(raw: str, name: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw if raw.endswith("/") else raw + "/"

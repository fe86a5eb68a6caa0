"""The Lambda's configuration, read from the environment once and checked before any AWS call.

Which variables exist follows from the registry: each provider has ``{NAME}_TOKEN_SECRET_ID``
(set: the provider is enabled), ``{NAME}_API_BASE_URL``, ``{NAME}_CALLS_PER_MINUTE`` and the
options its descriptor declares (a workspace id, say).

boto3's own settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``, profiles) are never read or overridden
here: boto3 applies them itself, which is how moto_server and VPC endpoints keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from audit_collector import providers
from audit_collector.collector import Settings
from audit_collector.collector.provider import Descriptor
from audit_collector.errors import ConfigError
from audit_collector.storage.keys import normalize_prefix

# The variables every deployment reads, with their defaults (None: required, or optional without one).
COMMON_VARIABLES: dict[str, str | None] = {
    "STATE_TABLE_NAME": None,
    "ARCHIVE_BUCKET_NAME": None,
    "ARCHIVE_PREFIX": "",
    "SETTLE_SECONDS": "120",
    "INITIAL_LOOKBACK_DAYS": "7",
    "HTTP_TIMEOUT_SECONDS": "30",
    # The late-event sweep: re-read each closed window this many seconds after it ended ("0": off),
    # at this share of the provider's pace.
    "SWEEP_AFTER_SECONDS": "1800,86400",
    "SWEEP_SHARE": "0.25",
    # What the stack asked of the archive bucket, for the preflight to compare with the bucket's own.
    "ARCHIVE_OBJECT_LOCK_MODE": "NONE",
    "ARCHIVE_KMS_KEY_ARN": "",
    # The KMS asymmetric key (ECC_NIST_P256) the chain's heads are signed with (empty: not signed).
    "SIGNING_KEY_ID": "",
}


def provider_variables(descriptor: Descriptor) -> dict[str, str | None]:
    """One provider's variables. Lower the pace when other apps use the same limit (some are
    shared by every app of an org)."""
    variables: dict[str, str | None] = {
        descriptor.secret_env: None,
        descriptor.base_url_env: descriptor.default_base_url,
        descriptor.pace_env: str(float(descriptor.calls_per_minute)),
    }
    variables.update({option.env: None for option in descriptor.options})
    return variables


def environment_variables() -> dict[str, str | None]:
    """Every variable the collector reads, for every registered provider."""
    out = dict(COMMON_VARIABLES)
    for descriptor in providers.all_descriptors():
        out.update(provider_variables(descriptor))
    return out


@dataclass(frozen=True)
class ProviderConfig:
    """An enabled provider: where its token is, which host it calls, how fast, with what options."""

    descriptor: Descriptor
    secret_id: str
    base_url: str
    calls_per_minute: float
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    state_table_name: str
    archive_bucket_name: str
    archive_prefix: str
    settle_seconds: int
    initial_lookback_days: float
    http_timeout_seconds: float
    providers: dict[str, ProviderConfig]  # the enabled ones, in registry order
    sweep_after_seconds: tuple[float, ...] = ()
    sweep_share: float = 0.25
    object_lock_mode: str = "NONE"
    kms_key_arn: str = ""
    signing_key_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Raises ``ConfigError`` naming the variable and what it should hold."""
        get = _reader(env)
        missing = [name for name in ("STATE_TABLE_NAME", "ARCHIVE_BUCKET_NAME") if not get(name)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")
        enabled = {}
        for descriptor in providers.all_descriptors():
            provider = _provider_config(descriptor, get)
            if provider is not None:
                enabled[descriptor.name] = provider
        if not enabled:
            hints = "; ".join(d.enabled_by for d in providers.all_descriptors())
            raise ConfigError(f"no provider is enabled: set {hints}")
        return cls(
            state_table_name=get("STATE_TABLE_NAME") or "",
            archive_bucket_name=get("ARCHIVE_BUCKET_NAME") or "",
            archive_prefix=normalize_prefix(get("ARCHIVE_PREFIX")),
            settle_seconds=int(_number(get("SETTLE_SECONDS"), "SETTLE_SECONDS", 0, 86400, integer=True)),
            initial_lookback_days=_number(get("INITIAL_LOOKBACK_DAYS"), "INITIAL_LOOKBACK_DAYS", 0.001, 3650),
            http_timeout_seconds=_number(get("HTTP_TIMEOUT_SECONDS"), "HTTP_TIMEOUT_SECONDS", 1, 300),
            providers=enabled,
            sweep_after_seconds=parse_sweep_after(get("SWEEP_AFTER_SECONDS"), "SWEEP_AFTER_SECONDS"),
            sweep_share=_number(get("SWEEP_SHARE"), "SWEEP_SHARE", 0.01, 1),
            object_lock_mode=_choice(get("ARCHIVE_OBJECT_LOCK_MODE"), "ARCHIVE_OBJECT_LOCK_MODE", LOCK_MODES),
            kms_key_arn=get("ARCHIVE_KMS_KEY_ARN") or "",
            signing_key_id=(get("SIGNING_KEY_ID") or "").strip(),
        )

    @property
    def enabled_providers(self) -> tuple[str, ...]:
        return tuple(self.providers)

    def settings(self, name: str) -> Settings:
        return Settings(
            settle_seconds=self.settle_seconds,
            initial_lookback_days=self.initial_lookback_days,
            http_timeout=self.http_timeout_seconds,
            calls_per_minute=self.providers[name].calls_per_minute,
            sweep_after_seconds=self.sweep_after_seconds,
            sweep_share=self.sweep_share,
        )


def parse_sweep_after(raw: str | None, name: str) -> tuple[float, ...]:
    """``1800,86400``: seconds after a window ends at which it is re-read; ``0`` (or empty): no sweep."""
    if not raw or raw.strip() in ("0", "off", "none"):
        return ()
    try:
        ages = tuple(sorted({float(part) for part in raw.split(",")}))
    except ValueError:
        raise ConfigError(f"{name} must be seconds separated by commas (1800,86400), or 0; got {raw!r}") from None
    if len(ages) > 4 or not all(60 <= age <= 7 * 86400 for age in ages):
        raise ConfigError(f"{name} takes at most 4 delays, each from 60 to {7 * 86400} seconds; got {raw!r}")
    return ages


def _reader(env: Mapping[str, str]):
    defaults = environment_variables()

    def get(name: str) -> str | None:
        value = env.get(name, defaults.get(name))
        return value.strip() if isinstance(value, str) and value.strip() else None

    return get


def _provider_config(descriptor: Descriptor, get) -> ProviderConfig | None:
    """The provider's settings when its secret is set; None when it is left out. Half a
    configuration (options without the secret, or the secret without a required option) is refused."""
    secret = get(descriptor.secret_env)
    required = [o for o in descriptor.options if o.required]
    given = {o.name: get(o.env) for o in descriptor.options if get(o.env)}
    set_options = [o.name in given for o in required]
    if (any(set_options) and not secret) or (secret and not all(set_options)):  # half a configuration
        raise ConfigError(f"{descriptor.title} needs both {descriptor.enabled_by} (set both, or neither to disable it)")
    if not secret:
        return None
    return ProviderConfig(
        descriptor=descriptor,
        secret_id=secret,
        base_url=_url(get(descriptor.base_url_env) or "", descriptor.base_url_env),
        # At most the default pace: just under the published limit, which a run must not exceed.
        calls_per_minute=_number(get(descriptor.pace_env), descriptor.pace_env, 1, descriptor.calls_per_minute),
        options=given,
    )


LOCK_MODES = ("NONE", "GOVERNANCE", "COMPLIANCE")


def _choice(raw: str | None, name: str, choices: tuple[str, ...]) -> str:
    value = (raw or choices[0]).upper()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


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

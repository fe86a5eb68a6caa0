"""The Lambda's configuration room: which variables exist follows from the registry, and each
provider gets its own secret, host, pace and options, never another provider's by default."""

from __future__ import annotations

import pytest

from audit_collector import providers
from audit_collector.aws.config import COMMON_VARIABLES, Config, environment_variables, provider_variables
from audit_collector.errors import ConfigError

from ..fake_provider import DESCRIPTOR as FAKE

BASE = {"STATE_TABLE_NAME": "state", "ARCHIVE_BUCKET_NAME": "bucket"}


def enabling(descriptor) -> dict[str, str]:
    """The smallest environment that enables ``descriptor``."""
    env = {descriptor.secret_env: f"audit/{descriptor.name}"}
    env.update({o.env: f"{o.name}-value" for o in descriptor.options if o.required})
    return env


def test_every_registered_provider_brings_its_own_variables(fakeaudit):
    variables = environment_variables()
    assert set(COMMON_VARIABLES) <= set(variables)
    for descriptor in providers.all_descriptors():
        own = provider_variables(descriptor)
        assert {descriptor.secret_env, descriptor.base_url_env, descriptor.pace_env} <= set(own) <= set(variables)
        assert own[descriptor.base_url_env] == descriptor.default_base_url
        assert float(own[descriptor.pace_env]) == descriptor.calls_per_minute
    assert {
        "FAKEAUDIT_TOKEN_SECRET_ID",
        "FAKEAUDIT_API_BASE_URL",
        "FAKEAUDIT_CALLS_PER_MINUTE",
        "FAKEAUDIT_TENANT",
    } <= set(variables)


@pytest.mark.parametrize("name", [d.name for d in providers.all_descriptors()] + ["fakeaudit"])
def test_a_provider_alone_is_enabled_with_its_own_defaults(name, fakeaudit):
    descriptor = providers.get(name)
    config = Config.from_env({**BASE, **enabling(descriptor)})
    assert config.enabled_providers == (name,)
    enabled = config.providers[name]
    assert enabled.secret_id == f"audit/{name}" and enabled.base_url == descriptor.default_base_url
    assert enabled.options == {o.name: f"{o.name}-value" for o in descriptor.options if o.required}
    settings = descriptor.fill(config.settings(name))
    assert settings.calls_per_minute == descriptor.calls_per_minute  # its own pace, nobody else's
    assert settings.page_limit == descriptor.largest_page and settings.pacing_burst == descriptor.pacing_burst
    assert settings.backfill_slices == descriptor.backfill_concurrency


def test_half_a_provider_is_refused_naming_both_halves(fakeaudit):
    with pytest.raises(ConfigError, match="FAKEAUDIT_TOKEN_SECRET_ID and FAKEAUDIT_TENANT"):
        Config.from_env({**BASE, "FAKEAUDIT_TOKEN_SECRET_ID": "s"})
    with pytest.raises(ConfigError, match="FAKEAUDIT_TOKEN_SECRET_ID and FAKEAUDIT_TENANT"):
        Config.from_env({**BASE, "FAKEAUDIT_TENANT": "t"})


def test_no_provider_enabled_names_what_each_one_needs(fakeaudit):
    with pytest.raises(ConfigError, match="no provider is enabled") as refused:
        Config.from_env(BASE)
    for descriptor in providers.all_descriptors():
        assert descriptor.secret_env in str(refused.value)


@pytest.mark.parametrize("pace", ["0", "-1", "fast", "1e9"])
def test_a_pace_above_the_providers_own_or_unreadable_is_refused(pace, fakeaudit):
    with pytest.raises(ConfigError, match=rf"FAKEAUDIT_CALLS_PER_MINUTE must be .* to {FAKE.calls_per_minute}"):
        Config.from_env({**BASE, **enabling(FAKE), "FAKEAUDIT_CALLS_PER_MINUTE": pace})


def test_a_lower_pace_and_another_host_are_taken(fakeaudit):
    env = {**BASE, **enabling(FAKE), "FAKEAUDIT_CALLS_PER_MINUTE": "30", "FAKEAUDIT_API_BASE_URL": "http://127.0.0.1:9"}
    config = Config.from_env(env)
    assert config.settings("fakeaudit").calls_per_minute == 30
    assert config.providers["fakeaudit"].base_url == "http://127.0.0.1:9/"

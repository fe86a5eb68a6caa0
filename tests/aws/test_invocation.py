"""The invoke payload room: providers come from the registry, and a backfill range is checked
and put in the provider's own unit against its own first event and retention."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_collector import providers
from audit_collector.aws.invocation import parse_backfill, parse_invocation
from audit_collector.errors import ConfigError

from ..fake_provider import DESCRIPTOR as FAKE

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()


def test_a_registered_provider_is_accepted_and_an_unknown_one_lists_the_known(fakeaudit):
    assert parse_invocation({"provider": "fakeaudit"}, ("fakeaudit",)).providers == ("fakeaudit",)
    known = ", ".join(providers.names())  # the built-ins, then the test's own
    with pytest.raises(ConfigError, match=f"one of {known}, got 'okta'"):
        parse_invocation({"provider": "okta"}, ("slack",))


def test_a_registered_provider_that_is_not_enabled_says_what_to_set(fakeaudit):
    with pytest.raises(ConfigError, match=r"not enabled .* FAKEAUDIT_TOKEN_SECRET_ID and FAKEAUDIT_TENANT"):
        parse_invocation({"provider": "fakeaudit"}, ("slack",))


def test_a_scheduled_event_runs_every_enabled_provider(fakeaudit):
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-11-20T12:00:00Z"}
    assert parse_invocation(event, ("asana", "fakeaudit")).providers == ("asana", "fakeaudit")


instants = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2026, 11, 20, 11, 59), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(["slack", "asana", "fakeaudit"]), a=instants, b=instants)
def test_any_backfill_range_is_refused_or_put_in_the_providers_unit_within_what_it_keeps(name, a, b):
    providers.names()
    providers.register(FAKE)
    try:
        descriptor = providers.get(name)
        start, end = sorted((a, b))
        spec = {"start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat().replace("+00:00", "Z")}
        first = math.ceil(descriptor.first_event_at(NOW))
        if start == end or end.timestamp() <= first:
            with pytest.raises(ConfigError):
                parse_backfill(descriptor, spec, now=NOW)
            return
        got = parse_backfill(descriptor, spec, now=NOW)
        unit = descriptor.units_per_second
        assert got.end == math.ceil(end.timestamp() * unit)  # the end as asked, in the provider's unit
        assert got.start == math.floor(max(start.timestamp(), first) * unit)
        assert got.start < got.end
        assert bool(got.notes) == (start.timestamp() < first)  # a clamp is always said
    finally:
        providers.unregister(FAKE.name)


def test_a_backfill_ending_in_the_future_is_refused():
    future = datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=1)
    with pytest.raises(ConfigError, match="future"):
        parse_backfill(providers.get("slack"), {"start": "2026-11-01T00:00:00Z", "end": future.isoformat()}, now=NOW)

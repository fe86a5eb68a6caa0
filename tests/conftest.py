"""Shared fixtures: a fake clock (no test ever sleeps for a retry), a running emulator, and the
test-only provider registered for one test."""

from __future__ import annotations

import os

import pytest

from audit_collector import providers
from audit_collector.emulator import Emulator, make_org

from .support import FakeClock

# Never let a test reach AWS: moto intercepts, and these make sure nothing real is configured.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "AuditCollector")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "audit-collector")


@pytest.fixture(autouse=True)
def fresh_aws_adapters():
    """Each test gets its own Lambda container: AWS clients cached by one (under one moto mock)
    never serve another."""
    from audit_collector.aws import handler

    handler.aws_adapters.cache_clear()
    handler.signer_for.cache_clear()
    yield
    handler.aws_adapters.cache_clear()
    handler.signer_for.cache_clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def org():
    return make_org(seed=7, users=300)


@pytest.fixture
def emulator():
    with Emulator() as emu:
        yield emu


@pytest.fixture
def fakeaudit():
    """The test-only FakeAudit provider (tests/fake_provider.py), registered after the built-ins (and
    any entry points), as a plug-in would be in production, and unregistered afterwards."""
    from .fake_provider import DESCRIPTOR

    providers.names()
    providers.register(DESCRIPTOR)
    yield DESCRIPTOR
    providers.unregister(DESCRIPTOR.name)

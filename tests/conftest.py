"""Shared fixtures: a fake clock (no test ever sleeps for a retry) and a running emulator."""

from __future__ import annotations

import os
import time

import pytest

from audit_collector.emulator import Emulator, make_org
from audit_collector.http_retry import Clock

# Never let a test reach AWS: moto intercepts, and these make sure nothing real is configured.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "AuditCollector")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "audit-collector")


class FakeClock(Clock):
    """Time that moves only when someone sleeps (or a test advances it)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


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


NOW = int(time.time())

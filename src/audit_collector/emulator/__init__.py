"""A local stand-in for the Slack and Asana audit log APIs (tests, the demo and benchmarks)."""

from audit_collector.emulator.data import Org, asana_events, make_org, slack_events
from audit_collector.emulator.faults import FAULTS, FaultPlan, TokenBucket
from audit_collector.emulator.server import EmulatedApi, Emulator

__all__ = [
    "FAULTS",
    "EmulatedApi",
    "Emulator",
    "FaultPlan",
    "Org",
    "TokenBucket",
    "asana_events",
    "make_org",
    "slack_events",
]

"""A local stand-in for the Slack and Asana audit log APIs (tests, the demo and benchmarks)."""

from .data import Org, asana_events, make_org, slack_events
from .faults import FAULTS, FaultPlan, TokenBucket
from .server import EmulatedApi, Emulator

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

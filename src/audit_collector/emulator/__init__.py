"""A local stand-in for the audit log APIs (tests, the demo and benchmarks), on loopback only.

The server and what every API shares live here; each API is its own module (``emulator.slack``,
``emulator.asana``), which its provider's descriptor names.
"""

from audit_collector.emulator.api import Answer, EmulatedApi, Request
from audit_collector.emulator.faults import FAULTS, FaultPlan, known_faults
from audit_collector.emulator.limits import TokenBucket
from audit_collector.emulator.org import Org, make_org
from audit_collector.emulator.registry import api_classes, position_faults, served_text
from audit_collector.emulator.server import Emulator

__all__ = [
    "FAULTS",
    "Answer",
    "EmulatedApi",
    "Emulator",
    "FaultPlan",
    "Org",
    "Request",
    "TokenBucket",
    "api_classes",
    "known_faults",
    "make_org",
    "position_faults",
    "served_text",
]

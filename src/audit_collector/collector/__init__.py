"""The collector: jobs, lease, budget and write-then-checkpoint, for any provider's ``Source``.

Imports no boto3, no requests and no provider: adapters and sources come in. A provider plugs in
through ``provider.py`` (``Descriptor``, ``Source``, ``Window``, ``WindowContext``).
"""

from audit_collector.collector.backfill import BackfillRequest, summarize_backfills
from audit_collector.collector.loop import collect
from audit_collector.collector.provider import (
    Activity,
    ClientSettings,
    Column,
    Descriptor,
    Extracted,
    Option,
    Source,
    Window,
    WindowContext,
)
from audit_collector.collector.result import Progress, ProgressCallback, RunResult
from audit_collector.collector.settings import Budget, BudgetedClock, Settings

__all__ = [
    "Activity",
    "BackfillRequest",
    "Budget",
    "BudgetedClock",
    "ClientSettings",
    "Column",
    "Descriptor",
    "Extracted",
    "Option",
    "Progress",
    "ProgressCallback",
    "RunResult",
    "Settings",
    "Source",
    "Window",
    "WindowContext",
    "collect",
    "summarize_backfills",
]

"""The collector: jobs, lease, budget and write-then-checkpoint, for any provider's ``Source``.

Imports no boto3, no requests and no provider: adapters and sources come in.
"""

from audit_collector.collector.backfill import BackfillRequest, summarize_backfills
from audit_collector.collector.loop import Progress, ProgressCallback, RunResult, WindowContext, collect
from audit_collector.collector.settings import Budget, BudgetedClock, Settings
from audit_collector.collector.source import Source, Window

__all__ = [
    "BackfillRequest",
    "Budget",
    "BudgetedClock",
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

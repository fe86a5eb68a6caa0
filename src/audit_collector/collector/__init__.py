"""The collector: jobs, lease, budget and write-then-checkpoint, for any provider's ``Source``.

Imports no boto3, no requests and no provider: adapters and sources come in.
"""

from .backfill import BackfillRequest, summarize_backfills
from .loop import Progress, ProgressCallback, RunResult, WindowContext, collect
from .settings import Budget, BudgetedClock, Settings
from .source import Source, Window

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

"""``audit-collector``: the same pipeline as the Lambda, from a laptop or a CI box (the laptop edge).

Exit codes: 0 done, 1 failed, 2 bad usage, 3 stopped early with work left.
"""

from audit_collector.cli.parser import main

__all__ = ["main"]

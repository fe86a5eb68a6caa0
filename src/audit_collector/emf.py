"""CloudWatch metrics as embedded-metric-format log lines.

The scheduled verification and compaction publish their metric by printing one JSON line: no API
call and no ``cloudwatch:PutMetricData`` permission. The collector's handler uses Powertools'
``Metrics``, which writes the same format under the same namespace.
"""

from __future__ import annotations

import json
from typing import Any

NAMESPACE = "AuditCollector"


def metric_line(name: str, value: float, now: float, dimensions: list[list[str]], **properties: Any) -> str:
    """One ``Count`` metric, with ``dimensions`` (names among ``properties``) and the properties."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": dimensions,
                        "Metrics": [{"Name": name, "Unit": "Count"}],
                    }
                ],
            },
            **properties,
            name: value,
        }
    )

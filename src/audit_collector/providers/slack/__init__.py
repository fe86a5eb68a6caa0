"""Slack Enterprise Grid's Audit Logs API: its client, its collection strategy and its descriptor."""

from audit_collector.providers.slack.descriptor import DESCRIPTOR

__all__ = ["DESCRIPTOR"]

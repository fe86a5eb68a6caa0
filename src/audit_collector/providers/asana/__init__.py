"""Asana's audit log API: its client, its collection strategy and its descriptor."""

from audit_collector.providers.asana.descriptor import DESCRIPTOR

__all__ = ["DESCRIPTOR"]

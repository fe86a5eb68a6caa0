"""Asana's audit log API: its client, its collection strategy and its descriptor."""

from .descriptor import DESCRIPTOR

__all__ = ["DESCRIPTOR"]

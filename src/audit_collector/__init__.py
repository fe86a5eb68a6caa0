"""audit-collector: archive Slack Enterprise Grid and Asana audit logs exactly once."""

__version__ = "0.1.0"

"""audit-collector: archive enterprise audit logs exactly once (the providers are in ``providers/``)."""

__version__ = "0.1.0"

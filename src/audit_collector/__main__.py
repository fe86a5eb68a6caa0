"""``python -m audit_collector`` runs the CLI."""

from .cli import main

raise SystemExit(main())

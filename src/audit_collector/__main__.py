"""``python -m audit_collector`` runs the CLI."""

from audit_collector.cli import main

raise SystemExit(main())

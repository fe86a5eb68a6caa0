"""What the docs name, for the tests that hold the code to them: the hand-written pages under ``docs/``
and the Providers reference, which ``docs/gen_providers.py`` writes from the provider registry when
the site is built. A variable or flag counts as documented on either, so a new provider needs no page
edited by hand: its variables and flags are on the generated page as soon as it is registered.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

from audit_collector.aws.config import environment_variables
from audit_collector.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATOR = DOCS / "gen_providers.py"


def generator() -> ModuleType:
    """``docs/gen_providers.py``, loaded from its path: it is no module of the package. Loaded under
    its own name, it only defines ``render`` (the build runs it as ``<run_path>``, and then it writes)."""
    spec = importlib.util.spec_from_file_location("gen_providers", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def providers_page() -> str:
    """The Providers reference as the build would write it now, for the providers registered now."""
    return generator().render()


def undocumented_variables() -> list[str]:
    """Every variable the Lambda reads that neither deploy.md (its Configuration table) nor the
    Providers reference names."""
    pages = ((DOCS / "deploy.md").read_text(), providers_page())
    return [name for name in environment_variables() if not any(f"`{name}`" in page for page in pages)]


def undocumented_cli() -> list[str]:
    """Every subcommand cli.md does not name, and every flag neither cli.md nor the Providers reference names."""
    cli, generated = (DOCS / "cli.md").read_text(), providers_page()
    parser = build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    missing = []
    for name, sub in commands.choices.items():
        if f"`{name}`" not in cli:
            missing.append(name)
        for action in sub._actions:
            missing += [
                f"{name} {flag}"
                for flag in action.option_strings
                if flag not in ("-h", "--help") and f"`{flag}`" not in cli and f"`{flag}`" not in generated
            ]
    return missing

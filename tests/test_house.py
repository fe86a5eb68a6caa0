"""The house as the docs draw it: rooms in layers (import-linter's contracts in pyproject.toml), no
import circle between any two modules, no module too long to read in one sitting, no private name
used across modules, and the public import paths users rely on kept as re-exports."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "audit_collector"
LONGEST = 400


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "static" not in p.parts)


def test_no_import_circle_between_modules() -> None:
    graph = grimp.build_graph("audit_collector")  # type-checking imports count
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan: every strongly connected set of more than one module
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert circles == []


def test_the_layers_hold() -> None:
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(PACKAGE.parents[1] / "pyproject.toml"), no_cache=True) == 0


def test_a_new_provider_that_imports_another_breaks_the_contract(tmp_path: Path) -> None:
    """The independence contract names providers by wildcard, so a provider nobody listed in
    pyproject.toml is held to it too: a copy of the package with a new provider reaching into
    Slack's client fails ``lint-imports``; the same copy without that import passes."""
    shutil.copytree(PACKAGE, tmp_path / "src" / "audit_collector", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE.parents[1] / "pyproject.toml", tmp_path)
    probe = tmp_path / "src" / "audit_collector" / "providers" / "contract_probe"
    probe.mkdir()
    (probe / "__init__.py").write_text('"""A provider the contract does not name."""\n')

    def lint() -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
        command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
        return subprocess.run([*command, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)

    assert lint().returncode == 0, lint().stdout[-2000:]
    (probe / "source.py").write_text("from audit_collector.providers.slack import client  # noqa: F401\n")
    broken = lint()
    assert broken.returncode != 0 and "A provider never imports another BROKEN" in broken.stdout, broken.stdout[-2000:]
    said = " ".join(broken.stdout.split())  # the report wraps long lines
    assert "audit_collector.providers.contract_probe.source -> audit_collector.providers.slack.client" in said


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_every_module_reads_in_one_sitting(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= LONGEST


def test_no_private_name_is_used_across_modules() -> None:
    """A leading underscore means "this module's own": nothing else imports it or reaches into it."""
    found = []
    for path in modules():
        tree = ast.parse(path.read_text())
        imported_modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("audit_collector"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.name}: from {node.module} import {alias.name}")
                    imported_modules.add(alias.asname or alias.name)
                parts = (node.module or "").split(".")
                if any(p.startswith("_") and not p.startswith("__") for p in parts):
                    found.append(f"{path.name}: from {node.module} (a private module)")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert found == []


@pytest.mark.parametrize(
    ("public", "rooms"),
    [
        ("audit_collector.slack", ["audit_collector.providers.slack.client", "audit_collector.providers.slack.models"]),
        ("audit_collector.asana", ["audit_collector.providers.asana.client", "audit_collector.providers.asana.models"]),
        (
            "audit_collector.http_retry",
            [
                "audit_collector.http.retry",
                "audit_collector.http.async_retry",
                "audit_collector.http.clock",
                "audit_collector.http.messages",
            ],
        ),
    ],
)
def test_public_import_paths_re_export_the_rooms(public: str, rooms: list[str]) -> None:
    """``from audit_collector.slack import AuditLogsClient`` (and the like) keeps working, and hands
    out the very objects the rooms define: one class, so ``isinstance`` and ``except`` agree."""
    module = importlib.import_module(public)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    assert names
    homes = [importlib.import_module(room) for room in rooms]
    for name in names:
        exported = getattr(module, name)
        defined = [getattr(home, name) for home in homes if hasattr(home, name)]
        if defined:
            assert all(d is exported for d in defined), name
    defined_somewhere = [n for n in names if any(hasattr(h, n) for h in homes)]
    assert defined_somewhere, f"{public} re-exports nothing from {rooms}"


def test_the_http_retry_path_has_every_handler_and_its_async_twin() -> None:
    from audit_collector import http_retry

    for name in ("ConnectionErrorRetryHandler", "RateLimitErrorRetryHandler", "ServerErrorRetryHandler"):
        sync, twin = getattr(http_retry, name), getattr(http_retry, "Async" + name)
        assert issubclass(twin, sync)
    assert {"Clock", "RequestPacer", "HttpRequest", "HttpResponse", "RetryState"} <= set(http_retry.__all__)


def code_words(path: Path) -> set[str]:
    """The identifiers, imported modules and one-word strings (keys, paths, codes) of a module; its
    docstrings, comments and prose-like strings (sample data) left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            words.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            words.add(node.name)
        elif isinstance(node, ast.alias):
            words.add(node.asname or node.name)
        elif isinstance(node, ast.ImportFrom):
            words.add(node.module or "")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(w for w in [node.value] if w.split() == [w])
    return words


def test_the_emulator_server_names_no_provider() -> None:
    """Each emulated API is the module its descriptor names; the server, the faults and the rest are
    the same for every API, so a new provider brings its module and edits none of them."""
    from audit_collector import providers

    descriptors = providers.all_descriptors()
    api_modules = {d.emulator for d in descriptors if d.emulator}
    assert api_modules, "the built-in providers name their emulator modules"
    shared = [p for p in (PACKAGE / "emulator").glob("*.py") if f"audit_collector.emulator.{p.stem}" not in api_modules]
    assert {p.stem for p in shared} >= {"server", "api", "faults", "registry"}
    names = [d.name for d in descriptors]
    found = {(p.name, word) for p in shared for word in code_words(p) if any(name in word.lower() for name in names)}
    assert found == set()

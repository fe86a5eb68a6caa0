"""Every Python sample of README.md and docs/ runs, as written, against the emulator; the CLI page names
every subcommand and option (a provider's own flags may be on the generated Providers reference instead).

pytest-examples finds the samples; each is compiled under its page's name at its own lines, so a
failure's traceback shows the page. (Its EvalExample is not used: with pytest 9 its rewritten
tracebacks end a failing run in an INTERNALERROR instead of a report.) Each runs with a fresh
emulator on 127.0.0.1 holding a few events of each API: the clients' default base URLs point at it,
``SLACK_ORG_ADMIN_USER_TOKEN``, ``ASANA_TOKEN`` and ``ASANA_WORKSPACE_GID`` hold its values, and name
resolution is refused for anything but loopback. An HTML comment just before a block
(``<!-- emulator: reset rate_limit; retry_after=0 -->``) scripts the faults its first Slack requests
get. A block fenced ```{.python .no-run}``` needs a real token or AWS: it is skipped, by name.
docs/coming-from-slack-sdk.md has its own test (tests/test_migration_docs.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytest_examples import CodeExample, find_examples

from audit_collector.asana import AsanaAuditLogClient, AsyncAsanaAuditLogClient
from audit_collector.emulator import Emulator, FaultPlan, make_org
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.slack import AsyncAuditLogsClient, AuditLogsClient

from .docs_pages import undocumented_cli
from .test_migration_docs import loopback_only  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
OWN_TEST = {"coming-from-slack-sdk.md"}  # tests/test_migration_docs.py runs that page
SETUP = re.compile(r"<!-- emulator: (?P<setup>[^>]*?) -->\n$")
T0 = 1_700_000_000  # the samples' `oldest=1700000000`


def samples() -> list[CodeExample]:
    found = find_examples(ROOT / "README.md", ROOT / "docs")
    return [example for example in found if example.path.name not in OWN_TEST]


def label(example: CodeExample) -> str:
    return f"{example.path.relative_to(ROOT)}:{example.start_line}"


def setup_of(example: CodeExample) -> str:
    """The emulator comment just before the block's fence, if any."""
    text = example.path.read_text()
    fence = text.rfind("```", 0, example.start_index)
    match = SETUP.search(text[: text.rfind("\n", 0, fence) + 1])
    return match["setup"] if match else ""


def emulator_for(setup: str) -> Emulator:
    faults, _, options = setup.partition(";")
    settings = dict(option.strip().split("=", 1) for option in options.split(",") if option.strip())
    emu = Emulator(faults=FaultPlan(retry_after=settings.get("retry_after", "1")))
    if faults.split():
        emu.faults.script("slack", *faults.split())
    org = make_org(seed=3, users=20)
    emu.slack.add(slack_events(org, T0, T0 + 3600, 40))
    emu.asana.add(asana_events(org, T0 * 1000, (T0 + 3600) * 1000, 40))
    return emu


def test_samples_are_found_and_few_are_not_run():
    pages = {example.path.name for example in samples()}
    assert {"README.md", "clients.md", "emulator.md"} <= pages
    skipped = [label(example) for example in samples() if "no-run" in example.prefix_tags()]
    assert len(skipped) <= 3, f"keep samples that cannot run here few: {skipped}"


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.parametrize("example", samples(), ids=label)
def test_each_sample_runs_as_written(example, monkeypatch, loopback_only, capsys):  # noqa: F811
    if "no-run" in example.prefix_tags():
        pytest.skip(f"{label(example)} is fenced .no-run (it needs a real token or AWS)")
    setup = setup_of(example)
    with emulator_for(setup) as emu:
        monkeypatch.setenv("SLACK_ORG_ADMIN_USER_TOKEN", emu.slack.token)
        monkeypatch.setenv("ASANA_TOKEN", emu.asana.token)
        monkeypatch.setenv("ASANA_WORKSPACE_GID", emu.asana.workspace_gid)
        for client in (AuditLogsClient, AsyncAuditLogsClient):
            monkeypatch.setattr(client, "default_base_url", emu.slack.base_url)
        for client in (AsanaAuditLogClient, AsyncAsanaAuditLogClient):
            monkeypatch.setattr(client, "default_base_url", emu.asana.base_url)
        # Compiled under the page's name, at its own lines: a failure's traceback shows the page.
        code = compile("\n" * example.start_line + example.source, str(example.path), "exec")
        exec(code, {"__name__": "__main__"})
        scripted = setup.partition(";")[0].split()
        assert [r["fault"] for r in emu.request_log][: len(scripted)] == scripted  # each fault was met
    assert capsys.readouterr().out, f"{label(example)} prints nothing: show the reader its result"


def test_the_cli_page_names_every_subcommand_and_option():
    # A provider's own flags may be on the generated Providers reference instead of docs/cli.md.
    missing = undocumented_cli()
    assert not missing, f"neither docs/cli.md nor the Providers reference names: {missing}"


def test_every_file_the_docs_name_exists():
    """The pages cite tests and modules as evidence ("tested in tests/..."): a move must take the
    citation with it. The example of a new provider (``newapi``) is the one hypothetical path."""
    pages = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md"]
    cited = {
        (page.relative_to(ROOT).as_posix(), path)
        for page in pages
        for path in re.findall(
            r"\b(?:tests|src/audit_collector|benchmarks)/[\w/]+\.(?:py|yaml|json|md)\b", page.read_text()
        )
        if "newapi" not in path
    }
    assert len(cited) >= 20
    assert sorted((page, path) for page, path in cited if not (ROOT / path).exists()) == []

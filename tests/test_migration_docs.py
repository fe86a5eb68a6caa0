"""Every Python example of docs/coming-from-slack-sdk.md runs, as written, against the emulator.

Each block gets a fresh emulator on 127.0.0.1 holding a few events, the token in
``SLACK_ORG_ADMIN_USER_TOKEN``, and the clients' default base URL pointed at it. An HTML comment
just before a block (``<!-- emulator: disconnect rate_limit; retry_after=0 -->``, invisible on the
rendered page) scripts the faults its first requests get. Name resolution is refused for anything
but loopback, so an example cannot reach Slack even by mistake.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from audit_collector.emulator import Emulator, FaultPlan, make_org
from audit_collector.emulator.slack import slack_events
from audit_collector.slack import AsyncAuditLogsClient, AuditLogsClient

PAGE = Path(__file__).resolve().parents[1] / "docs" / "coming-from-slack-sdk.md"
BLOCK = re.compile(r"(?:<!-- emulator: (?P<setup>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
T0 = 1_700_000_000


def examples() -> list[tuple[str, str, str]]:
    """(the heading above it, its emulator setup, its code) for each Python block of the page."""
    text = PAGE.read_text()
    found = []
    for match in BLOCK.finditer(text):
        heading = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        found.append((heading[-1] if heading else "top", match["setup"] or "", match["code"]))
    return found


def emulator_for(setup: str) -> Emulator:
    faults, _, options = setup.partition(";")
    settings = dict(option.strip().split("=", 1) for option in options.split(",") if option.strip())
    emu = Emulator(faults=FaultPlan(retry_after=settings.get("retry_after", "1")))
    if faults.split():
        emu.faults.script("slack", *faults.split())
    emu.slack.add(slack_events(make_org(seed=3, users=20), T0, T0 + 3600, 5))
    return emu


@pytest.fixture
def loopback_only(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"the docs examples talk to 127.0.0.1 only, not {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_the_page_has_an_example_for_each_difference():
    headings = {heading for heading, _, _ in examples()}
    assert len(examples()) >= 12
    for section in re.findall(r"^## (.+)$", PAGE.read_text(), re.M):
        assert section in headings, f"no runnable example under '## {section}'"


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    ("heading", "setup", "code"), examples(), ids=[f"{i}-{h}" for i, (h, _, _) in enumerate(examples())]
)
def test_each_example_runs_as_written(heading, setup, code, monkeypatch, loopback_only, capsys):
    with emulator_for(setup) as emu:
        monkeypatch.setenv("SLACK_ORG_ADMIN_USER_TOKEN", emu.slack.token)
        monkeypatch.setattr(AuditLogsClient, "default_base_url", emu.slack.base_url)
        monkeypatch.setattr(AsyncAuditLogsClient, "default_base_url", emu.slack.base_url)
        exec(compile(code, f"{PAGE.name}: {heading}", "exec"), {"__name__": "__main__"})
        scripted = setup.partition(";")[0].split()
        assert [r["fault"] for r in emu.request_log][: len(scripted)] == scripted  # each fault was met
    assert capsys.readouterr().out  # every example shows its result

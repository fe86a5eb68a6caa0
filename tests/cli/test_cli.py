"""The CLI end to end against the emulator: local folder and moto, exit codes, output formats."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from moto import mock_aws

from audit_collector import cli, providers
from audit_collector.emulator import Emulator
from audit_collector.emulator.slack import slack_events
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive

from ..support import BUCKET, BUILTIN_PROVIDERS, ROOT, TABLE, add_history, assert_exactly_once, create_aws_resources

NOW = int(datetime.now(UTC).timestamp())


@pytest.fixture
def served() -> dict[str, list[dict]]:
    """The events each built-in API serves in ``emu``, by provider."""
    return {}


@pytest.fixture
def emu(org, served):
    with Emulator() as e:
        for seed, name in enumerate(BUILTIN_PROVIDERS, start=31):
            count = 300 if name == "slack" else 200  # test_query_formats counts Slack's 300
            served[name] = add_history(e, org, name, NOW - 20 * 3600, NOW - 3600, count, seed=seed)
        yield e


def collect_args(emu, provider, archive, *extra):
    args = [
        "collect",
        "--provider",
        provider,
        "--archive",
        str(archive),
        "--lookback-days",
        "1",
        "--api-base-url",
        emu.api(provider).base_url,
    ]
    api = emu.api(provider)
    for option in providers.get(provider).options:  # Asana's --workspace-gid, from its emulated API
        if option.name in api.options:
            args += [option.flag, api.options[option.name]]
    return args + list(extra)


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_collect_into_a_local_folder_then_status_and_query(emu, served, provider, tmp_path, monkeypatch, capsys):
    descriptor = providers.get(provider)
    monkeypatch.setenv(descriptor.token_env, emu.api(provider).token)
    assert cli.main(collect_args(emu, provider, tmp_path / "a")) == 0
    out = capsys.readouterr().out
    assert f"{provider}: " in out and "caught up" in out
    expected = served[provider]
    assert_exactly_once(LocalArchive(tmp_path / "a"), provider, expected)
    assert cli.main(["status", "--archive", str(tmp_path / "a")]) == 0
    assert f"{provider}: archived up to" in capsys.readouterr().out
    table = descriptor.table
    assert (
        cli.main(["query", f"SELECT count(*) AS n FROM {table}", "--archive", str(tmp_path / "a"), "--format", "json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"n": len(expected)}


def test_query_formats(emu, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    cli.main(collect_args(emu, "slack", tmp_path))
    capsys.readouterr()
    sql = "SELECT dt, count(*) AS n FROM slack_audit_logs GROUP BY dt ORDER BY dt"
    assert cli.main(["query", sql, "--archive", str(tmp_path), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "dt,n" and sum(int(line.split(",")[1]) for line in lines[1:]) == 300
    days = len(lines) - 1  # one row a day the events fall on: one or more, by the hour the test runs
    assert cli.main(["query", sql, "--archive", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[-1] == (f"({days} rows)" if days != 1 else "(1 row)")
    assert all(line.split(",")[0] in table for line in lines[1:])


def test_collect_into_s3_and_dynamodb(emu, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASANA_TOKEN", emu.asana.token)
    with mock_aws():
        create_aws_resources()
        code = cli.main(collect_args(emu, "asana", f"s3://{BUCKET}/audit", "--state", f"dynamodb://{TABLE}"))
        assert code == 0
        assert_exactly_once(
            S3Archive(BUCKET), "asana", [json.loads(i.raw) for i in emu.asana.log.items], prefix="audit/"
        )


def test_token_from_a_named_variable_and_never_printed(emu, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MY_SLACK", emu.slack.token)
    assert cli.main(collect_args(emu, "slack", tmp_path, "--token-env", "MY_SLACK")) == 0
    captured = capsys.readouterr()
    assert emu.slack.token not in captured.out + captured.err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["collect", "--provider", "slack"], "no slack token"),
        (["collect", "--provider", "asana", "--workspace-gid", ""], "--workspace-gid"),
        (["collect", "--provider", "slack", "--archive", "ftp://x"], "--archive"),
        (["collect", "--provider", "slack", "--archive", "s3://"], "name a bucket"),
        (["collect", "--provider", "slack", "--archive", "s3://b/p"], "--state dynamodb://"),
        (["collect", "--provider", "slack", "--state", "dynamodb://"], "name a table"),
        (["query", "SELECT 1", "--archive", "s3://b/p"], "Athena"),
    ],
)
def test_bad_usage_exits_2_with_a_message(argv, message, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("SLACK_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    if "--workspace-gid" in argv:
        monkeypatch.setenv("ASANA_TOKEN", "t")
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "archive").exists()


@pytest.mark.parametrize("argv", [["collect"], ["collect", "--provider", "teams"], ["frobnicate"], []])
def test_argparse_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2


def test_a_rejected_token_exits_1(emu, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_TOKEN", "xoxp-not-valid")
    assert cli.main(collect_args(emu, "slack", tmp_path)) == 1
    err = capsys.readouterr().err
    assert "invalid_authentication" in err and "xoxp-not-valid" not in err


def test_a_short_budget_exits_3_and_the_next_run_finishes(emu, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    assert cli.main(collect_args(emu, "slack", tmp_path, "--budget-seconds", "20")) == 3
    assert "stopped early" in capsys.readouterr().out
    assert cli.main(collect_args(emu, "slack", tmp_path)) == 0


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "audit_collector", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("audit-collector ")


def slow_collect_argv(emu, folder) -> list[str]:
    """A CLI collect in its own process, in many small pages and objects; unpaced, as these tests
    are about crashes and pauses, not pacing. Its last two arguments are the object size."""
    return [
        sys.executable,
        "-m",
        "audit_collector",
        *collect_args(emu, "slack", folder),
        "--lookback-days",
        "2",
        "--page-limit",
        "40",
        "--calls-per-minute",
        "0",
        "--max-object-mb",
        "0.02",
    ]


def test_a_process_killed_mid_run_then_rerun_archives_exactly_once(org, tmp_path):
    """A real subprocess, SIGKILLed while it works, twice; the rerun finishes; nothing lost or doubled."""
    events = slack_events(org, NOW - 40 * 3600, NOW - 3600, 3000, seed=41)
    state_file = tmp_path / "a" / "state.json"
    with Emulator(latency=0.04) as emu:
        emu.slack.add(events)
        env = {**os.environ, "SLACK_TOKEN": emu.slack.token}
        argv = slow_collect_argv(emu, tmp_path / "a")
        progress = []
        for delay in (1.5, 1.5):
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL  # it was still working
            state = json.loads(state_file.read_text())
            assert state["slack"]["lease_owner"]  # a killed process releases nothing
            progress.append(len(list(LocalArchive(tmp_path / "a").keys("slack/"))))
            state["slack"]["lease_expires_at"] = 0  # what waiting for the dead run's deadline does
            state_file.write_text(json.dumps(state))
        assert 0 < progress[0] < progress[1]  # each killed run got somewhere, the second further
        json.loads(state_file.read_text())  # atomic writes: a kill never leaves half a file in place
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert list((tmp_path / "a").rglob("*.tmp")) == []  # what killed writers left is cleared by the rerun
    assert_exactly_once(LocalArchive(tmp_path / "a"), "slack", events)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--page-limit", "10000"], "from 1 to 9999"),
        (["--max-object-mb", "0"], "--max-object-mb"),
    ],
)
def test_tuning_options_are_checked(emu, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("SLACK_TOKEN", emu.slack.token)
    assert cli.main(collect_args(emu, "slack", tmp_path, *argv)) == 2
    assert message in capsys.readouterr().err
    assert emu.request_log == []


def test_the_demo_runs_end_to_end_from_the_installed_command(tmp_path):
    """What `make demo` runs (smaller): emulator, collection, backfill, check, queries; loopback only."""
    command = Path(sys.executable).with_name("audit-collector")
    assert command.exists(), "the console script is installed with the package"
    out = subprocess.run(
        [str(command), "demo", "--archive", str(tmp_path / "demo"), "--days", "2", "--users", "300"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count(": exactly once") == len(providers.names())
    assert "Who failed to log in to Slack most" in out.stdout and "(5 rows)" in out.stdout
    assert (tmp_path / "demo" / "state.json").exists()
    # A second demo into the same folder starts clean; a folder it did not create is refused.
    again = subprocess.run(
        [str(command), "demo", "--archive", str(tmp_path / "demo"), "--days", "1", "--users", "300"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert again.returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    refused = subprocess.run(
        [str(command), "demo", "--archive", str(tmp_path / "mine")], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "not a demo archive" in refused.stderr
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def _stop_outside_locks(proc: subprocess.Popen, folder: Path) -> None:
    """SIGSTOP ``proc`` at a moment it holds neither the state's nor the archive's file lock (a
    stopped process holding a lock would only block the next run, which is not what is tested)."""
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        free = True
        for name in ("state.json.lock", ".archive.lock"):
            with open(folder / name, "a+") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(lock, fcntl.LOCK_UN)
                except BlockingIOError:
                    free = False
        if free:
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("could not stop the process outside its locks")


@pytest.mark.slow
@pytest.mark.parametrize("pause_after", [1.0, 2.2])
def test_a_process_paused_past_its_lease_cannot_overwrite_the_next_owner(org, tmp_path, pause_after):
    """A real subprocess is stopped (SIGSTOP) mid-run and its lease runs out; another run takes over
    and finishes; the first is resumed. It must refuse to write anything more: the archive stays
    exactly the second run's, every event once."""
    events = slack_events(org, NOW - 40 * 3600, NOW - 3600, 3000, seed=43)
    folder = tmp_path / "a"
    state_file = folder / "state.json"
    with Emulator(latency=0.04) as emu:
        emu.slack.add(events)
        env = {**os.environ, "SLACK_TOKEN": emu.slack.token}
        argv = slow_collect_argv(emu, folder)
        first = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(pause_after)
            _stop_outside_locks(first, folder)
            written_before = set(LocalArchive(folder).keys("slack/"))
            assert written_before  # it got somewhere before it was paused
            state = json.loads(state_file.read_text())
            state["slack"]["lease_expires_at"] = 0  # what a pause longer than the lease does
            state_file.write_text(json.dumps(state))
            # The next owner cuts its objects differently (a redeploy changed the size): a stale write of
            # the first run's part would then replace events the new owner archived, not copy them.
            bigger = [*argv[:-2], "--max-object-mb", "0.05"]
            second = subprocess.run(bigger, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert second.returncode == 0, second.stderr
            after_second = {k: LocalArchive(folder).get(k) for k in LocalArchive(folder).keys("slack/")}
        finally:
            first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 1, err
        assert "no longer holds the lease" in err or "changed since" in err or "taken over" in err, err
    final = {k: LocalArchive(folder).get(k) for k in LocalArchive(folder).keys("slack/")}
    assert final == after_second  # the resumed run wrote nothing over the new owner's objects
    assert_exactly_once(LocalArchive(folder), "slack", events)

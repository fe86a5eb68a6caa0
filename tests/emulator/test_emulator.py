"""The clients against the emulator over real loopback sockets: semantics, faults, rate limits."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests

from audit_collector.asana import AsanaApiError, AsanaAuditLogClient, iso_ms
from audit_collector.emulator import Emulator, FaultPlan, make_org
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.http_retry import (
    ConnectionErrorRetryHandler,
    FixedValueRetryIntervalCalculator,
    RateLimitErrorRetryHandler,
    ReadTimeoutError,
    ServerErrorRetryHandler,
    TruncatedBodyError,
)
from audit_collector.slack import AuditLogsApiError, AuditLogsBodyError, AuditLogsClient

T0 = 1_790_000_000  # a fixed instant in the past


def entry(i: int, second: int) -> dict:
    return {
        "id": f"e{i:05d}",
        "date_create": second,
        "action": "user_login",
        "actor": {"type": "user", "user": {"id": f"W{i % 3}"}},
        "entity": {"type": "user", "user": {"id": f"W{i % 5}"}},
    }


def slack(emu: Emulator, **kwargs) -> AuditLogsClient:
    return AuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url, **kwargs)


def asana(emu: Emulator, **kwargs) -> AsanaAuditLogClient:
    return AsanaAuditLogClient(token=emu.asana.token, base_url=emu.asana.base_url, **kwargs)


def fast_retries(count: int = 3):
    fixed = FixedValueRetryIntervalCalculator(0.01)
    return [
        ConnectionErrorRetryHandler(count, fixed),
        ServerErrorRetryHandler(count, fixed),
        RateLimitErrorRetryHandler(count, fixed),
    ]


def all_ids(pages) -> list[str]:
    return [e["id"] for p in pages for e in p.body["entries"]]


# ------------------------------------------------------------------ Slack semantics


def test_slack_bounds_are_inclusive_and_order_is_newest_first(emulator):
    emulator.slack.add([entry(i, T0 + i) for i in range(10)])
    pages = list(slack(emulator).iter_logs(oldest=T0 + 2, latest=T0 + 7, limit=100))
    seconds = [e["date_create"] for p in pages for e in p.body["entries"]]
    assert seconds == list(range(T0 + 7, T0 + 1, -1))


def test_slack_pages_split_seconds_by_default_or_never_when_asked():
    # 3 events in one second, then 4 in the next. Split (the default): pages of 2, 2, 2, 1, each
    # second spread over two pages. Unsplit: limit 2 gives pages of 4 then 3.
    for split, sizes in ((True, [2, 2, 2, 1]), (False, [4, 3])):
        with Emulator(slack={"split_seconds": split}) as emulator:
            emulator.slack.add([entry(i, T0) for i in range(3)] + [entry(10 + i, T0 + 1) for i in range(4)])
            pages = list(slack(emulator).iter_logs(oldest=T0, latest=T0 + 1, limit=2))
            assert [len(p.body["entries"]) for p in pages] == sizes
            ids = all_ids(pages)
            assert len(ids) == len(set(ids)) == 7
            seconds = [e["date_create"] for p in pages for e in p.body["entries"]]
            assert seconds == sorted(seconds, reverse=True)


def test_slack_filters(emulator):
    emulator.slack.add([entry(i, T0 + i) for i in range(30)])
    c = slack(emulator)
    assert all(e["actor"]["user"]["id"] == "W1" for e in c.logs(actor="W1", oldest=T0, latest=T0 + 99).body["entries"])
    assert len(c.logs(entity="W2", oldest=T0, latest=T0 + 99).body["entries"]) == 6
    assert c.logs(action="file_downloaded", oldest=T0, latest=T0 + 99).body["entries"] == []


def test_slack_cursor_is_stable_under_live_arrivals(emulator):
    emulator.slack.add([entry(i, T0 + i) for i in range(20)])
    c = slack(emulator)
    first = c.logs(oldest=T0, latest=T0 + 100, limit=5)
    emulator.slack.add([entry(100 + i, T0 + 19) for i in range(3)])  # arrivals in the served second
    rest = list(c.iter_logs(oldest=T0, latest=T0 + 100, limit=5, cursor=first.next_cursor))
    ids = all_ids([first, *rest])
    assert len(ids) == len(set(ids)) == 20  # nothing served twice, nothing skipped below the cursor


def test_slack_cursor_with_other_filters_is_invalid(emulator):
    emulator.slack.add([entry(i, T0 + i) for i in range(20)])
    c = slack(emulator)
    cursor = c.logs(oldest=T0, latest=T0 + 100, limit=5).next_cursor
    with pytest.raises(AuditLogsApiError) as info:
        c.logs(oldest=T0 + 1, latest=T0 + 100, limit=5, cursor=cursor)
    assert info.value.error == "invalid_cursor"


def test_slack_late_events_are_invisible_until_they_arrive():
    now = [float(T0 + 60)]
    with Emulator(clock=lambda: now[0]) as emu:
        emu.slack.add([entry(1, T0 + 50)], lag=30)  # reaches the API at T0 + 80
        assert slack(emu).logs(oldest=T0).body["entries"] == []
        now[0] += 30
        assert len(slack(emu).logs(oldest=T0).body["entries"]) == 1


@pytest.mark.parametrize("token,code", [("", "missing_authentication"), ("xoxp-wrong", "invalid_authentication")])
def test_slack_token_errors(emulator, token, code):
    with pytest.raises(AuditLogsApiError) as info:
        AuditLogsClient(token=token, base_url=emulator.slack.base_url).logs()
    assert info.value.error == code


def test_slack_feature_not_enabled():
    with (
        Emulator(slack={"tokens_without_feature": ["xoxp-wsapp"]}) as emu,
        pytest.raises(AuditLogsApiError, match="Enterprise Grid"),
    ):
        AuditLogsClient(token="xoxp-wsapp", base_url=emu.slack.base_url).logs()


def test_schemas_and_actions(emulator):
    c = AuditLogsClient(base_url=emulator.slack.base_url)
    assert {s["type"] for s in c.schemas().body["schemas"]} >= {"user", "channel", "file"}
    assert "user_login" in c.actions().body["actions"]["user"]


def test_generated_events_page_through_completely(emulator, org):
    events = slack_events(org, T0, T0 + 3600, 2000, seed=3)
    emulator.slack.add(events)
    ids = all_ids(slack(emulator).iter_logs(oldest=T0, latest=T0 + 3600, limit=250))
    assert Counter(ids) == Counter(e["id"] for e in events)


# ------------------------------------------------------------------ Asana semantics


def asana_event(i: int, ms: int) -> dict:
    return {
        "gid": f"{1000 + i}",
        "created_at": iso_ms(ms),
        "event_type": "task_deleted" if i % 2 else "user_login",
        "actor": {"actor_type": "user", "gid": f"A{i % 3}"},
        "resource": {"gid": f"R{i % 4}"},
    }


def test_asana_bounds_order_and_stream_semantics(emulator):
    base = T0 * 1000
    emulator.asana.add([asana_event(i, base + i * 1000) for i in range(10)])
    c = asana(emulator)
    page = c.get_audit_log_events(
        emulator.asana.workspace_gid, start_at=iso_ms(base + 2000), end_at=iso_ms(base + 7000), limit=100
    )
    assert [e["gid"] for e in page.data] == [str(1000 + i) for i in range(2, 7)]  # start inclusive, end exclusive
    caught_up = c.get_audit_log_events(
        emulator.asana.workspace_gid,
        start_at=iso_ms(base + 2000),
        end_at=iso_ms(base + 7000),
        limit=100,
        offset=page.next_offset,
    )
    assert caught_up.data == [] and caught_up.next_offset is not None  # a stream: next_page keeps coming
    nothing = c.get_audit_log_events(emulator.asana.workspace_gid, start_at=iso_ms(base + 99_000))
    assert nothing.data == [] and nothing.next_offset is None


def test_asana_offset_sees_new_events_later(emulator):
    base = T0 * 1000
    emulator.asana.add([asana_event(i, base + i) for i in range(5)])
    c = asana(emulator)
    first = c.get_audit_log_events(emulator.asana.workspace_gid, limit=100)
    emulator.asana.add([asana_event(50, base + 10), asana_event(51, base + 10)])
    later = c.get_audit_log_events(emulator.asana.workspace_gid, limit=100, offset=first.next_offset)
    assert [e["gid"] for e in later.data] == ["1050", "1051"]


def test_asana_filters_and_same_millisecond_paging(emulator):
    base = T0 * 1000
    emulator.asana.add([asana_event(i, base) for i in range(7)])  # all in one millisecond
    c = asana(emulator)
    pages = list(c.iter_audit_log_events(emulator.asana.workspace_gid, limit=3))
    assert [len(p.data) for p in pages] == [3, 3, 1]
    assert len({e["gid"] for p in pages for e in p.data}) == 7
    assert {
        e["event_type"] for e in c.get_audit_log_events(emulator.asana.workspace_gid, event_type="task_deleted").data
    } == {"task_deleted"}
    assert {e["actor"]["gid"] for e in c.get_audit_log_events(emulator.asana.workspace_gid, actor_gid="A1").data} == {
        "A1"
    }
    assert {
        e["resource"]["gid"] for e in c.get_audit_log_events(emulator.asana.workspace_gid, resource_gid="R2").data
    } == {"R2"}


def test_asana_token_and_workspace_errors(emulator):
    with pytest.raises(AsanaApiError) as info:
        AsanaAuditLogClient(token="bad", base_url=emulator.asana.base_url).get_audit_log_events(
            emulator.asana.workspace_gid
        )
    assert info.value.status_code == 401 and info.value.messages == ["Not Authorized"]
    with pytest.raises(AsanaApiError) as info:
        asana(emulator).get_audit_log_events("999")
    assert info.value.status_code == 404


def test_asana_generated_events_page_through(emulator, org):
    start = datetime(2026, 10, 1, tzinfo=UTC)
    events = asana_events(org, int(start.timestamp() * 1000), int(start.timestamp() * 1000) + 3_600_000, 450, seed=5)
    emulator.asana.add(events)
    got = [
        e["gid"] for p in asana(emulator).iter_audit_log_events(emulator.asana.workspace_gid, limit=100) for e in p.data
    ]
    assert Counter(got) == Counter(e["gid"] for e in events)


# ------------------------------------------------------------------ faults, over real sockets


@pytest.mark.parametrize("fault", ["reset", "truncated", "server_error", "html", "rate_limit"])
def test_each_transient_fault_is_retried_by_the_builtin_handlers(fault):
    with Emulator(faults=FaultPlan(retry_after="0")) as emu:
        emu.slack.add([entry(i, T0 + i) for i in range(5)])
        emu.faults.script("slack", fault, fault)
        page = slack(emu, retry_handlers=fast_retries()).logs(oldest=T0)
        assert len(page.body["entries"]) == 5
        assert emu.faults.injected[fault] == 2


def test_reset_surfaces_as_errno_104_and_truncation_as_its_own_error():
    with Emulator() as emu:
        emu.faults.script("slack", "reset", "truncated")
        with pytest.raises(ConnectionResetError) as reset:
            slack(emu, retry_handlers=[]).logs()
        assert reset.value.errno == 104
        with pytest.raises(TruncatedBodyError) as truncated:
            slack(emu, retry_handlers=[]).logs()
        assert truncated.value.errno == 104  # cut short by a reset: handlers matching errno 104 still see it


def test_a_slow_answer_is_a_read_timeout_and_is_retried():
    with Emulator(faults=FaultPlan(slow_seconds=0.6)) as emu:
        emu.slack.add([entry(1, T0)])
        emu.faults.script("slack", "slow")
        with pytest.raises(ReadTimeoutError):
            slack(emu, timeout=0.2, retry_handlers=[]).logs(oldest=T0)
        emu.faults.script("slack", "slow")
        assert len(slack(emu, timeout=0.2, retry_handlers=fast_retries()).logs(oldest=T0).body["entries"]) == 1


def test_html_error_page_after_retries_is_a_clear_error():
    with Emulator() as emu:
        emu.faults.script("slack", *["html"] * 4)
        with pytest.raises(AuditLogsBodyError, match="text/html"):
            slack(emu, retry_handlers=fast_retries(3)).logs()


def test_invalid_cursor_and_expired_offset_faults_only_hit_requests_with_a_position():
    with Emulator() as emu:
        emu.slack.add([entry(i, T0 + i) for i in range(10)])
        emu.faults.script("slack", "invalid_cursor", "invalid_cursor")
        c = slack(emu)
        first = c.logs(oldest=T0, limit=3)  # no cursor: the fault does not apply
        assert len(first.body["entries"]) == 3
        with pytest.raises(AuditLogsApiError) as info:
            c.logs(oldest=T0, limit=3, cursor=first.next_cursor)
        assert info.value.error == "invalid_cursor"
        emu.asana.add([asana_event(i, T0 * 1000 + i) for i in range(3)])
        emu.faults.script("asana", "expired_offset")
        a = asana(emu)
        page = a.get_audit_log_events(emu.asana.workspace_gid, limit=1)
        with pytest.raises(AsanaApiError, match="expired"):
            a.get_audit_log_events(emu.asana.workspace_gid, limit=1, offset=page.next_offset)


def test_cursor_and_offset_expire_after_their_ttl():
    now = [float(T0 + 1000)]
    with Emulator(clock=lambda: now[0], slack={"cursor_ttl": 60}, asana={"offset_ttl": 60}) as emu:
        emu.slack.add([entry(i, T0 + i) for i in range(10)])
        emu.asana.add([asana_event(i, T0 * 1000 + i) for i in range(3)])
        cursor = slack(emu).logs(oldest=T0, limit=3).next_cursor
        offset = asana(emu).get_audit_log_events(emu.asana.workspace_gid, limit=1).next_offset
        now[0] += 61
        with pytest.raises(AuditLogsApiError, match="invalid_cursor"):
            slack(emu).logs(oldest=T0, limit=3, cursor=cursor)
        with pytest.raises(AsanaApiError, match="expired"):
            asana(emu).get_audit_log_events(emu.asana.workspace_gid, limit=1, offset=offset)


def test_rate_limiter_answers_429_with_retry_after():
    with Emulator(slack={"calls_per_minute": 60}, rate_limit_burst=2) as emu:
        c = slack(emu, retry_handlers=[])
        c.logs()
        c.logs()
        with pytest.raises(AuditLogsApiError) as info:
            c.logs()
        assert info.value.error == "rate_limited"
        assert int(info.value.response.headers["retry-after"]) >= 1


def test_rate_limited_client_waits_and_gets_through():
    with Emulator(asana={"calls_per_minute": 600}, rate_limit_burst=1) as emu:
        c = asana(emu, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5)])
        started = time.monotonic()
        for _ in range(3):
            c.get_audit_log_events(emu.asana.workspace_gid)
        assert c.stats["rate_limited"] >= 1 and time.monotonic() - started >= 1.0


def test_seeded_random_faults_are_reproducible():
    def draws(seed):
        plan = FaultPlan(seed, {"server_error": 0.2, "reset": 0.2})
        return [plan.draw("slack", has_position=False, position="invalid_cursor") for _ in range(50)]

    assert draws(3) == draws(3) and draws(3) != draws(4)
    assert {"server_error", "reset", None} == set(draws(3))


def test_emulator_refuses_non_loopback_hosts():
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="0.0.0.0")


def test_the_emulator_runs_from_the_command_line():
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audit_collector.emulator",
            "--port",
            str(port),
            "--days",
            "1",
            "--events",
            "slack=300",
            "--events",
            "asana=200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("slack: http://127.0.0.1:") and "token xoxp-emulator" in first
        asana_line = proc.stdout.readline()
        assert "workspace_gid 1200000000000001" in asana_line
        client = AuditLogsClient(token="xoxp-emulator", base_url=f"http://127.0.0.1:{port}/audit/v1/")
        assert sum(len(p.body["entries"]) for p in client.iter_logs(limit=1000)) == 300
        asana_client = AsanaAuditLogClient(token="asana-emulator-token", base_url=f"http://127.0.0.1:{port}/api/1.0/")
        assert sum(len(p.data) for p in asana_client.iter_audit_log_events("1200000000000001", limit=100)) == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_path_no_api_serves_is_a_plain_404_that_no_api_counts():
    """Only the API's own routes reach it: a client that builds a wrong path (a doubled slash, a
    trailing one) fails here as it would against the real API, and the API's call count is not
    inflated by it."""
    with Emulator() as emu:
        emu.asana.add(asana_events(make_org(users=5), T0 * 1000, (T0 + 60) * 1000, 3))
        headers = {"Authorization": f"Bearer {emu.asana.token}"}
        gid = emu.asana.workspace_gid
        wrong = [
            f"{emu.base_url}/api/1.0/users/me",
            f"{emu.base_url}/api/1.0//workspaces/{gid}/audit_log_events",
            f"{emu.base_url}/api/1.0/workspaces/{gid}/audit_log_events/",
            f"{emu.base_url}/nowhere",
        ]
        for url in wrong:
            answer = requests.get(url, headers=headers, timeout=5)
            assert answer.status_code == 404 and answer.json() == {"errors": [{"message": "Not found"}]}, url
        right = requests.get(f"{emu.asana.base_url}workspaces/{gid}/audit_log_events", headers=headers, timeout=5)
        assert right.status_code == 200 and len(right.json()["data"]) == 3
    assert emu.stats[("none", 404)] == len(wrong) and emu.calls("asana") == 1 == emu.calls()


def test_the_api_answers_as_of_when_it_answers_after_a_slow_fault():
    """An event that reaches the API while a slow answer is on its way is in that answer, as a real
    API reads its log when it answers, not when the request arrived."""
    with Emulator(faults=FaultPlan(slow_seconds=0.6)) as emu:
        now = time.time()
        emu.slack.add([{"id": "late", "date_create": int(now) - 5, "action": "user_login"}], visible_at=now + 0.3)
        emu.faults.script("slack", "slow")
        client = AuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url)
        assert [e["id"] for e in client.logs(oldest=int(now) - 60).body["entries"]] == ["late"]


def test_a_fault_plan_refuses_what_no_api_it_serves_would_get():
    plan = FaultPlan(rates={"invalid_curser": 0.1})  # a typo: refused when the plan meets its APIs
    with pytest.raises(ValueError, match="unknown faults: \\['invalid_curser'\\]"):
        Emulator(faults=plan)
    with Emulator() as emu:
        with pytest.raises(ValueError, match="no API named 'Slack'"):
            emu.faults.script("Slack", "html")
        with pytest.raises(ValueError, match="unknown fault 'invalid_cursor' for asana"):
            emu.faults.script("asana", "invalid_cursor")  # Slack's position fault, not Asana's
        emu.faults.script("asana", "expired_offset", "html")


def test_apis_that_would_take_each_others_requests_are_refused():
    from audit_collector.emulator.asana import AsanaApi
    from audit_collector.emulator.slack import SlackApi

    class Greedy(AsanaApi):
        name, prefix, position_fault = "greedy", "/api/", "greedy_offset"

    class Rootless(AsanaApi):
        name, prefix, position_fault = "rootless", "api/2.0", "rootless_offset"

    with pytest.raises(ValueError, match="would take the requests of \\['asana'\\]"):
        Emulator(apis=[AsanaApi(), Greedy()])
    with pytest.raises(ValueError, match="starts and ends with '/'"):
        Emulator(apis=[Rootless()])
    with pytest.raises(ValueError, match="share a name"):
        Emulator(apis=[SlackApi(), SlackApi()])
    with pytest.raises(TypeError, match="pass them to yours"):
        Emulator(apis=[SlackApi()], rate_limit_burst=5)
    with Emulator(apis=[SlackApi(calls_per_minute=60, rate_limit_burst=5)]) as emu:
        assert set(emu.apis) == {"slack"} and emu.slack.limiter.capacity == 5

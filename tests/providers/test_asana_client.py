"""The Asana client: validation before any request, parameters, stream paging, errors."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
import responses
from responses import matchers

from audit_collector.asana import AsanaApiError, AsanaAuditLogClient, AsanaBodyError
from audit_collector.errors import ConfigError
from audit_collector.http_retry import RateLimitErrorRetryHandler

BASE = "https://asana.test/api/1.0/"
URL = BASE + "workspaces/12345/audit_log_events"
TOKEN = "2/1200000000/secret-asana-token"
EVENT = {
    "gid": "1",
    "created_at": "2026-11-01T00:00:00.000Z",
    "event_type": "user_login_succeeded",
    "actor": {"actor_type": "user", "gid": "9"},
    "new_field": [1],
}


def client(**kwargs) -> AsanaAuditLogClient:
    return AsanaAuditLogClient(token=TOKEN, base_url=BASE, **kwargs)


def page(data, offset="o1"):
    return {
        "data": data,
        "next_page": {"offset": offset, "path": "/x", "uri": "https://x"} if offset else None,
    }


@responses.activate
def test_every_parameter_is_sent_in_asana_format():
    responses.get(
        URL,
        match=[
            matchers.query_param_matcher(
                {
                    "start_at": "2026-11-01T00:00:00.000Z",
                    "end_at": "2026-11-02T01:00:00.250Z",
                    "event_type": "task_deleted",
                    "actor_gid": "9",
                    "resource_gid": "77",
                    "limit": "100",
                    "offset": "tok",
                }
            )
        ],
        json=page([EVENT]),
    )
    result = client().get_audit_log_events(
        "12345",
        start_at=datetime(2026, 11, 1, tzinfo=UTC),
        end_at=datetime(2026, 11, 2, 2, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1))),
        event_type="task_deleted",
        actor_gid="9",
        resource_gid="77",
        limit=100,
        offset="tok",
    )
    assert result.data == [EVENT] and result.next_offset == "o1"


@responses.activate
def test_actor_type_and_iso_strings():
    responses.get(URL, json=page([]))
    client().get_audit_log_events("12345", start_at="2026-11-01T10:00:00+00:00", actor_type="asana_support")
    sent = responses.calls[0].request.params
    assert sent == {"start_at": "2026-11-01T10:00:00.000Z", "actor_type": "asana_support"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": True}, "limit"),
        ({"start_at": "yesterday"}, "ISO 8601"),
        ({"start_at": datetime(2026, 1, 1)}, "time zone"),
        ({"end_at": 5}, "datetime"),
        ({"start_at": "2026-01-02T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"}, "before end_at"),
        ({"actor_type": "user", "actor_gid": "9"}, "not both"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"offset": ""}, "offset"),
    ],
)
@responses.activate
def test_bad_input_fails_before_any_request(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        client().get_audit_log_events("12345", **kwargs)
    assert len(responses.calls) == 0


@pytest.mark.parametrize("gid", ["", "   ", None])
def test_workspace_gid_is_required(gid):
    with pytest.raises(ConfigError, match="workspace_gid"):
        client().get_audit_log_events(gid)


@responses.activate
def test_iteration_stops_on_an_empty_page_even_with_a_next_page():
    responses.get(URL, json=page([EVENT, EVENT], "o1"))
    responses.get(URL, match=[matchers.query_param_matcher({"limit": "2", "offset": "o1"})], json=page([EVENT], "o2"))
    responses.get(URL, match=[matchers.query_param_matcher({"limit": "2", "offset": "o2"})], json=page([], "o2"))
    pages = list(client().iter_audit_log_events("12345", limit=2))
    assert [len(p.data) for p in pages] == [2, 1]
    assert len(responses.calls) == 3


@responses.activate
def test_iteration_stops_on_null_next_page():
    responses.get(URL, json=page([EVENT], None))
    assert len(list(client().iter_audit_log_events("12345"))) == 1


@pytest.mark.parametrize(
    "status,hint",
    [
        (400, "parameter"),
        (401, "service account token"),
        (402, "Enterprise+"),
        (403, "cannot read"),
        (404, "workspace gid"),
        (500, "trouble"),
    ],
)
@responses.activate
def test_errors_carry_the_api_messages_and_a_hint(status, hint):
    responses.get(URL, status=status, json={"errors": [{"message": "Not Authorized", "help": "see docs"}]})
    with pytest.raises(AsanaApiError) as info:
        client(retry_handlers=[]).get_audit_log_events("12345")
    assert info.value.status_code == status and info.value.messages == ["Not Authorized"]
    assert "Not Authorized" in str(info.value) and hint in str(info.value)
    assert TOKEN not in str(info.value)


@responses.activate
def test_429_is_retried_with_the_rate_limit_handler(clock):
    responses.get(URL, status=429, headers={"Retry-After": "30"}, json={"errors": [{"message": "slow down"}]})
    responses.get(URL, json=page([EVENT]))
    c = client(clock=clock, retry_handlers=[RateLimitErrorRetryHandler()])
    assert c.get_audit_log_events("12345").data == [EVENT]
    assert 30 <= clock.sleeps[0] < 31


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"data": [', b"\xff\xff"])
@responses.activate
def test_non_json_bodies_raise(body):
    responses.get(URL, body=body, content_type="text/html")
    with pytest.raises(AsanaBodyError, match="not a JSON object"):
        client().get_audit_log_events("12345")


@pytest.mark.parametrize("payload", [{"next_page": None}, {"data": {"gid": 1}}, {"data": ["x"]}])
@responses.activate
def test_missing_data_list_is_an_error(payload):
    responses.get(URL, json=payload)
    with pytest.raises(AsanaBodyError, match="data"):
        client().get_audit_log_events("12345")


@responses.activate
def test_token_is_redacted_in_debug_logs(caplog):
    responses.get(URL, json=page([EVENT]))
    with caplog.at_level(logging.DEBUG):
        client(logger=logging.getLogger("test.asana")).get_audit_log_events("12345")
    assert "[redacted]" in caplog.text and TOKEN not in caplog.text

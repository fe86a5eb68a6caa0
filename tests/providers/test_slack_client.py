"""The Slack client against recorded shapes (``responses``): parameters, paging, errors, models."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
import responses
from responses import matchers

from audit_collector.errors import ConfigError
from audit_collector.slack import (
    Actor,
    AuditLogsApiError,
    AuditLogsBodyError,
    AuditLogsClient,
    Entry,
    LogsResponse,
)

BASE = "https://slack.test/audit/v1/"
TOKEN = "fake-slack-secret-value"

# Our own fixture, shaped like Slack's documented samples, drift included.
ENTRY = {
    "id": "0123a45b-6c7d-8900-e12f-3456789ab0c1",
    "date_create": 1650415188,
    "action": "public_channel_created",
    "brand_new_top_level": {"x": 1},
    "actor": {
        "type": "user",
        "user": {"id": "W1", "name": "Bird", "email": "b@example.com", "team": "T1"},
        "extra_actor_field": True,
    },
    "entity": {"type": "canvas", "canvas": {"id": "F9", "title": "A canvas"}},
    "context": {
        "location": {"type": "workspace", "id": "T1", "name": "birdland", "domain": "birdland", "new": 1},
        "ua": "Mozilla/5.0",
        "ip_address": "192.0.2.1",
        "session_id": 1656410836837,
        "app": {"id": "A1", "name": "Spinner", "scopes": [], "scopes_bot": ["chat:write"]},
    },
    "details": {"succeeded_users": '["W111", "W222"]', "exporting_team_id": 1134128598372},
}


def client(**kwargs) -> AuditLogsClient:
    return AuditLogsClient(token=TOKEN, base_url=BASE, **kwargs)


@responses.activate
def test_logs_sends_every_filter():
    responses.get(
        BASE + "logs",
        match=[
            matchers.query_param_matcher(
                {
                    "oldest": "1700000000",
                    "latest": "1700003599",
                    "limit": "9999",
                    "action": "user_login,file_downloaded",
                    "actor": "W123",
                    "entity": "C456",
                    "cursor": "abc",
                    "extra": "1",
                }
            ),
            matchers.header_matcher({"Authorization": f"Bearer {TOKEN}", "X-Custom": "yes"}),
        ],
        json={"entries": []},
    )
    response = client().logs(
        oldest=1700000000,
        latest=1700003599,
        limit=9999,
        action=["user_login", "file_downloaded"],
        actor="W123",
        entity="C456",
        cursor="abc",
        additional_query_params={"extra": 1},
        headers={"X-Custom": "yes"},
    )
    assert response.status_code == 200 and response.body == {"entries": []}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10000}, "limit"),
        ({"oldest": -1}, "oldest"),
        ({"latest": "soon"}, "latest"),
        ({"oldest": 10, "latest": 5}, "after latest"),
        ({"action": [f"a{i}" for i in range(31)]}, "action"),
        ({"cursor": ""}, "cursor"),
        ({"actor": 5}, "actor"),
    ],
)
@responses.activate
def test_bad_arguments_fail_before_any_request(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        client().logs(**kwargs)
    assert len(responses.calls) == 0


@responses.activate
def test_iter_logs_follows_cursors_with_the_same_filters():
    responses.get(
        BASE + "logs",
        match=[matchers.query_param_matcher({"oldest": "1", "latest": "9", "limit": "2"})],
        json={"entries": [ENTRY, ENTRY], "response_metadata": {"next_cursor": "c1"}},
    )
    responses.get(
        BASE + "logs",
        match=[matchers.query_param_matcher({"oldest": "1", "latest": "9", "limit": "2", "cursor": "c1"})],
        json={"entries": [ENTRY], "response_metadata": {"next_cursor": ""}},
    )
    pages = list(client().iter_logs(oldest=1, latest=9, limit=2))
    assert [len(p.body["entries"]) for p in pages] == [2, 1]


@responses.activate
def test_iter_logs_ends_without_response_metadata():
    responses.get(BASE + "logs", json={"entries": [ENTRY]})
    assert len(list(client().iter_logs())) == 1


@responses.activate
def test_typed_body_keeps_unknown_fields_and_round_trips():
    responses.get(BASE + "logs", json={"ok": True, "entries": [ENTRY], "response_metadata": {"next_cursor": ""}})
    typed = client().logs().typed_body
    assert isinstance(typed, LogsResponse)
    entry = typed.entries[0]
    assert isinstance(entry, Entry) and isinstance(entry.actor, Actor)
    assert entry.actor.user.name == "Bird"
    assert entry.unknown_fields == {"brand_new_top_level": {"x": 1}}
    assert entry.actor.unknown_fields == {"extra_actor_field": True}
    assert entry.context.location.unknown_fields == {"new": 1}
    assert entry.context.session_id == 1656410836837
    assert entry.entity.target == {"id": "F9", "title": "A canvas"}  # an entity type we never heard of
    assert entry.details.succeeded_users == ["W111", "W222"]  # decoded; to_dict gives back the string
    assert entry.to_dict() == ENTRY


@responses.activate
def test_schemas_and_actions_need_no_token():
    responses.get(BASE + "schemas", json={"schemas": [{"type": "user", "user": {"id": "string"}}]})
    responses.get(BASE + "actions", json={"actions": {"user": ["user_login"]}})
    anonymous = AuditLogsClient(base_url=BASE)
    assert anonymous.schemas().typed_body.schemas[0]["type"] == "user"
    assert anonymous.actions().typed_body.actions == {"user": ["user_login"]}
    assert all("Authorization" not in call.request.headers for call in responses.calls)


@pytest.mark.parametrize(
    "code,status,hint",
    [
        ("invalid_authentication", 401, "auditlogs:read"),
        ("missing_authentication", 401, "no token was sent"),
        ("feature_not_enabled", 403, "Enterprise Grid"),
        ("invalid_cursor", 400, "restart paging"),
        ("rate_limited", 429, "50 calls a minute"),
        ("some_new_error", 200, None),
    ],
)
@responses.activate
def test_slack_errors_name_the_code_and_say_what_to_do(code, status, hint):
    responses.get(BASE + "logs", status=status, json={"ok": False, "error": code})
    with pytest.raises(AuditLogsApiError) as info:
        client(retry_handlers=[]).logs()
    assert info.value.error == code
    assert code in str(info.value)
    assert info.value.response.status_code == status
    if hint:
        assert hint in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (b'{"ok": true, "entries": [{"id": "a"', "application/json"),
        (b"\xff\xfe not utf-8", "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
@responses.activate
def test_non_json_bodies_raise_a_clear_error(body, content_type):
    responses.get(BASE + "logs", status=200, body=body, content_type=content_type)
    with pytest.raises(AuditLogsBodyError, match="not a JSON object"):
        client().logs()


@pytest.mark.parametrize("payload", [{"ok": True}, {"entries": "nope"}, {"entries": [1, 2]}])
@responses.activate
def test_logs_without_an_entries_list_is_an_error(payload):
    responses.get(BASE + "logs", json=payload)
    with pytest.raises(AuditLogsBodyError, match="entries"):
        client().logs()


@responses.activate
def test_user_agent_has_prefix_and_suffix_and_default_headers():
    responses.get(BASE + "logs", json={"entries": []})
    client(user_agent_prefix="acme-sec/1.0", user_agent_suffix="(+ops)", default_headers={"X-Team": "sec"}).logs()
    sent = responses.calls[0].request.headers
    assert sent["User-Agent"].startswith("acme-sec/1.0 audit-collector/") and sent["User-Agent"].endswith("(+ops)")
    assert sent["X-Team"] == "sec"


@responses.activate
def test_api_call_reaches_any_path():
    responses.get(BASE + "future/endpoint", match=[matchers.query_param_matcher({"a": "1"})], json={"ok": True})
    assert client().api_call(path="/future/endpoint", query_params={"a": 1, "skip": None}).body == {"ok": True}


@responses.activate
def test_explicit_proxy_is_used():
    responses.get(BASE + "logs", json={"entries": []})
    client(proxy="http://127.0.0.1:3128").logs()
    assert responses.calls[0].request.req_kwargs["proxies"] == {
        "http": "http://127.0.0.1:3128",
        "https": "http://127.0.0.1:3128",
    }


@responses.activate
def test_one_session_is_reused_for_every_page():
    responses.get(BASE + "logs", json={"entries": [ENTRY], "response_metadata": {"next_cursor": "c"}})
    responses.get(BASE + "logs", json={"entries": [ENTRY]})
    c = client()
    session = c.session
    list(c.iter_logs())
    assert c.session is session and len(responses.calls) == 2


@responses.activate
def test_token_never_appears_in_debug_logs_or_repr(caplog):
    responses.get(BASE + "logs", status=401, json={"ok": False, "error": "invalid_authentication"})
    logger = logging.getLogger("test.slack")
    with caplog.at_level(logging.DEBUG):
        c = client(logger=logger)
        with pytest.raises(AuditLogsApiError) as info:
            c.logs(oldest=1)
    text = caplog.text + repr(c) + str(info.value) + json.dumps(info.value.response.body)
    assert "Sending GET" in caplog.text and "[redacted]" in caplog.text
    assert TOKEN not in text and "secret-value" not in text


def test_proxies_come_from_the_environment_when_none_is_given(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert client().session.proxies["https"] == "http://127.0.0.1:3128"
    monkeypatch.setenv("NO_PROXY", "slack.test")
    assert "https" not in client().session.proxies  # NO_PROXY names the API host


@responses.activate
def test_pages_are_asked_for_compressed_and_read_back_byte_for_byte():
    served = json.dumps(ENTRY, separators=(",", ":")).replace("/", "\\/").encode()
    body = b'{"ok":true,"entries":[' + served + b"]}"
    responses.get(
        BASE + "logs",
        body=gzip.compress(body),
        headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )
    page = client().logs()
    assert "gzip" in responses.calls[0].request.headers["Accept-Encoding"]
    assert [bytes(line) for line in page.events.lines] == [served]  # escaped slashes and all
    assert page.events.keys[0].date_create == ENTRY["date_create"] and page.body["entries"] == [ENTRY]

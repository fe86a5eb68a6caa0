"""An entry's ``details`` as typed attributes: every field Slack documents, through both clients
(served by the emulator over loopback), Slack's documented example, and a property: any JSON object
parses, and ``to_dict`` gives it back unchanged."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_collector.slack import (
    AsyncAuditLogsClient,
    AuditLogsClient,
    ConversationPref,
    Details,
    Entry,
    FeatureEnablement,
    LogsResponse,
    Permission,
    PermissionGrant,
    PermissionResource,
    PermissionWildcard,
    Profile,
    RetentionPolicy,
    SharedWith,
    User,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
# Our fixture: one entry whose details hold every field Slack documents, each with its own value.
EVERY_DETAIL = json.loads((FIXTURES / "slack_logs_every_detail.json").read_text())
# Slack's documented example of a /logs answer (the one slack_sdk's tests use too).
DOCUMENTED = json.loads((FIXTURES / "slack_logs_documented_example.json").read_text())

OBJECT_FIELDS = {
    "inviter": User,
    "kicker": User,
    "previous_profile": Profile,
    "new_profile": Profile,
    "shared_with": SharedWith,
    "old_retention_policy": RetentionPolicy,
    "new_retention_policy": RetentionPolicy,
    "who_can_post": ConversationPref,
    "can_thread": ConversationPref,
    "enable_at_here": FeatureEnablement,
    "enable_at_channel": FeatureEnablement,
    "can_huddle": FeatureEnablement,
}


def field_names(model: type) -> set[str]:
    return {f.name for f in dataclasses.fields(model)} - {"unknown_fields"}


def sync_page(emu, body: dict) -> LogsResponse:
    emu.slack.add(body["entries"])
    return AuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url).logs().typed_body


def async_page(emu, body: dict) -> LogsResponse:
    emu.slack.add(body["entries"])

    async def main() -> LogsResponse:
        async with AsyncAuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url) as client:
            return (await client.logs()).typed_body

    return asyncio.run(main())


def assert_every_detail_typed(details: Details, sent: dict) -> None:
    assert details.unknown_fields == {}  # nothing documented is left untyped
    for name, model in OBJECT_FIELDS.items():
        value = getattr(details, name)
        assert isinstance(value, model), name
        assert value.to_dict() == sent[name] and value.unknown_fields == {}, name
    assert details.inviter.id == "W0INVITER" and details.kicker.email == "kicker@example.com"
    assert details.old_retention_policy.duration_days == 111 and details.new_retention_policy.type == "new"
    assert details.who_can_post.type == ["owner", "admin"] and details.can_thread.user == ["W0THREADER"]
    assert details.enable_at_channel.enabled is False and details.new_profile.image_512 == "new-image_512"
    first = details.permissions[0]
    assert isinstance(first, Permission) and isinstance(first.resource, PermissionResource)
    assert isinstance(first.resource.grant, PermissionGrant)
    assert isinstance(first.resource.grant.wildcard, PermissionWildcard)
    assert first.resource.grant.resource_id == "C0GRANT" and first.scopes == ["channels:read", "chat:write"]
    assert details.succeeded_users == ["W0OK1", "W0OK2"]  # sent as a JSON string
    assert details.failed_users == ["W0FAIL1", "W0FAIL2"]
    scalar = set(sent) - set(OBJECT_FIELDS) - {"permissions", "succeeded_users", "failed_users"}
    for name in scalar:
        assert getattr(details, name) == sent[name], name
    assert details.is_token_rotation_enabled_app is sent["is_token_rotation_enabled_app"]
    assert details.exporting_team_id == 1134128598372
    assert details.channels == ["channels-1", "channels-2"]
    assert details.to_dict() == sent  # the strings Slack sent come back as strings


def test_the_fixture_holds_every_documented_field_and_nothing_else():
    assert set(EVERY_DETAIL["entries"][0]["details"]) == field_names(Details)
    assert len(field_names(Details)) == 95


def test_every_documented_detail_is_typed_through_the_sync_client(emulator):
    page = sync_page(emulator, EVERY_DETAIL)
    sent = EVERY_DETAIL["entries"][0]
    assert_every_detail_typed(page.entries[0].details, sent["details"])
    assert page.entries[0].to_dict() == sent


def test_every_documented_detail_is_typed_through_the_async_client(emulator):
    page = async_page(emulator, EVERY_DETAIL)
    sent = EVERY_DETAIL["entries"][0]
    assert_every_detail_typed(page.entries[0].details, sent["details"])
    assert page.entries[0].to_dict() == sent


def test_slacks_documented_example_reads_as_slack_sdk_users_read_it(emulator):
    page = sync_page(emulator, DOCUMENTED)
    details = page.entries[0].details
    assert details.inviter.id == "inviter_id" and details.kicker.id == "kicker_id"
    assert details.old_retention_policy.duration_days == 111
    assert details.who_can_post.user == ["W111"] and details.can_thread.type == ["admin", "org_admin"]
    assert details.is_token_rotation_enabled_app is True and details.is_external_limited is True
    assert details.succeeded_users == ["W111", "W222"] and details.failed_users == ["W333", "W444"]
    assert details.permissions[0].resource.grant.wildcard.type == ""
    assert details.exporting_team_id == 1134128598372
    assert details.unknown_fields == {}
    assert LogsResponse.from_dict(DOCUMENTED).to_dict() == DOCUMENTED


def test_succeeded_users_as_slack_also_sends_them_a_list_or_a_string_that_is_no_list():
    assert Details.from_dict({"succeeded_users": ["W1"]}).succeeded_users == ["W1"]
    for kept in ("not json", '{"W1": true}', "", "[NaN]"):
        details = Details.from_dict({"failed_users": kept})
        assert details.failed_users == kept and details.to_dict() == {"failed_users": kept}


def test_a_changed_list_is_what_to_dict_gives_back():
    details = Details.from_dict({"succeeded_users": '["W1"]'})
    details.succeeded_users.append("W2")
    assert details.to_dict() == {"succeeded_users": ["W1", "W2"]}
    details.succeeded_users = ["W1"]  # equal to what was sent again: the text as sent
    assert details.to_dict() == {"succeeded_users": '["W1"]'}


def test_a_detail_slack_adds_later_is_kept_and_given_back():
    sent = {"inviter": {"id": "W1", "new_user_field": [1, {"a": None}]}, "brand_new": {"nested": True}}
    details = Details.from_dict(copy.deepcopy(sent))
    assert details.unknown_fields == {"brand_new": {"nested": True}}
    assert details.inviter.unknown_fields == {"new_user_field": [1, {"a": None}]}
    assert details.to_dict() == sent


# ------------------------------------------------------------------ any JSON object round-trips

_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Keys Details knows (values of any shape, and JSON strings for the two decoded fields) mixed with others.
_DETAIL_KEYS = st.sampled_from([*sorted(field_names(Details)), "unknown_fields", "_present", "_sent", "brand_new"])
_ENCODED_LISTS = st.lists(st.text(max_size=6) | st.integers(), max_size=3).map(json.dumps)
_DETAILS = st.dictionaries(_DETAIL_KEYS | st.text(max_size=8), _JSON | _ENCODED_LISTS, max_size=8)
_ENTRIES = st.fixed_dictionaries(
    {},
    optional={
        "id": _JSON,
        "actor": st.dictionaries(st.sampled_from(["type", "user", "x"]), _JSON),
        "entity": st.dictionaries(st.sampled_from(["type", "user", "channel", "canvas"]), _JSON),
        "context": st.dictionaries(st.sampled_from(["location", "app", "session_id", "x"]), _JSON),
        "details": _DETAILS | _JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(_DETAILS)
def test_any_json_object_parses_as_details_and_to_dict_gives_it_back(data):
    sent = copy.deepcopy(data)
    details = Details.from_dict(data)
    assert isinstance(details, Details)
    assert details.to_dict() == sent
    assert json.dumps(details.to_dict()) == json.dumps(sent)  # key for key, in the order they came
    assert data == sent  # parsing never altered what it was given


@settings(max_examples=200, deadline=None)
@given(st.lists(_ENTRIES, max_size=3), st.dictionaries(st.text(max_size=8), _JSON, max_size=3))
def test_any_logs_body_round_trips(entries, extra):
    body = {**extra, "entries": entries}
    sent = copy.deepcopy(body)
    typed = LogsResponse.from_dict(body)
    assert all(isinstance(e, Entry) for e in typed.entries)
    assert json.dumps(typed.to_dict()) == json.dumps(sent)

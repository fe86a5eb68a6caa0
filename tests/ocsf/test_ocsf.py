"""The OCSF mapping: every Slack action and Asana event type has a class (or a stated reason), and every
mapped event of the emulator org and of the vendors' samples is a valid OCSF 1.1.0 event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_collector import ocsf, providers
from audit_collector.emulator import make_org
from audit_collector.emulator.asana import ASANA_EVENTS, asana_events
from audit_collector.emulator.slack import SLACK_ACTIONS, SlackApi, slack_events
from audit_collector.ocsf import validate
from audit_collector.ocsf.classes import CLASSES, SEVERITIES, STATUSES, VERSION
from audit_collector.ocsf.mapping import MappingError, OcsfMapping

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ocsf"
SLACK = providers.get("slack")
ASANA = providers.get("asana")


def slack_actions() -> set[str]:
    """Slack's ``GET actions`` (the vendor's list, and the emulator's) and every action the emulator sends."""
    served = SlackApi().document("actions")  # what the emulator answers to GET actions
    listed = [json.loads(text)["actions"] for text in ((FIXTURES / "slack_actions.json").read_bytes(), served)]
    return {a for actions in listed for names in actions.values() for a in names} | {
        a for names in SLACK_ACTIONS.values() for a in names
    }


def asana_event_types() -> set[str]:
    samples = json.loads((FIXTURES / "asana_samples.json").read_text())["data"]
    return {t for t, _, _ in ASANA_EVENTS} | {e["event_type"] for e in samples}


def mapped(descriptor, events):
    m = ocsf.mapping(descriptor)
    out = []
    for event in events:
        text = json.dumps(event)
        out.append((event, text, m.to_ocsf(json.loads(text), text)))
    return out


def test_the_class_table_is_the_schema_s():
    from ocsf_json_schema import get_ocsf_schema

    schema = get_ocsf_schema(VERSION)
    for name, c in CLASSES.items():
        spec = schema["classes"][name]
        assert (spec["uid"], spec["caption"]) == (c.uid, c.caption)
        assert (spec["category_uid"], spec["category_name"]) == (c.category_uid, c.category_name)
        activities = {int(k): v["caption"] for k, v in spec["attributes"]["activity_id"]["enum"].items()}
        assert activities == c.activities
        assert {int(k): v["caption"] for k, v in spec["attributes"]["severity_id"]["enum"].items()} == SEVERITIES
        assert {int(k): v["caption"] for k, v in spec["attributes"]["status_id"]["enum"].items()} == STATUSES
        assert ("src_endpoint" in spec["attributes"]) == c.has_src_endpoint
        assert ("http_request" in spec["attributes"]) == c.has_http_request


@pytest.mark.parametrize(("descriptor", "codes"), [(SLACK, slack_actions()), (ASANA, asana_event_types())])
def test_every_action_has_a_class_or_a_reason(descriptor, codes):
    m = ocsf.mapping(descriptor)
    assert codes - set(m.rules) - set(m.no_class) == set()
    assert len(codes) >= (190 if descriptor is SLACK else 14)
    assert all(len(reason) > 40 for reason in m.no_class.values())


@pytest.mark.parametrize("descriptor", [SLACK, ASANA])
def test_the_emulator_org_maps_to_valid_ocsf(descriptor):
    org = make_org()
    if descriptor is SLACK:
        events = slack_events(org, 1_760_000_000, 1_760_086_400, 2500, seed=7)
    else:
        events = asana_events(org, 1_760_000_000_000, 1_760_086_400_000, 2500, seed=7)
    m = ocsf.mapping(descriptor)
    classes = set()
    for event, text, out in mapped(descriptor, events):
        assert out is not None, event[m.event_code]
        assert validate.errors(out) == [], (event[m.event_code], validate.errors(out))
        classes.add(out["class_uid"])
        assert out["raw_data"] == text  # the event as archived, byte for byte
        assert out["metadata"]["uid"] == event[descriptor.id_field]
        assert out["metadata"]["event_code"] == event[m.event_code]
        assert out["time"] == int(descriptor.event_seconds(event) * 1000)
        assert out["type_uid"] == out["class_uid"] * 100 + out["activity_id"]
        assert out["actor"]["user"]["email_addr"] == event["actor"].get("email") or event["actor"]["user"]["email"]
        endpoint = out.get("src_endpoint") or out.get("device")
        assert endpoint["ip"] in {event["context"].get("ip_address"), event["context"].get("client_ip_address")}
        unmapped = out.get("unmapped", {})
        assert not {descriptor.id_field, m.event_code, m.time_path} & set(unmapped)
        assert all(isinstance(v, str) for v in unmapped.values())
    assert len(classes) >= 4


def test_fields_nobody_maps_stay_in_unmapped_and_taken_ones_do_not():
    event = dict(slack_events(make_org(users=5), 1_760_000_000, 1_760_000_100, 1, seed=3)[0])
    event["action"] = "role_change_to_admin"
    event["details"] = {"previous_role": "user", "new_role": "admin", "reason": {"ticket": 7}}
    out = ocsf.mapping(SLACK).to_ocsf(event)
    assert out["privileges"] == ["admin"]
    assert out["unmapped"]["details.previous_role"] == "user"
    assert out["unmapped"]["details.reason.ticket"] == "7"
    assert "details.new_role" not in out["unmapped"]
    assert "context.ip_address" not in out["unmapped"]
    assert out["unmapped"]["context.location.id"] == event["context"]["location"]["id"]


@pytest.mark.parametrize(("new", "activity", "privileges"), [("admin", 1, ["admin"]), ("member", 2, ["admin"])])
def test_an_asana_role_change_grants_or_revokes_by_its_new_value(new, activity, privileges):
    event = asana_events(make_org(users=5), 1_760_000_000_000, 1_760_000_001_000, 1, seed=1)[0]
    event.update(event_type="user_workspace_admin_role_changed")
    event["details"] = {"old_value": "admin" if new != "admin" else "member", "new_value": new}
    out = ocsf.mapping(ASANA).to_ocsf(event)
    assert (out["class_uid"], out["activity_id"], out["privileges"]) == (3005, activity, privileges)
    assert validate.errors(out) == []


def test_the_vendors_samples_map_to_valid_ocsf():
    slack = json.loads((FIXTURES / "slack_samples.json").read_text())["entries"]
    asana = json.loads((FIXTURES / "asana_samples.json").read_text())["data"]
    for descriptor, events in ((SLACK, slack), (ASANA, asana)):
        for _event, _, out in mapped(descriptor, events):
            assert out is not None
            assert validate.errors(out) == []
    app_entry = mapped(SLACK, slack[-1:])[0][2]  # its ip_address, "1.23.45.678", is not an address
    assert "src_endpoint" not in app_entry and app_entry["unmapped"]["context.ip_address"] == "1.23.45.678"
    assert app_entry["unmapped"]["context.app.name"] == "Channel Spinner App"
    drift = mapped(SLACK, slack[1:2])[0][2]  # session_id an integer, unknown attributes everywhere
    assert drift["actor"]["session"]["uid"] == "1656410836837"
    assert drift["unmapped"]["context.location.new_attribute"].startswith("this should be just accepted")


def test_an_action_without_a_class_or_unknown_gives_no_event():
    m = ocsf.mapping(SLACK)
    event = {"id": "x", "date_create": 1, "action": "ekm_slackbot_rekey_notification_sent", "actor": {}}
    assert m.to_ocsf(event) is None
    assert m.to_ocsf(dict(event, action="an_action_from_next_year")) is None


def _broken(out: dict, how: str) -> dict:
    out = json.loads(json.dumps(out))
    if how == "no user":
        out.pop("user", None)
        out.pop("web_resources", None)
        out.pop("entity", None)
        out.pop("group", None)
    elif how == "bad ip":
        (out.get("src_endpoint") or out.get("device"))["ip"] = "999.1.1.1"
    elif how == "bad type_uid":
        out["type_uid"] = 12345
    elif how == "unknown attribute":
        out["actor"]["user"]["shoe_size"] = "44"
    elif how == "time as text":
        out["time"] = "yesterday"
    return out


@pytest.mark.parametrize("how", ["no user", "bad ip", "bad type_uid", "unknown attribute", "time as text"])
def test_the_validator_catches_a_broken_event(how):
    event = slack_events(make_org(users=5), 1_760_000_000, 1_760_000_100, 1, seed=5)[0]
    out = ocsf.mapping(SLACK).to_ocsf(event)
    assert validate.errors(out) == []
    assert validate.errors(_broken(out, how)) != []


values = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    action=st.sampled_from(sorted(slack_actions() - set(ocsf.mapping(SLACK).no_class))),
    session=st.one_of(st.none(), st.integers(0, 10**15), st.text(max_size=12)),
    extra=st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), values, max_size=4),
)
def test_any_drifting_slack_entry_maps_to_a_valid_event(action, session, extra):
    event = slack_events(make_org(users=5), 1_760_000_000, 1_760_000_100, 1, seed=11)[0]
    event.update(action=action, **{f"x_{k}": v for k, v in extra.items()})
    event["context"]["session_id"] = session
    event["context"].update(extra)
    out = ocsf.mapping(SLACK).to_ocsf(event)
    assert validate.errors(out) == []
    for key, value in extra.items():
        if value is not None and value != []:
            assert f"x_{key}" in out["unmapped"]


def _write(tmp_path: Path, **change) -> Path:
    doc = json.loads(SLACK.ocsf_mapping.read_text())
    for key, value in change.items():
        doc["events"][key] = value
    path = tmp_path / "ocsf.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"class": "authentication", "activity": "Teleport"}, "Teleport"),
        ({"class": "file_activity", "activity": "Create"}, "class must be one of"),
        ({"class": "authentication", "activity": "Logon", "group": "usergroup"}, "has no group"),
        ({"class": "web_resources_activity", "activity": "Read", "web_resources": "nope"}, "no object template"),
        ({"class": "authentication", "activity": "Logon", "status": "Meh"}, "Meh"),
    ],
)
def test_a_wrong_mapping_file_is_refused_naming_the_action(tmp_path, rule, message):
    with pytest.raises(MappingError, match=message) as caught:
        OcsfMapping.load("slack", _write(tmp_path, user_login=rule))
    assert "user_login" in str(caught.value)


def test_an_action_both_mapped_and_without_a_class_is_refused(tmp_path):
    path = _write(tmp_path, ekm_slackbot_rekey_notification_sent={"class": "entity_management", "activity": "Other"})
    with pytest.raises(MappingError, match="both mapped and without a class"):
        OcsfMapping.load("slack", path)

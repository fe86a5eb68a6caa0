"""The ``ocsf_<class>`` views, locally (DuckDB) and as Athena text: the same events, the same attributes as
the Python mapping, and the query cookbook's (docs/query.md) security questions answered with the raw views' counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import sqlglot

from audit_collector import ocsf, providers
from audit_collector.aws.compaction_handler import compact_all
from audit_collector.compaction.local import compact_local
from audit_collector.ocsf import views
from audit_collector.ocsf.classes import CLASSES
from audit_collector.query import connect

from ..aws.test_compaction_handler import aws, compactor, statements  # noqa: F401  (aws: the moto fixture)
from ..compaction.test_compaction import checkpoint, collect, raw_lines

SLACK, ASANA = providers.get("slack"), providers.get("asana")


@pytest.fixture(scope="module")
def archive(tmp_path_factory, org) -> Path:
    """Both providers collected; the first closed days compacted, so T_all reads Parquet and raw lines."""
    root = tmp_path_factory.mktemp("ocsf-views")
    for name in ("slack", "asana"):
        collect(root, org, name, days=3.5, count=600)
        descriptor = providers.get(name)
        days = sorted(p.name.removeprefix("dt=") for p in (root / name).glob("dt=*"))
        compact_local(root, descriptor, checkpoint(root, name), days=days[:2])
    assert list(root.glob("_compacted/*/dt=*/_CURRENT.json"))
    return root


def expected(root: Path) -> dict[str, dict]:
    """The Python mapping of every archived event: metadata.uid -> OCSF event."""
    out = {}
    for descriptor in (SLACK, ASANA):
        m = ocsf.mapping(descriptor)
        for (_, line), _n in raw_lines(root, descriptor.name).items():
            event = m.to_ocsf(json.loads(line), line)
            if event is not None:
                out[event["metadata"]["uid"]] = event
    return out


COMPARED = {
    "time": lambda e: e["time"],
    "class_uid": lambda e: e["class_uid"],
    "activity_id": lambda e: e["activity_id"],
    "activity_name": lambda e: e["activity_name"],
    "type_uid": lambda e: e["type_uid"],
    "severity_id": lambda e: e["severity_id"],
    "status_id": lambda e: e["status_id"],
    "metadata_event_code": lambda e: e["metadata"]["event_code"],
    "actor_user_uid": lambda e: e["actor"]["user"].get("uid"),
    "actor_user_email_addr": lambda e: e["actor"]["user"].get("email_addr"),
    "actor_session_uid": lambda e: e["actor"].get("session", {}).get("uid"),
    "raw_data": lambda e: e["raw_data"],
}
OBJECTS = {
    "user_uid": lambda e: e.get("user", {}).get("uid"),
    "user_email_addr": lambda e: e.get("user", {}).get("email_addr"),
    "group_uid": lambda e: e.get("group", {}).get("uid"),
    "entity_uid": lambda e: e.get("entity", {}).get("uid"),
    "web_resources_uid": lambda e: e.get("web_resources", [{}])[0].get("uid"),
    "privileges": lambda e: e.get("privileges"),
}


def test_each_view_holds_exactly_the_events_the_mapping_puts_in_its_class(archive):
    want = expected(archive)
    con = connect(archive)
    try:
        seen: Counter = Counter()
        for name in views.view_names():
            cursor = con.execute(f"SELECT * FROM {name}")
            columns = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                got = dict(zip(columns, row, strict=True))
                uid = got["metadata_uid"]
                seen[uid] += 1
                event = want[uid]
                assert f"ocsf_{CLASSES_BY_UID[event['class_uid']]}" == name
                for column, value in COMPARED.items():
                    assert got[column] == value(event), (name, column, uid)
                for column, value in OBJECTS.items():
                    if column in got:
                        assert got[column] == value(event), (name, column, uid)
                ip = (event.get("src_endpoint") or event.get("device"))["ip"]
                assert got.get("src_endpoint_ip", got.get("device_ip")) == ip
    finally:
        con.close()
    assert set(seen) == set(want) and set(seen.values()) == {1}  # every mapped event once, in one view


CLASSES_BY_UID = {c.uid: c.name for c in CLASSES.values()}

QUESTIONS = [  # (question, raw query, OCSF query): the same counts
    (
        "failed logins by user and IP",
        "SELECT actor_email, ip, count(*) FROM slack_audit_logs_all WHERE action = 'user_login_failed' GROUP BY 1, 2 "
        "UNION ALL SELECT actor_email, ip, count(*) FROM asana_audit_log_events_all "
        "WHERE event_type = 'user_login_failed' GROUP BY 1, 2",
        "SELECT actor_user_email_addr, src_endpoint_ip, count(*) FROM ocsf_authentication "
        "WHERE activity_id = 1 AND status_id = 2 GROUP BY metadata_log_name, 1, 2",
    ),
    (
        "admin grants with who granted them",
        "SELECT event_time, actor_email, entity_email FROM slack_audit_logs_all "
        "WHERE action IN ('role_change_to_admin', 'role_change_to_owner') "
        "UNION ALL SELECT event_time, actor_email, resource_gid FROM asana_audit_log_events_all "
        "WHERE event_type = 'user_workspace_admin_role_changed' AND new_value = 'admin'",
        "SELECT time_dt, actor_user_email_addr, CASE metadata_log_name WHEN 'slack' THEN user_email_addr "
        "ELSE user_uid END FROM ocsf_user_access "
        "WHERE activity_id = 1 AND (contains(privileges, 'admin') OR contains(privileges, 'owner'))",
    ),
    (
        "downloads and exports per user",
        "SELECT actor_email, count(*) FROM slack_audit_logs_all WHERE action IN ('file_downloaded', "
        "'file_downloaded_blocked', 'workflow_responses_csv_download') OR action LIKE '%export_started' "
        "OR action LIKE '%export_completed' OR action LIKE '%export_downloaded' GROUP BY 1 "
        "UNION ALL SELECT actor_email, count(*) FROM asana_audit_log_events_all "
        "WHERE event_type IN ('attachment_downloaded', 'workspace_export_started', 'project_export_completed') "
        "GROUP BY 1",
        "SELECT actor_user_email_addr, count(*) FROM ocsf_web_resources_activity WHERE activity_id = 7 "
        "GROUP BY metadata_log_name, 1",
    ),
]


@pytest.mark.parametrize(("question", "raw", "in_ocsf"), QUESTIONS, ids=[q for q, _, _ in QUESTIONS])
def test_the_security_questions_have_the_raw_views_answers(archive, question, raw, in_ocsf):
    con = connect(archive)
    try:
        want, got = Counter(con.execute(raw).fetchall()), Counter(con.execute(in_ocsf).fetchall())
    finally:
        con.close()
    assert want and got == want, question


def test_every_view_statement_parses_as_athena_sql():
    statements = views.create_views()
    assert [s.split()[4] for s in statements] == views.view_names()
    assert len(statements) >= 6
    for text in statements:
        parsed = sqlglot.parse_one(text, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
        assert isinstance(parsed, sqlglot.exp.Create) and parsed.args.get("replace")


def test_the_views_read_typed_columns_not_the_event_text_for_what_investigations_filter_on():
    text = "\n".join(views.create_views())
    for column in ("action IN (", "event_type IN (", "actor_email AS actor_user_email_addr", "ip AS "):
        assert column in text
    assert "json_extract_scalar(event, '$.action')" not in text


def test_an_empty_archive_still_has_every_view(tmp_path):
    con = connect(tmp_path)
    try:
        for name in views.view_names():
            assert con.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,)
    finally:
        con.close()


def test_athena_compaction_replaces_the_views_after_the_all_views(aws):  # noqa: F811
    log: list = []
    compact_all(compactor(aws, log))
    sent = statements(log)
    ocsf_sent = [s for s in sent if s.startswith("CREATE OR REPLACE VIEW ocsf_")]
    assert ocsf_sent == views.create_views()
    last_all = max(i for i, s in enumerate(sent) if s.startswith("CREATE OR REPLACE VIEW") and "_all AS" in s)
    assert last_all < sent.index(ocsf_sent[0])


def test_the_template_s_ocsf_queries_name_views_and_columns_that_exist(archive):
    from ..support import load_template

    queries = [
        r["Properties"]["QueryString"]
        for name, r in load_template()["Resources"].items()
        if name.startswith("QueryOcsf") and r["Type"] == "AWS::Athena::NamedQuery"
    ]
    assert len(queries) == 3
    con = connect(archive)
    try:
        for text in queries:
            parsed = sqlglot.parse_one(text, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
            (table,) = {t.name for t in parsed.find_all(sqlglot.exp.Table)}
            assert table in views.view_names()
            columns = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
            named = {c.name for c in parsed.find_all(sqlglot.exp.Column)} - {"source", "failures", "events"}
            assert named <= columns, named - columns
    finally:
        con.close()

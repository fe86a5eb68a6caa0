"""The ``ocsf_<class>`` views: each provider's ``T_all`` view read as OCSF, one view per class.

Built from the same mapping files as ``OcsfMapping.to_ocsf``, as one SQL text that Athena and the local
DuckDB both run (DuckDB gets ``to_unixtime`` here, the other Athena functions from ``compaction``). A
view is a UNION ALL of one SELECT per provider that maps events to the class, filtered on the action
(a compacted, sorted column: a question about one kind of event reads the row groups holding it).

Columns are OCSF attribute paths with ``_`` for ``.`` (``actor.user.email_addr`` is
``actor_user_email_addr``); ``time`` is epoch milliseconds as in OCSF, ``time_dt`` a timestamp,
``privileges`` an array, ``web_resources_*`` the one web resource an audit event names, ``raw_data``
the archived event and ``dt`` its day (filter on it: Athena reads only those days). Two differences
from ``OcsfMapping.to_ocsf``, for SQL's sake: ``unmapped`` is left out (``raw_data`` has it all), and an
address that is not one (Slack's sample "1.23.45.678") is ``src_endpoint_ip`` as sent, where an OCSF
event keeps it in ``unmapped``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit_collector import providers
from audit_collector.collector.provider import Descriptor, scalar
from audit_collector.compaction import sql
from audit_collector.compaction.sql import EVENT
from audit_collector.ocsf import mapping
from audit_collector.ocsf.classes import CLASSES, SEVERITIES, STATUSES, VERSION, OcsfClass
from audit_collector.ocsf.mapping import OcsfMapping, Rule, Source

OBJECT_COLUMNS = {  # class object -> its attributes as view columns
    "user": ("uid", "name", "email_addr"),
    "group": ("uid", "name", "type"),
    "web_resources": ("uid", "name", "type"),
    "entity": ("uid", "name", "type"),
}
ACTOR_COLUMNS = ("actor.user.uid", "actor.user.name", "actor.user.email_addr", "actor.session.uid")


def view_name(ocsf: OcsfClass) -> str:
    return f"ocsf_{ocsf.name}"


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


class ProviderView:
    """One provider's SQL pieces over its ``T_all`` view."""

    def __init__(self, descriptor: Descriptor, mapping: OcsfMapping) -> None:
        self.descriptor, self.mapping = descriptor, mapping
        self.columns = {c.sql: c.name for c in descriptor.compacted_columns}

    def path(self, path: str) -> str:
        return self.columns.get(scalar(path)) or f"json_extract_scalar({EVENT}, '$.{path}')"

    def source(self, source: Source | None) -> str:
        if source is None:
            return "NULL"
        if source.first_of_list:
            (path,) = source.paths
            return (
                f"coalesce(json_extract_scalar(json_extract_scalar({EVENT}, '$.{path}'), '$[0]'), "
                f"json_extract_scalar({EVENT}, '$.{path}[0]'))"
            )
        parts = [scalar(p) for p in source.paths]
        whole = f"coalesce({', '.join(parts)})"
        if len(parts) > 1 and source.const is None and whole in self.columns:
            return self.columns[whole]  # a typed column computes exactly this (Slack's entity_id)
        items = [self.path(p) for p in source.paths] + ([_literal(source.const)] if source.const is not None else [])
        return items[0] if len(items) == 1 else f"coalesce({', '.join(items)})"

    @property
    def code(self) -> str:
        return self.path(self.mapping.event_code)

    def time_ms(self) -> str:
        """From the typed time column (the first compacted one), not the event text: a cheap read."""
        return f"CAST(round(to_unixtime({self.descriptor.compacted_columns[0].name}) * 1000) AS bigint)"

    def switch(self, rules: list[Rule], value: Any) -> str:
        """CASE over the action: ``value(rule, case)`` gives each branch's SQL (case None: the rule's own)."""
        branches: list[tuple[str, str]] = []
        for rule in rules:
            for case in rule.cases:
                condition = f"{self.code} = {_literal(rule.code)} AND {self.path(case.path)} = {_literal(case.equals)}"
                branches.append((condition, value(rule, case)))
        grouped: dict[str, list[str]] = {}
        for rule in rules:
            grouped.setdefault(value(rule, None), []).append(rule.code)
        if not branches and len(grouped) == 1:
            return next(iter(grouped))
        for result, codes in grouped.items():
            branches.append((f"{self.code} IN ({', '.join(_literal(c) for c in codes)})", result))
        return "CASE " + " ".join(f"WHEN {c} THEN {r}" for c, r in branches) + " END"

    def select(self, ocsf: OcsfClass, rules: list[Rule], source: str | None = None) -> str:
        """The view's SELECT for one class; ``source`` replaces ``T_all`` (a subquery with its columns)."""
        m = self.mapping

        def pick(attr: str):
            return lambda rule, case: _literal(_attr(rule, case, attr))

        columns = [
            (self.time_ms(), "time"),
            (self.descriptor.compacted_columns[0].name, "time_dt"),
            (str(ocsf.uid), "class_uid"),
            (_literal(ocsf.caption), "class_name"),
            (str(ocsf.category_uid), "category_uid"),
            (_literal(ocsf.category_name), "category_name"),
            (self.switch(rules, pick("activity_id")), "activity_id"),
            (self.switch(rules, lambda r, c: _literal(ocsf.activities[_attr(r, c, "activity_id")])), "activity_name"),
            (self.switch(rules, lambda r, c: str(ocsf.uid * 100 + _attr(r, c, "activity_id"))), "type_uid"),
            (self.switch(rules, pick("severity_id")), "severity_id"),
            (self.switch(rules, lambda r, c: _literal(SEVERITIES[r.severity_id])), "severity"),
            (self.switch(rules, pick("status_id")), "status_id"),
            (self.switch(rules, lambda r, c: _literal(STATUSES[_attr(r, c, "status_id")])), "status"),
            (_literal(VERSION), "metadata_version"),
            (_literal(m.product["name"]), "metadata_product_name"),
            (_literal(m.product["vendor_name"]), "metadata_product_vendor_name"),
            (_literal(self.descriptor.name), "metadata_log_name"),
            (self.path(m.uid), "metadata_uid"),
            (self.code, "metadata_event_code"),
        ]
        columns += [(self.source(m.fields.get(a)), a.replace(".", "_")) for a in ACTOR_COLUMNS]
        columns.append((self.source(m.ip), "src_endpoint_ip" if ocsf.has_src_endpoint else "device_ip"))
        if ocsf.has_http_request:
            columns.append((self.source(m.user_agent), "http_request_user_agent"))
        for kind in ocsf.objects:
            if kind == "privileges":
                value = self.switch(rules, lambda r, c: self.source((c.privileges if c else None) or r.privileges))
                columns.append((f"CASE WHEN {value} IS NULL THEN NULL ELSE ARRAY[{value}] END", "privileges"))
                continue
            for attr in OBJECT_COLUMNS.get(kind, ()):
                value = self.switch(
                    rules,
                    lambda r, c, kind=kind, attr=attr: self.source(
                        m.templates[r.objects[kind]].get(attr) if kind in r.objects else None
                    ),
                )
                columns.append((value, f"{kind}_{attr}"))
        columns += [(EVENT, "raw_data"), ("dt", "dt")]
        body = ",\n       ".join(f"{expr} AS {name}" for expr, name in columns)
        codes = ", ".join(_literal(r.code) for r in rules)
        return f"SELECT {body}\nFROM {source or sql.all_view(self.descriptor)}\nWHERE {self.code} IN ({codes})"


def _attr(rule: Rule, case: Any, attr: str) -> Any:
    if case is not None and getattr(case, attr, None) is not None:
        return getattr(case, attr)
    return getattr(rule, attr)


def _mapped(descriptors: Iterable[Descriptor]) -> list[tuple[Descriptor, OcsfMapping]]:
    out = []
    for descriptor in descriptors:
        m = mapping(descriptor)
        if m is not None and sql.compacted(descriptor):  # the views read T_all
            out.append((descriptor, m))
    return out


def create_views(descriptors: Iterable[Descriptor] | None = None) -> list[str]:
    """``CREATE OR REPLACE VIEW ocsf_<class>`` for every class some provider maps events to."""
    mapped = _mapped(providers.all_descriptors() if descriptors is None else descriptors)
    statements = []
    for ocsf in CLASSES.values():
        selects = []
        for descriptor, m in mapped:
            rules = [r for r in m.rules.values() if r.ocsf is ocsf]
            if rules:
                selects.append(ProviderView(descriptor, m).select(ocsf, rules))
        if selects:
            union = "\nUNION ALL\n".join(selects)
            statements.append(f"CREATE OR REPLACE VIEW {view_name(ocsf)} AS\n{union}")
    return statements


def view_names(descriptors: Iterable[Descriptor] | None = None) -> list[str]:
    return [s.split()[4] for s in create_views(descriptors)]


def define_local(con: Any) -> None:
    """The views on a local DuckDB connection that already has the ``T_all`` views."""
    try:
        con.execute("CREATE MACRO to_unixtime(t) AS epoch(t)")  # seconds, with the fraction, as Athena's
    except Exception as exc:  # already defined on this connection
        if "already exists" not in str(exc):
            raise
    for statement in create_views():
        con.execute(statement)

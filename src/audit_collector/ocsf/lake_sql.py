"""The SQL of the Security Lake export in Athena: one SELECT per OCSF class and day, built from the
same mapping as the OCSF views, typed as the Parquet schema of the local writer (``lake.schema``)."""

from __future__ import annotations

import re

from audit_collector.collector.provider import Descriptor, scalar
from audit_collector.compaction import sql
from audit_collector.ocsf import mapping
from audit_collector.ocsf.classes import CLASSES, PROFILES, OcsfClass
from audit_collector.ocsf.lake import schema
from audit_collector.ocsf.mapping import OcsfMapping
from audit_collector.ocsf.views import OBJECT_COLUMNS, ProviderView

# IPv4 without leading zeros, or IPv6 (hex groups and colons, an IPv4 tail allowed): what Python's
# ipaddress accepts from audit APIs. Both engines run it as written (DuckDB through a macro).
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


_IPV4 = rf"({_OCTET}\.){{3}}{_OCTET}"


IP_PATTERN = rf"^{_IPV4}$|^([0-9A-Fa-f]{{0,4}}:){{2,7}}([0-9A-Fa-f]{{0,4}}|{_IPV4})$"  # RE2 and Java: no lookaround


def _split(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def athena_type(duck: str) -> str:
    """A ``lake.schema`` type (DuckDB's spelling) in Athena's: ``STRUCT("a" VARCHAR)[]`` is
    ``array(ROW("a" varchar))``."""
    duck = duck.strip()
    if duck.endswith("[]"):
        return f"array({athena_type(duck[:-2])})"
    if duck.startswith("STRUCT("):
        fields = []
        for item in _split(duck[len("STRUCT(") : -1]):
            name, _, kind = item.partition(" ")
            fields.append(f'"{name.strip(chr(34))}" {athena_type(kind)}')
        return f"ROW({', '.join(fields)})"
    if duck.startswith("MAP("):
        key, value = _split(duck[len("MAP(") : -1])
        return f"map({athena_type(key)}, {athena_type(value)})"
    return {"VARCHAR": "varchar", "BIGINT": "bigint", "INTEGER": "integer"}[duck]


def _fields(duck: str) -> list[str]:
    return [item.partition(" ")[0].strip('"') for item in _split(duck[len("STRUCT(") : -1])]


def _any(columns: list[str]) -> str:
    return "(" + " OR ".join(f"{c} IS NOT NULL" for c in columns) + ")"


def _when(condition: str, value: str, kind: str) -> str:
    return f"CAST(CASE WHEN {condition} THEN {value} END AS {kind})"


def _row(values: list[str]) -> str:
    return f"ROW({', '.join(values)})"


def _outer_columns(ocsf: OcsfClass, m: OcsfMapping) -> list[tuple[str, str]]:
    """(expression over the view's columns ``v.*``, name) for every column of ``lake.schema``, in order."""
    cols = schema(ocsf)
    out: list[tuple[str, str]] = []
    flat = {"type_name": "concat(v.class_name, ': ', v.activity_name)"}
    for name, duck in cols.items():
        kind = athena_type(duck)
        if name in ("metadata", "actor", "src_endpoint", "device", "http_request", "service", "unmapped"):
            continue  # below
        if name in OBJECT_COLUMNS or name == "privileges":
            continue
        out.append((f"CAST({flat.get(name, f'v.{name}')} AS {kind})", name))
    profiles = "ARRAY[" + ", ".join(f"'{p}'" for p in PROFILES) + "]"
    metadata = _row(
        [
            "v.metadata_version",
            profiles,
            _row(["v.metadata_product_name", "v.metadata_product_vendor_name"]),
            "v.metadata_uid",
            "v.metadata_event_code",
            "v.metadata_log_name",
            f"json_extract_scalar(v.raw_data, '$.{m.time_path}')",
        ]
    )
    nested = {"metadata": f"CAST({metadata} AS {athena_type(cols['metadata'])})"}
    user = ["v.actor_user_uid", "v.actor_user_name", "v.actor_user_email_addr"]
    actor = _row(
        [
            f"CASE WHEN {_any(user)} THEN {_row(user)} END",
            "CASE WHEN v.actor_session_uid IS NOT NULL THEN ROW(v.actor_session_uid) END",
        ]
    )
    nested["actor"] = _when(_any([*user, "v.actor_session_uid"]), actor, athena_type(cols["actor"]))
    if "src_endpoint" in cols:
        ip = "v.src_endpoint_ip"
        nested["src_endpoint"] = _when(
            f"regexp_like({ip}, '{IP_PATTERN}')", f"ROW({ip})", athena_type(cols["src_endpoint"])
        )
    else:
        ip = "v.device_ip"
        value = f"ROW({ip}, 0, 'Unknown')"
        nested["device"] = _when(f"regexp_like({ip}, '{IP_PATTERN}')", value, athena_type(cols["device"]))
    if "http_request" in cols:
        agent = "v.http_request_user_agent"
        nested["http_request"] = _when(f"{agent} IS NOT NULL", f"ROW({agent})", athena_type(cols["http_request"]))
    if "service" in cols:
        nested["service"] = f"CAST(ROW(v.metadata_product_name) AS {athena_type(cols['service'])})"
    for kind in OBJECT_COLUMNS:
        if kind not in cols:
            continue
        attrs = [f"v.{kind}_{a}" for a in OBJECT_COLUMNS[kind]]
        named = [f"v.{kind}_{a}" for a in OBJECT_COLUMNS[kind] if a != "type"]  # a type alone names nothing
        if kind == "web_resources":
            element = athena_type(cols[kind][: -len("[]")])
            nested[kind] = f"CASE WHEN {_any(named)} THEN ARRAY[CAST({_row(attrs)} AS {element})] END"
        else:
            nested[kind] = _when(_any(named), _row(attrs), athena_type(cols[kind]))
    if "privileges" in cols:
        nested["privileges"] = f"CAST(v.privileges AS {athena_type(cols['privileges'])})"
    nested["unmapped"] = f"CAST(NULL AS {athena_type(cols['unmapped'])})"
    by_name = dict((name, expr) for expr, name in out) | nested
    return [(by_name[name], name) for name in cols]


def _day_source(descriptor: Descriptor, day: str) -> str:
    """The day's raw lines with the columns ``T_all`` has: the view's SELECT reads this instead."""
    typed = ", ".join(f"{c.sql} AS {c.name}" for c in descriptor.compacted_columns)
    lines = sql.lines_table(descriptor)
    return f"(SELECT {typed}, line AS {sql.EVENT}, dt FROM {lines} WHERE dt = '{_day(day)}') day_events"


def _day(day: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise ValueError(f"not a day: {day!r}")
    return day


def classes_of(descriptor: Descriptor) -> list[OcsfClass]:
    """The classes some action of the provider maps to: one custom source each."""
    m = mapping(descriptor)
    if m is None:
        return []
    names = {rule.ocsf.name for rule in m.rules.values()}
    return [c for c in CLASSES.values() if c.name in names]


def select_class(descriptor: Descriptor, ocsf: OcsfClass, day: str) -> str:
    """One day of one provider's events of one class, as the rows of the class's custom source: the
    ``ocsf_<class>`` view's SELECT, nested into ``lake.schema``'s columns, sorted by time."""
    m = mapping(descriptor)
    assert m is not None
    rules = [r for r in m.rules.values() if r.ocsf is ocsf]
    inner = ProviderView(descriptor, m).select(ocsf, rules, source=_day_source(descriptor, day))
    body = ",\n       ".join(f'{expr} AS "{name}"' for expr, name in _outer_columns(ocsf, m))
    return f'SELECT {body}\nFROM ({inner}) v\nORDER BY v."time", v.metadata_uid'


def unload_class(descriptor: Descriptor, ocsf: OcsfClass, day: str, location: str) -> str:
    if not STAGING_URI.fullmatch(location):
        raise ValueError(f"not an S3 folder: {location!r}")
    return (
        f"UNLOAD ({select_class(descriptor, ocsf, day)})\nTO '{location}'\n"
        "WITH (format = 'PARQUET', compression = 'ZSTD')"
    )


def count_codes(descriptor: Descriptor, day: str) -> str:
    """Events per action (event type) of the day's raw lines."""
    m = mapping(descriptor)
    assert m is not None
    code = scalar(m.event_code)
    lines = sql.lines_table(descriptor)
    return f"SELECT {code} AS code, count(*) AS events\nFROM {lines}\nWHERE dt = '{_day(day)}'\nGROUP BY 1"


STAGING_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([A-Za-z0-9._=+\-]+/)*$")

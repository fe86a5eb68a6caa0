"""A provider's OCSF mapping (data in its package, ``providers/<name>/ocsf.json``) and its application.

The file says, for one audit API, where each OCSF attribute comes from (paths into the raw event) and,
for every action or event type, its class and activity, or why it has none. This module knows no
provider: it reads the file, checks it against ``classes``, and turns one archived event into one OCSF
event (a dict, ready for JSON or Parquet). ``views.py`` turns the same file into SQL.

Sources (where a value comes from), in the file:

- ``"a.b.c"``: that path of the event;
- ``["a.b", "c.d"]``: the first of them that is present (a last ``{"const": …}``: else that value);
- ``{"const": "admin"}``: a fixed value;
- ``{"path": "a.b", "first_of_list": true}``: the first item of a list (or of a list encoded as a JSON
  string, as Slack sends ``details.succeeded_users``).

Everything in the event no attribute took is kept in ``unmapped`` (dotted path -> text) and the event
as archived, byte for byte, in ``raw_data``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from audit_collector.ocsf.classes import CLASSES, PROFILES, SEVERITIES, STATUSES, VERSION, OcsfClass

MAPPING_FILE = "ocsf.json"
OBJECT_KINDS = ("user", "group", "web_resources", "entity")  # filled from a named template of the file


class MappingError(ValueError):
    """A mapping file that names an unknown class, activity, template or field."""


@dataclass(frozen=True)
class Source:
    """Where one value comes from (see the module docstring)."""

    paths: tuple[str, ...] = ()
    const: Any = None
    first_of_list: bool = False

    @classmethod
    def parse(cls, spec: Any, where: str) -> Source:
        if isinstance(spec, str):
            return cls(paths=(spec,))
        if isinstance(spec, list) and spec and all(isinstance(p, str) for p in spec):
            return cls(paths=tuple(spec))
        if isinstance(spec, list) and len(spec) > 1 and all(isinstance(p, str) for p in spec[:-1]):
            last = spec[-1]
            if isinstance(last, dict) and set(last) == {"const"}:  # paths, then a fixed value
                return cls(paths=tuple(spec[:-1]), const=last["const"])
        if isinstance(spec, dict) and set(spec) == {"const"}:
            return cls(const=spec["const"])
        if isinstance(spec, dict) and set(spec) == {"path", "first_of_list"} and isinstance(spec["path"], str):
            return cls(paths=(spec["path"],), first_of_list=bool(spec["first_of_list"]))
        raise MappingError(f"{where}: not a source: {spec!r}")

    def get(self, event: Mapping[str, Any]) -> tuple[Any, str | None]:
        """The value and the path it was taken from (None for a constant or nothing found)."""
        for path in self.paths:
            value = lookup(event, path)
            if value is None:
                continue
            if self.first_of_list:
                items = json.loads(value) if isinstance(value, str) and value.startswith("[") else value
                # The list's other items stay in ``unmapped``: the path is not reported as taken.
                return (items[0] if isinstance(items, list) and items else None), None
            return value, path
        return self.const, None


def lookup(event: Mapping[str, Any], path: str) -> Any:
    node: Any = event
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class Case:
    """An override of a rule when one field has one value (an Asana role change to or from admin)."""

    path: str
    equals: str
    activity_id: int | None
    status_id: int | None
    privileges: Source | None


@dataclass(frozen=True)
class Rule:
    code: str  # the action or event type
    ocsf: OcsfClass
    activity_id: int
    status_id: int
    severity_id: int
    objects: Mapping[str, str]  # class object -> template name
    privileges: Source | None
    cases: tuple[Case, ...]


def _caption_id(table: Mapping[int, str], caption: Any, where: str) -> int:
    for uid, name in table.items():
        if name == caption:
            return uid
    raise MappingError(f"{where}: {caption!r} is not one of {', '.join(table.values())}")


@dataclass(frozen=True)
class OcsfMapping:
    """One provider's mapping, checked. ``to_ocsf`` is the whole job."""

    provider: str
    path: Path
    product: Mapping[str, str]
    event_code: str  # the path of the action / event type
    uid: str  # the path of the event id
    time_path: str
    time_format: str  # "epoch_seconds" or "iso8601"
    fields: Mapping[str, Source]  # dotted OCSF path -> source (every class)
    ip: Source | None
    user_agent: Source | None
    templates: Mapping[str, Mapping[str, Source]]
    rules: Mapping[str, Rule]
    no_class: Mapping[str, str]  # code -> why it has no class

    # ------------------------------------------------------------------ reading the file

    @classmethod
    def load(cls, provider: str, path: Path) -> OcsfMapping:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise MappingError(f"{path}: cannot read the OCSF mapping: {exc}") from exc
        if doc.get("ocsf_version") != VERSION:
            raise MappingError(f"{path}: ocsf_version must be {VERSION}, got {doc.get('ocsf_version')!r}")
        where = str(path)
        templates = {
            name: {attr: Source.parse(spec, f"{where} objects.{name}.{attr}") for attr, spec in body.items()}
            for name, body in doc.get("objects", {}).items()
        }
        defaults = doc.get("class_defaults", {})
        unknown = set(defaults) - set(CLASSES)
        if unknown:
            raise MappingError(f"{where}: class_defaults names unknown classes {sorted(unknown)}")
        rules = {code: cls._rule(code, body, defaults, templates, where) for code, body in doc["events"].items()}
        no_class = dict(doc.get("no_class", {}))
        both = set(rules) & set(no_class)
        if both:
            raise MappingError(f"{where}: both mapped and without a class: {sorted(both)}")
        if any(not isinstance(reason, str) or not reason.strip() for reason in no_class.values()):
            raise MappingError(f"{where}: every entry of no_class needs a reason")
        time = doc["time"]
        if time.get("format") not in ("epoch_seconds", "iso8601"):
            raise MappingError(f"{where}: time.format must be epoch_seconds or iso8601")
        common = doc.get("fields", {})
        return cls(
            provider=provider,
            path=Path(path),
            product=dict(doc["product"]),
            event_code=doc["event_code"],
            uid=doc["uid"],
            time_path=time["path"],
            time_format=time["format"],
            fields={k: Source.parse(v, f"{where} fields.{k}") for k, v in common.get("actor", {}).items()},
            ip=Source.parse(common["ip"], f"{where} fields.ip") if "ip" in common else None,
            user_agent=Source.parse(common["user_agent"], f"{where} fields.user_agent")
            if "user_agent" in common
            else None,
            templates=templates,
            rules=rules,
            no_class=no_class,
        )

    @staticmethod
    def _rule(code: str, body: Mapping[str, Any], defaults: Mapping[str, Any], templates: Mapping, where: str) -> Rule:
        at = f"{where} events.{code}"
        ocsf = CLASSES.get(body.get("class"))
        if ocsf is None:
            raise MappingError(f"{at}: class must be one of {', '.join(CLASSES)}, got {body.get('class')!r}")
        merged = {**defaults.get(ocsf.name, {}), **body}
        objects = {}
        for kind in OBJECT_KINDS:
            name = merged.get(kind)
            if name is None:
                continue
            if kind not in ocsf.objects:
                raise MappingError(f"{at}: {ocsf.caption} has no {kind}")
            if name not in templates:
                raise MappingError(f"{at}: no object template {name!r}")
            objects[kind] = name
        privileges = Source.parse(merged["privileges"], f"{at}.privileges") if "privileges" in merged else None
        if privileges is not None and "privileges" not in ocsf.objects:
            raise MappingError(f"{at}: {ocsf.caption} has no privileges")
        cases = tuple(
            Case(
                path=case["when"]["path"],
                equals=case["when"]["equals"],
                activity_id=_caption_id(ocsf.activities, case["activity"], at) if "activity" in case else None,
                status_id=_caption_id(STATUSES, case["status"], at) if "status" in case else None,
                privileges=Source.parse(case["privileges"], f"{at}.cases") if "privileges" in case else None,
            )
            for case in merged.get("cases", ())
        )
        return Rule(
            code=code,
            ocsf=ocsf,
            activity_id=_caption_id(ocsf.activities, merged.get("activity"), at),
            status_id=_caption_id(STATUSES, merged.get("status", "Success"), at),
            severity_id=_caption_id(SEVERITIES, merged.get("severity", "Informational"), at),
            objects=objects,
            privileges=privileges,
            cases=cases,
        )

    # ------------------------------------------------------------------ applying it

    def code_of(self, event: Mapping[str, Any]) -> str | None:
        code = lookup(event, self.event_code)
        return code if isinstance(code, str) else None

    def rule_for(self, event: Mapping[str, Any]) -> Rule | None:
        code = self.code_of(event)
        return self.rules.get(code) if code is not None else None

    def time_ms(self, event: Mapping[str, Any]) -> int:
        value = lookup(event, self.time_path)
        if self.time_format == "epoch_seconds":
            return int(value) * 1000
        return round(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)

    def to_ocsf(self, event: Mapping[str, Any], raw_data: str | None = None) -> dict[str, Any] | None:
        """The OCSF event for ``event`` (None: its action has no class, or is not in the mapping)."""
        rule = self.rule_for(event)
        if rule is None:
            return None
        taken: set[str] = {self.event_code, self.uid, self.time_path}
        activity_id, status_id, privileges = rule.activity_id, rule.status_id, rule.privileges
        for case in rule.cases:
            if lookup(event, case.path) == case.equals:
                activity_id = case.activity_id if case.activity_id is not None else activity_id
                status_id = case.status_id if case.status_id is not None else status_id
                privileges = case.privileges or privileges
                break
        ocsf = rule.ocsf
        out: dict[str, Any] = {
            "time": self.time_ms(event),
            "class_uid": ocsf.uid,
            "class_name": ocsf.caption,
            "category_uid": ocsf.category_uid,
            "category_name": ocsf.category_name,
            "activity_id": activity_id,
            "activity_name": ocsf.activities[activity_id],
            "type_uid": ocsf.uid * 100 + activity_id,
            "type_name": f"{ocsf.caption}: {ocsf.activities[activity_id]}",
            "severity_id": rule.severity_id,
            "severity": SEVERITIES[rule.severity_id],
            "status_id": status_id,
            "status": STATUSES[status_id],
            "metadata": {
                "version": VERSION,
                "profiles": list(PROFILES),
                "product": dict(self.product),
                "uid": _text(lookup(event, self.uid)),
                "event_code": rule.code,
                "log_name": self.provider,
                "original_time": _text(lookup(event, self.time_path)),
            },
        }
        actor = _object(self.fields, event, taken)
        if actor:
            out.update(_nest(actor))
        if self.ip is not None:
            ip, path = self.ip.get(event)
            if _is_ip(ip):
                out["src_endpoint" if ocsf.has_src_endpoint else "device"] = (
                    {"ip": ip} if ocsf.has_src_endpoint else {"ip": ip, "type_id": 0, "type": "Unknown"}
                )
                taken.update([path] if path else [])
        if self.user_agent is not None and ocsf.has_http_request:
            agent, path = self.user_agent.get(event)
            if agent is not None:
                out["http_request"] = {"user_agent": _text(agent)}
                taken.update([path] if path else [])
        if ocsf.fixed.get("service"):
            out["service"] = {"name": self.product["name"]}
        for kind, template in rule.objects.items():
            obj = _object(self.templates[template], event, taken)
            if obj:
                out[kind] = [obj] if kind == "web_resources" else obj
        if privileges is not None:
            value, path = privileges.get(event)
            if value is not None:
                out["privileges"] = [_text(value)]
                taken.update([path] if path else [])
        unmapped = dict(_leaves(event, "", taken))
        if unmapped:
            out["unmapped"] = unmapped
        out["raw_data"] = raw_data if raw_data is not None else json.dumps(event, separators=(",", ":"))
        return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return isinstance(value, str)


def _object(spec: Mapping[str, Source], event: Mapping[str, Any], taken: set[str]) -> dict[str, Any]:
    out = {}
    for attr, source in spec.items():
        value, path = source.get(event)
        if value is not None:
            out[attr] = _text(value)
            if path is not None:
                taken.add(path)
    return out if set(out) - {"type"} else {}  # a type alone names nothing


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"actor.user.uid": x} -> {"actor": {"user": {"uid": x}}}."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def _leaves(node: Any, prefix: str, taken: set[str]) -> Iterator[tuple[str, str]]:
    """Every leaf of the event no attribute took, as (dotted path, text)."""
    if prefix in taken:
        return
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key), taken)
    elif node is not None and prefix:
        yield prefix, node if isinstance(node, str) else json.dumps(node)


@cache
def mapping_for(provider: str, path: Path) -> OcsfMapping:
    return OcsfMapping.load(provider, path)

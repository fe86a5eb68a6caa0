"""Checks OCSF events against the schema itself: a JSON Schema per class, from ``ocsf-json-schema``.

Chosen by measurement over ``py-ocsf-models`` (``benchmarks/bench_ocsf.py``): that package models
only the finding classes (2xxx), none of the seven this mapping uses, while ``ocsf-json-schema``
ships the 1.1.0 schema and builds, per class and profile set, a JSON Schema with every enum, pattern
(``ip_t``), required attribute and ``additionalProperties: false``, which ``jsonschema`` checks. A
dev and test tool: the Lambda never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from audit_collector.ocsf.classes import VERSION, by_uid


@cache
def _validator(class_name: str, profiles: tuple[str, ...]) -> Any:
    import jsonschema
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(VERSION)).get_class_schema(class_name, list(profiles))
    return jsonschema.Draft202012Validator(schema)


def errors(event: Mapping[str, Any]) -> list[str]:
    """Every way ``event`` breaks OCSF 1.1.0 (empty: it is a valid event of its class)."""
    try:
        name = by_uid(int(event["class_uid"])).name
    except (KeyError, TypeError, ValueError):
        return [f"class_uid {event.get('class_uid')!r} is not one this mapping uses"]
    profiles = tuple(sorted(event.get("metadata", {}).get("profiles", ())))
    found = _validator(name, profiles).iter_errors(event)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}" for e in found)

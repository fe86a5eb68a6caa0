"""A small base for typed views of API payloads that never lose a field.

Audit APIs add fields and change types without notice (a session id is a string, an int or
null). A model therefore never rejects a value: known fields become attributes (nested objects become
models when they are objects), everything else lands in ``unknown_fields``, and ``to_dict()`` gives
back what came in, key for key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self


@dataclasses.dataclass
class Model:
    unknown_fields: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, kw_only=True)

    # field name -> model class for nested objects (or lists of objects)
    _nested: ClassVar[dict[str, type[Model]]] = {}

    @classmethod
    def from_dict(cls, data: Any) -> Self | None:
        if not isinstance(data, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)} - {"unknown_fields"}
        kwargs: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                unknown[key] = value
                continue
            nested = cls._nested.get(key)
            if nested is not None and isinstance(value, dict):
                value = nested.from_dict(value)
            elif nested is not None and isinstance(value, list):
                value = [nested.from_dict(v) if isinstance(v, dict) else v for v in value]
            kwargs[key] = value
        obj = cls(**kwargs)
        obj.unknown_fields = unknown
        obj._present = frozenset(data)  # so to_dict() omits what the API left out
        return obj

    def to_dict(self) -> dict[str, Any]:
        present = getattr(self, "_present", None)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "unknown_fields":
                continue
            value = getattr(self, f.name)
            if present is not None and f.name not in present:
                continue
            if present is None and value is None:
                continue
            out[f.name] = _plain(value)
        out.update(self.unknown_fields)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

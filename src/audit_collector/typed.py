"""A small base for typed views of API payloads that never lose a field.

Audit APIs add fields and change types without notice (a session id is a string, an int or
null). A model therefore never rejects a value: known fields become attributes (nested objects become
models when they are objects), everything else lands in ``unknown_fields``, and ``to_dict()`` gives
back what came in, key for key. A field may name a decoder (``_decoded``) for a value the API
encodes oddly (a list sent as a JSON string): the attribute holds the decoded value, and ``to_dict()``
still gives back the value as sent unless the attribute was changed since.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar, Self


@dataclasses.dataclass
class Model:
    unknown_fields: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, kw_only=True)

    # field name -> model class for nested objects (or lists of objects)
    _nested: ClassVar[dict[str, type[Model]]] = {}
    # field name -> function giving the value to expose, or the value itself when it does not apply
    _decoded: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_dict(cls, data: Any) -> Self | None:
        if not isinstance(data, dict):
            return None
        known = field_names(cls)
        kwargs: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        sent: dict[str, tuple[Any, Any]] = {}  # field -> (decoded value as decoded, value as sent)
        for key, value in data.items():
            if key not in known:
                unknown[key] = value
                continue
            decode = cls._decoded.get(key)
            if decode is not None:
                decoded = decode(value)
                if decoded is not value:
                    sent[key] = (copy.deepcopy(decoded), value)
                    value = decoded
            nested = cls._nested.get(key)
            if nested is not None and isinstance(value, dict):
                value = nested.from_dict(value)
            elif nested is not None and isinstance(value, list):
                value = [nested.from_dict(v) if isinstance(v, dict) else v for v in value]
            kwargs[key] = value
        obj = cls(**kwargs)
        obj.unknown_fields = unknown
        obj._present = tuple(data)  # the keys as they came, in order: to_dict() omits what the API left out
        obj._sent = sent
        return obj

    def to_dict(self) -> dict[str, Any]:
        known = field_names(type(self))
        present = getattr(self, "_present", None)
        if present is None:  # built in code, not parsed: the fields that are set
            present = tuple(name for name in known if getattr(self, name) is not None)
        sent = getattr(self, "_sent", {})
        out: dict[str, Any] = {}
        for key in present:
            if key not in known:
                if key in self.unknown_fields:
                    out[key] = self.unknown_fields[key]
                continue
            value = getattr(self, key)
            if key in sent and sent[key][0] == value:
                out[key] = sent[key][1]  # unchanged since decoded: give back what the API sent
            else:
                out[key] = _plain(value)
        out.update(self.unknown_fields)  # and any added since
        return out


@functools.cache
def field_names(model: type[Model]) -> frozenset[str]:
    """A model's typed fields (``unknown_fields`` aside), looked up once per class."""
    return frozenset(f.name for f in dataclasses.fields(model)) - {"unknown_fields"}


def _plain(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

"""CloudFormation YAML as the template's hand-written parts write it: short tags, block style, flow
where it reads better. Just enough for the generated blocks of ``template.py``, without PyYAML (which
the Lambda bundle does not carry), so ``audit-collector template`` runs wherever the package does.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

WIDTH = 116  # a folded scalar's lines, so the template stays under the repository's 120 columns


@dataclass(frozen=True)
class Tag:
    """A short-form intrinsic function: ``!Ref X``, ``!Sub "..."``, ``!If [c, a, b]``."""

    name: str
    value: Any


@dataclass(frozen=True)
class Flow:
    """Write this value on one line (``{Name: id, Type: string}``, ``!Not [!Equals [...]]``)."""

    value: Any


@dataclass(frozen=True, eq=False)
class Comment:
    """A mapping key that is written as a ``# text`` line (each instance is its own key)."""

    text: str


def ref(name: str) -> Tag:
    return Tag("Ref", name)


def sub(text: str) -> Tag:
    return Tag("Sub", text)


def get_att(name: str) -> Tag:
    return Tag("GetAtt", name)


NO_VALUE = ref("AWS::NoValue")

# YAML 1.1 reads these as booleans or null; a string spelled so is quoted.
_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", ""}
_PLAIN = re.compile(r"[A-Za-z_/.(][A-Za-z0-9 _./()'<>+=@,;:?*$-]*")
_FLOW_UNSAFE = re.compile(r"[,\[\]{}]")


def scalar(value: Any, *, flow: bool = False) -> str:
    """One scalar: plain when YAML reads it back as the same string, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    plain = (
        _PLAIN.fullmatch(text)
        and text.lower() not in _SPECIAL
        and ": " not in text
        and " #" not in text
        and not text.endswith((" ", ":"))
        and not (flow and _FLOW_UNSAFE.search(text))
    )
    if plain:
        return text
    if '"' in text and "'" not in text and "\n" not in text:
        return f"'{text}'"
    return json.dumps(text, ensure_ascii=False)


def inline(value: Any) -> str | None:
    """The value on the line of its key or dash, or None when it needs lines of its own."""
    if isinstance(value, Flow):
        return _flow(value.value)
    if isinstance(value, Tag) and not isinstance(value.value, list | dict):
        return f"!{value.name} {_flow(value.value)}"
    if isinstance(value, dict | list | Tag) or (isinstance(value, str) and ("\n" in value or len(value) > WIDTH)):
        return None
    return scalar(value)


def _flow(value: Any) -> str:
    if isinstance(value, Tag):
        return f"!{value.name} {_flow(value.value)}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Flow):
        return _flow(value.value)
    return scalar(value, flow=True)


def _long_text(head: str, text: str, indent: str) -> Iterator[str]:
    """A literal block (``|``) for text with newlines, else a folded one (``>-``) of WIDTH columns."""
    if "\n" in text:
        yield f"{head} |" if text.endswith("\n") and not text.endswith("\n\n") else f"{head} |-"
        yield from (f"{indent}{line}" if line else "" for line in text.rstrip("\n").split("\n"))
        return
    yield f"{head} >-"
    yield from textwrap.wrap(
        text, WIDTH, initial_indent=indent, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def mapping(entries: Mapping[Any, Any], indent: int = 0) -> Iterator[str]:
    """The lines of a block mapping at ``indent`` columns."""
    pad = " " * indent
    for key, value in entries.items():
        if isinstance(key, Comment):
            yield f"{pad}# {key.text}"
            continue
        yield from _entry(f"{pad}{key}:", value, indent + 2)


def sequence(items: list[Any], indent: int = 0) -> Iterator[str]:
    """The lines of a block sequence at ``indent`` columns."""
    pad = " " * indent
    for item in items:
        if isinstance(item, dict):
            lines = list(mapping(item, indent + 2))
            yield f"{pad}- {lines[0].lstrip()}"
            yield from lines[1:]
        else:
            yield from _entry(f"{pad}-", item, indent + 2)


def _entry(head: str, value: Any, child: int) -> Iterator[str]:
    one = inline(value)
    if one is not None:
        yield f"{head} {one}"
    elif isinstance(value, str):
        yield from _long_text(head, value, " " * child)
    elif isinstance(value, Tag):  # a tag over a list: !If, then its items below
        yield f"{head} !{value.name}"
        yield from sequence(value.value, child) if isinstance(value.value, list) else mapping(value.value, child)
    elif isinstance(value, dict):
        yield head
        yield from mapping(value, child)
    else:
        yield head
        yield from sequence(value, child)

"""The archive writer: encoding fidelity, naming, atomic local writes."""

from __future__ import annotations

import json
import zlib
from typing import Any

import boto3
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from audit_collector.errors import ArchiveError
from audit_collector.json_text import PageReader, encode_line, parse_json
from audit_collector.storage.archive import EMPTY_GZIP, ObjectBuffer, decode_object
from audit_collector.storage.keys import object_key
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive

AWKWARD = {
    "big": 123456789012345678901234567890,  # beyond 64 bits
    "neg": -9223372036854775809,
    "float": 1e16,
    "tiny": 5e-324,
    "unicode": "žluťoučký kůň 🐴 \u2028",
    "escapes": 'quote " backslash \\ slash / tab \t',
    "nested": {"b": [1, None, True, False, {"c": ""}], "a": 0.1},
    "order": {"z": 1, "a": 2},
}


@pytest.mark.parametrize(
    "big", [123456789012345678901234567890, 18446744073709551616, -9223372036854775809, 9223372036854775807, 10**18]
)
def test_integers_of_any_size_stay_exact(big):
    parsed = parse_json(json.dumps({"n": big, "f": 1.5}).encode())
    assert parsed == {"n": big, "f": 1.5} and type(parsed["n"]) is int


class Key(msgspec.Struct):
    id: Any = None


READER = PageReader("entries", Key, fields=("next",))


def archived(served: bytes) -> tuple[list[bytes], list[Any]]:
    """A page as the collector archives it: the object's lines, and their values read back."""
    page = READER.read(served)
    assert page.events is not None
    buffer = ObjectBuffer()
    buffer.extend(page.events.lines)
    body = buffer.finish()
    return zlib.decompress(body, 31).split(b"\n")[:-1], list(decode_object(body))


def test_each_event_is_archived_byte_for_byte_as_served():
    lines = [json.dumps(AWKWARD, ensure_ascii=False).encode(), b'{"id":"x","n":1E400,"esc":"\\u00e9"}']
    served = b'{"next":null,"entries":[' + b",".join(lines) + b"]}"
    got, values = archived(served)
    assert got == lines  # the text itself: key order, escapes, number spelling, all as served
    assert values[0] == AWKWARD and type(values[0]["big"]) is int and list(values[0]["order"]) == ["z", "a"]


# Any JSON document: integers of any size, every float a double can hold, any text (lone surrogates
# included, which JSON can carry as escapes), duplicate-free objects in any key order.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=JSON_VALUES, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 1]))
def test_parsing_agrees_with_the_standard_library_and_archives_every_value_exactly(value, ensure_ascii, indent):
    text = json.dumps({"entries": [{"v": value}]}, ensure_ascii=ensure_ascii, indent=indent)
    served = text.encode("utf-8", "surrogatepass")
    expected = json.loads(served.decode("utf-8", "surrogatepass"))
    try:
        parsed = parse_json(served)
    except ValueError:  # a raw lone surrogate is not UTF-8: the API cannot have sent it so
        assert not ensure_ascii
        return
    assert parsed == expected and json.dumps(parsed) == json.dumps(expected)  # same types, same key order
    lines, (back,) = archived(served)
    assert len(lines) == 1 and json.dumps(back) == json.dumps(expected["entries"][0])


def test_a_lone_surrogate_escape_is_archived_not_fatal():
    served = b'{"entries":[{"id":"a","text":"broken \\ud83d emoji"},{"id":"b","text":"fine"}]}'
    lines, values = archived(served)
    assert values == parse_json(served)["entries"] and len(lines) == 2


def test_a_pretty_printed_page_is_archived_one_event_per_line():
    served = json.dumps({"entries": [{"id": "a", "t": "x\ny"}, {"id": "b", "n": [1, 2]}]}, indent=2).encode()
    lines, values = archived(served)
    assert values == json.loads(served)["entries"] and lines == [b'{"id":"a","t":"x\\ny"}', b'{"id":"b","n":[1,2]}']


@pytest.mark.parametrize(
    "served",
    [b'{"entries":[{"id":"a"},5]}', b'{"entries":"many"}', b'{"next":1}', b"{}"],
)
def test_a_list_that_is_not_of_objects_gives_no_events(served):
    assert READER.read(served).events is None


@pytest.mark.parametrize("served", [b"[]", b"<html>", b'{"entries":[{"id":"\xff"}]}', b'{"entries":[{"id":1,}]}'])
def test_a_body_that_is_not_a_json_object_is_refused(served):
    with pytest.raises(ValueError):
        READER.read(served)


@pytest.mark.parametrize(
    "body", [b'{"x": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}', b'{"x": NaN, "big": 12345678901234567890123}']
)
def test_non_json_constants_are_refused(body):
    with pytest.raises(ValueError, match="not JSON"):
        parse_json(body)


def test_encoding_is_deterministic_so_rewrites_are_identical():
    def build():
        buffer = ObjectBuffer()
        buffer.extend([encode_line(AWKWARD), encode_line({"id": "x"})])
        return buffer.finish()

    assert build() == build()
    assert list(decode_object(EMPTY_GZIP)) == []
    assert encode_line({"a": "é"}) == '{"a":"é"}'.encode()


def test_keys_and_refusals(tmp_path):
    assert object_key("audit/", "slack", "2026-11-01", "1-2-p00000") == "audit/slack/dt=2026-11-01/1-2-p00000.jsonl.gz"
    archive = LocalArchive(tmp_path)
    for bad in ("/abs.jsonl.gz", "slack/../x.jsonl.gz", "slack/x.json"):
        with pytest.raises(ArchiveError):
            archive.put(bad, b"")
    archive.put("slack/dt=2026-11-01/a.jsonl.gz", EMPTY_GZIP)
    assert list(archive.keys()) == ["slack/dt=2026-11-01/a.jsonl.gz"]
    written = [p.name for p in tmp_path.rglob("*") if p.name != ".archive.lock"]
    assert written == ["slack", "dt=2026-11-01", "a.jsonl.gz"]  # no temp files


def test_s3_writes_are_conditional_even_with_a_boto3_that_predates_conditional_writes(monkeypatch):
    """The Lambda runtime's boto3 may not know ``IfMatch``/``IfNoneMatch``: the conditions go out
    as headers all the same, so a stale write is refused by S3 itself."""
    from botocore.exceptions import ParamValidationError

    from audit_collector.errors import WriteRefused

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="fenced-archive")
        archive = S3Archive("fenced-archive")
        put = archive.client.put_object

        def old_put(**kwargs):
            if {"IfMatch", "IfNoneMatch"} & set(kwargs):
                raise ParamValidationError(report="Unknown parameter in input")
            return put(**kwargs)

        monkeypatch.setattr(archive.client, "put_object", old_put)
        key = "slack/dt=2026-11-01/w-p00000.jsonl.gz"
        archive.put(key, b"first")
        with pytest.raises(WriteRefused):
            archive.put(key, b"copy")  # it exists: If-None-Match refuses
        seen = archive.version(key)
        archive.put(key, b"second", replaces=seen)
        with pytest.raises(WriteRefused):
            archive.put(key, b"stale", replaces=seen)  # someone wrote since: If-Match refuses
        assert archive.get(key) == b"second"

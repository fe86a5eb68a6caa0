"""The archive writer: encoding fidelity, naming, atomic local writes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_collector.archive import EMPTY_GZIP, LocalArchive, ObjectBuffer, decode_object, encode_line, object_key
from audit_collector.errors import ArchiveError
from audit_collector.transport import parse_json

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


def test_every_value_survives_parse_encode_decode_exactly():
    served = json.dumps({"entries": [AWKWARD]}).encode()
    parsed = parse_json(served)["entries"][0]
    buffer = ObjectBuffer()
    buffer.extend([parsed])
    (back,) = list(decode_object(buffer.finish()))
    assert back == AWKWARD and type(back["big"]) is int and list(back["order"]) == ["z", "a"]
    assert json.dumps(back) == json.dumps(AWKWARD)


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
    buffer = ObjectBuffer()
    buffer.extend(parsed["entries"])
    (back,) = list(decode_object(buffer.finish()))
    assert json.dumps(back) == json.dumps(expected["entries"][0])


def test_a_lone_surrogate_escape_is_archived_not_fatal():
    served = b'{"entries":[{"id":"a","text":"broken \\ud83d emoji"},{"id":"b","text":"fine"}]}'
    entries = parse_json(served)["entries"]
    buffer = ObjectBuffer()
    buffer.extend(entries)
    assert list(decode_object(buffer.finish())) == entries


@pytest.mark.parametrize(
    "body", [b'{"x": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}', b'{"x": NaN, "big": 12345678901234567890123}']
)
def test_non_json_constants_are_refused(body):
    with pytest.raises(ValueError, match="not JSON"):
        parse_json(body)


def test_encoding_is_deterministic_so_rewrites_are_identical():
    def build():
        buffer = ObjectBuffer()
        buffer.extend([AWKWARD, {"id": "x"}])
        return buffer.finish()

    assert build() == build()
    assert list(decode_object(EMPTY_GZIP)) == []
    assert encode_line({"a": "é"}) == '{"a":"é"}\n'.encode()


def test_keys_and_refusals(tmp_path):
    assert object_key("audit/", "slack", "2026-11-01", "1-2-p00000") == "audit/slack/dt=2026-11-01/1-2-p00000.jsonl.gz"
    archive = LocalArchive(tmp_path)
    for bad in ("/abs.jsonl.gz", "slack/../x.jsonl.gz", "slack/x.json"):
        with pytest.raises(ArchiveError):
            archive.put(bad, b"")
    archive.put("slack/dt=2026-11-01/a.jsonl.gz", EMPTY_GZIP)
    assert list(archive.keys()) == ["slack/dt=2026-11-01/a.jsonl.gz"]
    assert [p.name for p in tmp_path.rglob("*")] == ["slack", "dt=2026-11-01", "a.jsonl.gz"]  # no temp files

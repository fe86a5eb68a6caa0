"""Every page of a Parquet file, read from the file's own page headers (Thrift compact protocol).

DuckDB's ``parquet_metadata`` tells where each column chunk starts and how long it is, and how many
pages it has, but not how large each page is: the Security Lake limit ("data pages up to 1 MB") is
about each page, so the tests read the headers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Page:
    column: str
    row_group: int
    page_type: int  # 0 data, 2 dictionary, 3 data v2
    uncompressed: int
    compressed: int


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, kind: int) -> None:
        if kind in (1, 2):  # booleans live in the field header
            return
        if kind == 3:
            self.pos += 1
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.pos += 8
        elif kind == 8:
            self.pos += self.varint()
        elif kind in (9, 10):
            head = self.byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                if element in (1, 2):
                    self.pos += 1
                else:
                    self.skip(element)
        elif kind == 11:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4)
                    self.skip(types & 0x0F)
        elif kind == 12:
            self.struct(lambda field, kind: self.skip(kind))
        else:
            raise ValueError(f"unknown Thrift compact type {kind}")

    def struct(self, on_field) -> None:
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return
            delta, kind = head >> 4, head & 0x0F
            field = last + delta if delta else self.zigzag()
            last = field
            on_field(field, kind)


def page_header(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(type, uncompressed size, compressed size, header length) of the page header at ``pos``."""
    reader = _Reader(data, pos)
    values: dict[int, int] = {}

    def on_field(field: int, kind: int) -> None:
        if field in (1, 2, 3) and kind == 5:
            values[field] = reader.zigzag()
        else:
            reader.skip(kind)

    reader.struct(on_field)
    return values[1], values[2], values[3], reader.pos - pos


def pages(path: Path) -> list[Page]:
    import duckdb

    con = duckdb.connect()
    try:
        chunks = con.execute(
            "SELECT row_group_id, path_in_schema, coalesce(dictionary_page_offset, data_page_offset), "
            "total_compressed_size FROM parquet_metadata(?)",
            [str(path)],
        ).fetchall()
    finally:
        con.close()
    data = Path(path).read_bytes()
    out = []
    for row_group, column, start, length in chunks:
        pos = start
        while pos < start + length:
            kind, uncompressed, compressed, header = page_header(data, pos)
            out.append(Page(column, row_group, kind, uncompressed, compressed))
            pos += header + compressed
        assert pos == start + length, f"{column}: the pages do not add up to the column chunk"
    return out

"""The archive: object naming, gzip JSON Lines encoding, and two writers (S3, a local folder).

Layout, the same in S3 and on disk, and what the Athena tables read:

    {prefix}{provider}/dt=YYYY-MM-DD/{window}-p{part:05d}.jsonl.gz

``dt`` is the event's UTC date. Names are deterministic (window and part index, both kept in the
checkpoint), so a rerun after a crash rewrites the same names instead of adding copies. Encoding is
deterministic too (gzip without a timestamp), so a rewrite of the same events is the same bytes.

Beside the data, one manifest per closed window (``manifest.py``):

    {prefix}_manifests/{provider}/dt=YYYY-MM-DD/{window}.json

Every put sends the body's SHA-256 (``ChecksumSHA256``): S3 checks the upload against it and keeps
it, so ``verify --quick`` can compare it with the manifest without downloading, and writes to an
Object Lock bucket (which require a checksum or Content-MD5) work whatever boto3's defaults are.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from audit_collector.errors import ArchiveError, WriteRefused
from audit_collector.json_text import Line
from audit_collector.storage.keys import MARKER_FOLDER, MARKER_NAMES, is_head_key, is_manifest_key, is_meta_key

if TYPE_CHECKING:
    pass

# Athena and S3 charge per object: make objects large, but bounded so memory stays bounded too.
DEFAULT_MAX_OBJECT_BYTES = 64 * 1024 * 1024  # uncompressed JSON Lines per object

# Chosen by measurement (benchmarks/bench_libraries.py): ISA-L's deflate at level 2 costs a tenth of
# zlib's level 6 CPU for a quarter to a third more bytes (optional at run time: zlib writes the same
# format).
try:
    from isal import isal_zlib as _deflate

    _LEVEL = 2
except ImportError:  # pragma: no cover - the wheel is in the Lambda package and the dev install
    _deflate = zlib
    _LEVEL = 6


def _compressor() -> Any:
    return _deflate.compressobj(_LEVEL, _deflate.DEFLATED, 31)  # wbits 31: gzip, header mtime 0


def _gzip(data: bytes) -> bytes:
    compressor = _compressor()
    return compressor.compress(data) + compressor.flush()


# What a stale part is overwritten with when a restarted window ends with fewer parts: zero rows.
EMPTY_GZIP = _gzip(b"")


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# What a buffer learns of its events for the window's manifest: (ids, epoch seconds), one each.
Identify = Callable[[Sequence[Line]], tuple[list[Any], list[float | None]]]


class ObjectBuffer:
    """Events for one object, compressed as they arrive: memory holds compressed bytes only (and,
    with ``identify``, each event's id and time, for the manifest)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES, identify: Identify | None = None) -> None:
        self.max_bytes = max_bytes
        self._compressor = _compressor()
        self._chunks: list[bytes] = []
        self.raw_bytes = 0
        self.events = 0
        self.dt: str | None = None
        self._identify = identify
        self.ids: list[Any] = []
        self.first: float | None = None
        self.last: float | None = None

    def extend(self, lines: Sequence[Line], keys: Sequence[Any] | None = None) -> None:
        """Add events, each one line of JSON text, with one compressor call (a call per line costs a
        third more CPU). ``keys``: the page reader's parsed keys of the same events, one each, with
        the descriptor's id and time fields (spares the manifest's bookkeeping a second parse)."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        self.raw_bytes += len(data)
        self.events += len(lines)
        if self._identify is not None:
            of_keys = getattr(self._identify, "of_keys", None)
            ids, known = of_keys(keys) if keys is not None and of_keys else self._identify(lines)
            self.ids.extend(ids)
            times = [t for t in known if t is not None]
            if times:
                low, high = min(times), max(times)
                self.first = low if self.first is None else min(self.first, low)
                self.last = high if self.last is None else max(self.last, high)
        chunk = self._compressor.compress(data)
        if chunk:
            self._chunks.append(chunk)

    @property
    def full(self) -> bool:
        return self.raw_bytes >= self.max_bytes

    def __bool__(self) -> bool:
        return self.events > 0

    def finish(self) -> bytes:
        self._chunks.append(self._compressor.flush())
        return b"".join(self._chunks)


def decode_object(body: bytes) -> Iterator[dict[str, Any]]:
    """Events of one archived object, in order (for tests, the CLI and audits of the archive)."""
    data = zlib.decompress(body, 47)  # 47: gzip or zlib header, auto-detected
    for line in data.split(b"\n"):  # not splitlines(): U+2028 may stand raw inside a JSON string
        if line:
            yield json.loads(line)


class ArchiveWriter:
    """Port: put whole objects under a key, conditionally; list and read them back.

    Every write is conditional on the version the writer saw (S3's ``If-Match`` / ``If-None-Match``):
    a run that looked at a key, then lost its lease while paused, cannot overwrite what the next
    owner wrote there since. ``_put`` and ``_version`` do the I/O.
    """

    def version(self, key: str) -> str | None:
        """The object's current version (its ETag), or None if there is none."""
        try:
            return self._version(key)
        except Exception as exc:
            raise ArchiveError(f"could not read the version of {self.describe(key)}: {exc}") from exc

    def claim_marker(self, key: str, body: bytes) -> bytes:
        """Write a marker (``{prefix}_audit_collector/<known name>``) unless one is there already;
        what the key holds afterwards: ``body``, or the marker written first."""
        folder, _, name = key.rpartition("/")
        if name not in MARKER_NAMES or folder.rpartition("/")[2] != MARKER_FOLDER or ".." in key.split("/"):
            raise ArchiveError(f"refusing to write a marker under {key!r}")
        try:
            return body if self._create(key, body) else self.get(key)
        except Exception as exc:
            raise ArchiveError(f"could not read or write {self.describe(key)}: {exc}") from exc

    def _create(self, key: str, body: bytes) -> bool:
        """Write ``body`` under ``key`` only if nothing is there: True if written, False if not."""
        raise NotImplementedError

    def put(self, key: str, body: bytes, *, replaces: str | None = None) -> None:
        """Write one object, replacing version ``replaces`` (None: the key must not exist yet).
        Raises ``WriteRefused`` if the object is not what the caller saw, ``ArchiveError`` if the
        write failed; in both cases nothing was checkpointed."""
        allowed = key.endswith(".jsonl.gz") or is_manifest_key(key) or is_head_key(key) or is_meta_key(key)
        if not allowed or unsafe_key(key):
            raise ArchiveError(f"refusing to write an object under a malformed key: {key!r}")
        try:
            self._put(key, body, replaces)
        except (ArchiveError, WriteRefused):
            raise
        except Exception as exc:
            raise ArchiveError(f"could not write {self.describe(key)}: {exc}") from exc

    def _put(self, key: str, body: bytes, replaces: str | None) -> None:
        raise NotImplementedError

    def _version(self, key: str) -> str | None:
        raise NotImplementedError

    def keys(self, prefix: str = "") -> Iterable[str]:
        """Every object under ``prefix`` (whatever its name: ``verify`` must see what Athena reads)."""
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def checksum(self, key: str) -> tuple[int, str | None] | None:
        """(size, SHA-256 hex as the store keeps it, or None if it keeps none) without reading the
        body where the store allows it; None if there is no such object."""
        try:
            body = self.get(key)
        except (FileNotFoundError, KeyError):
            return None
        return len(body), sha256_hex(body)

    def describe(self, key: str = "") -> str:
        raise NotImplementedError


def refused(where: str) -> str:
    return (
        f"{where} changed since this run looked at it: another run wrote it after this one lost its "
        "lease; nothing was written"
    )


def unsafe_key(key: str) -> bool:
    return key.startswith("/") or ".." in key.split("/")

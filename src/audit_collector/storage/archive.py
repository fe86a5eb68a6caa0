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

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit_collector.errors import ArchiveError, WriteRefused
from audit_collector.evidence.heads import is_head_key
from audit_collector.json_text import Line
from audit_collector.storage.files import atomic_write

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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


def object_key(prefix: str, provider: str, dt: str, name: str) -> str:
    return f"{prefix}{provider}/dt={dt}/{name}.jsonl.gz"


# Manifests: one per closed window (and one more per sweep of it), in their own folder beside the
# providers' (never read as events).
MANIFEST_FOLDER = "_manifests"


def manifest_key(prefix: str, provider: str, dt: str, window: str, revision: int = 0) -> str:
    """The window's manifest; a sweep that adds a part to the window writes revision 1, 2, ..."""
    suffix = "" if revision == 0 else f".r{revision}"
    return f"{prefix}{MANIFEST_FOLDER}/{provider}/dt={dt}/{window}{suffix}.json"


def is_manifest_key(key: str) -> bool:
    return f"{MANIFEST_FOLDER}/" in key and key.endswith(".json") and "/dt=" in key


# The drift watch's dated objects (drift.py), the only keys under _meta/ a writer accepts:
# {prefix}_meta/{provider}/vocabulary/YYYY-MM-DD.json and .../drift/YYYY-MM-DD.json.
META_FOLDER = "_meta"
_META_KEY = re.compile(rf"(?:^|/){META_FOLDER}/[a-z0-9_]+/(?:vocabulary|drift)/\d{{4}}-\d{{2}}-\d{{2}}\.json$")


def is_meta_key(key: str) -> bool:
    return _META_KEY.search(key) is not None


def is_data_key(key: str, prefix: str, provider: str) -> bool:
    """Under a provider's ``dt=`` folders: what Athena's tables read, whatever the name."""
    rest = key[len(prefix) :] if key.startswith(prefix) else None
    return rest is not None and rest.startswith(f"{provider}/dt=") and rest.count("/") == 2 and not rest.endswith("/")


def object_window(key: str) -> str:
    """The window (or late-event pass) an object belongs to, by its name: the stem before ``-p``."""
    return key.rpartition("/")[2].partition(".")[0].rpartition("-p")[0]


def name_bounds(name: str) -> tuple[int, int] | None:
    """``start-end`` at the front of a window's (or a sweep pass's) name, where it has one."""
    start, _, rest = name.partition("-")
    end = rest.partition("-")[0].partition(".")[0]
    return (int(start), int(end)) if start.isdigit() and end.isdigit() else None


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def normalize_prefix(prefix: str | None) -> str:
    """'' stays '', 'audit' becomes 'audit/': keys never start with a slash or double one."""
    prefix = (prefix or "").strip().strip("/")
    return f"{prefix}/" if prefix else ""


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


# Small objects of the collector's own, beside the providers' folders (never read as events).
MARKER_FOLDER = "_audit_collector"
MARKER_NAMES = frozenset({"state-store.json"})


def marker_key(prefix: str, name: str) -> str:
    return f"{prefix}{MARKER_FOLDER}/{name}"


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
        if not allowed or _unsafe(key):
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


class S3Archive(ArchiveWriter):
    """Objects in an S3 bucket. The client is created lazily so a bad payload never touches AWS."""

    def __init__(self, bucket: str, *, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3  # deferred: keeps cold starts and the CLI's local mode light

            self._client = boto3.client("s3")
        return self._client

    def _put(self, key: str, body: bytes, replaces: str | None) -> None:
        condition = {"If-Match": replaces} if replaces is not None else {"If-None-Match": "*"}
        kind = "application/json" if key.endswith(".json") else "application/gzip"
        try:
            self._conditional_put(key, body, kind, condition)
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise WriteRefused(_refused(self.describe(key))) from None
            raise

    def _version(self, key: str) -> str | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]
        except Exception as exc:
            # Without s3:ListBucket, S3 answers a missing key with 403, not 404. Taking 403 for
            # "absent" is safe: the caller then has no version to replace, and writes nothing.
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied", "Forbidden"):
                return None
            raise

    def _create(self, key: str, body: bytes) -> bool:
        try:  # a conditional write: no race between two first uses, and no s3:ListBucket needed
            self._conditional_put(key, body, "application/json", {"If-None-Match": "*"})
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def _conditional_put(self, key: str, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        """A put with S3's conditional headers, added as headers (before signing) rather than as
        parameters, so a Lambda runtime whose boto3 predates ``IfMatch``/``IfNoneMatch`` sends them
        too. Thread-safe: concurrent slices share the client, each thread its own headers."""
        client = self.client
        if not getattr(client, "_audit_collector_conditions", False):
            client.meta.events.register("before-sign.s3.PutObject", _add_conditions, unique_id="audit-conditions")
            client._audit_collector_conditions = True
        _conditions.headers = headers
        try:
            client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **_checksum(body))
        finally:
            _conditions.headers = None

    def keys(self, prefix: str = "") -> Iterable[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None

    def checksum(self, key: str) -> tuple[int, str | None] | None:
        try:
            found = self.client.get_object_attributes(
                Bucket=self.bucket, Key=key, ObjectAttributes=["Checksum", "ObjectSize"]
            )
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        stored = found.get("Checksum", {}).get("ChecksumSHA256")
        return found["ObjectSize"], base64.b64decode(stored).hex() if stored else None

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


_conditions = threading.local()


def _add_conditions(request: Any, **_: Any) -> None:
    headers = getattr(_conditions, "headers", None)
    if headers:
        for name, value in headers.items():
            request.headers[name] = value


class LocalArchive(ArchiveWriter):
    """The same layout and bytes in a folder. Writes are atomic: a killed process leaves no half file."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _put(self, key: str, body: bytes, replaces: str | None) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():  # the check and the write as one step, across processes
            if _file_version(path) != replaces:
                raise WriteRefused(_refused(self.describe(key)))
            for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed writer's; none runs now
                stale.unlink(missing_ok=True)
            atomic_write(path, body)

    def _version(self, key: str) -> str | None:
        return _file_version(self.root / key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".archive.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _create(self, key: str, body: bytes) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
        atomic_write(temporary, body)
        try:
            os.link(temporary, path)  # atomic, and refused if the marker exists
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        return True

    def keys(self, prefix: str = "") -> Iterable[str]:
        """Every file under ``prefix``, walked from the deepest folder the prefix names (not the whole
        archive), less this writer's own lock and the temporary files of writes under way."""
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return []
        found = []
        for directory, _, files in os.walk(base):
            for name in files:
                if _is_temporary(name):
                    continue
                key = Path(directory, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    def get(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def describe(self, key: str = "") -> str:
        return str(self.root / key)


def _is_temporary(name: str) -> bool:
    """The lock file, and an atomic write's temporary file (``.{name}.{pid}.tmp`` / ``.new``)."""
    return name == ".archive.lock" or (name.startswith(".") and name.endswith((".tmp", ".new")))


def _unsafe(key: str) -> bool:
    return key.startswith("/") or ".." in key.split("/")


def _file_version(path: Path) -> str | None:
    """What S3 gives a single-part object as its ETag: the quoted MD5 of its bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _checksum(body: bytes) -> dict[str, str]:
    """S3 checks the upload against this and keeps it (GetObjectAttributes returns it)."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": digest}


def _refused(where: str) -> str:
    return (
        f"{where} changed since this run looked at it: another run wrote it after this one lost its "
        "lease; nothing was written"
    )

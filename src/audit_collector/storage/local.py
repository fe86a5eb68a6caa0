"""The local-folder adapter of the archive port: the same layout as S3, on disk, with atomic writes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from audit_collector.errors import WriteRefused
from audit_collector.storage.archive import ArchiveWriter, refused
from audit_collector.storage.files import atomic_write


class LocalArchive(ArchiveWriter):
    """The same layout and bytes in a folder. Writes are atomic: a killed process leaves no half file."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _put(self, key: str, body: bytes, replaces: str | None) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():  # the check and the write as one step, across processes
            if _file_version(path) != replaces:
                raise WriteRefused(refused(self.describe(key)))
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


def _file_version(path: Path) -> str | None:
    """What S3 gives a single-part object as its ETag: the quoted MD5 of its bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'

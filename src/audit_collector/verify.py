"""``verify``: re-read the archive and prove it against its manifests, per provider.

Findings, each with the key and the range it concerns:

- ``gap``: instants between the first collected one and the watermark that no manifest covers (and
  that no unfinished job still owns);
- ``missing``: an object a manifest lists is not there;
- ``altered``: an object's bytes (SHA-256, size) or its events (count, id digest) differ from its
  manifest, or a manifest is not a readable manifest;
- ``extra``: a data object no manifest lists (and no open window is writing);
- ``duplicate``: an event id in more than one object (or twice in one);
- ``chain``: a manifest whose ``prev`` is not the SHA-256 of the manifest before it, a missing link,
  a fork, or a checkpoint whose chain head is not the last manifest.

``quick`` compares S3's stored checksums (GetObjectAttributes) with the manifests instead of
downloading objects: no id counts, digests or duplicates then.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec

from . import manifest as manifests
from .archive import MANIFEST_FOLDER, ArchiveWriter
from .collector.jobs import Job, jobs_of, merge, subtract
from .dates import iso
from .descriptor import Descriptor

KINDS = ("gap", "missing", "altered", "extra", "duplicate", "chain")


@dataclass(frozen=True)
class Finding:
    provider: str
    kind: str
    key: str | None
    start: str | None  # ISO 8601 UTC, the range concerned (a window's, or a gap)
    end: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProviderReport:
    provider: str
    manifests: int = 0
    objects: int = 0
    events: int = 0
    bytes: int = 0
    first: str | None = None  # the first instant a manifest covers
    watermark: str | None = None  # where the check ends
    chain_head: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, kind: str, key: str | None, detail: str, span: tuple[float, float] | None = None) -> None:
        start, end = (iso(span[0]), iso(span[1])) if span else (None, None)
        self.findings.append(Finding(self.provider, kind, key, start, end, detail))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["findings"] = [f.as_dict() for f in self.findings]
        out["counts"] = {kind: sum(f.kind == kind for f in self.findings) for kind in KINDS}
        return out


@dataclass
class Report:
    providers: list[ProviderReport]
    quick: bool

    @property
    def clean(self) -> bool:
        return not any(p.findings for p in self.providers)

    def as_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "quick": self.quick, "providers": [p.as_dict() for p in self.providers]}


Tick = Callable[[int], None]  # objects checked since the last call


def verify_archive(
    archive: ArchiveWriter,
    prefix: str,
    descriptors: Iterable[Descriptor],
    *,
    checkpoints: dict[str, dict[str, Any]] | None = None,
    start: float | None = None,
    end: float | None = None,
    quick: bool = False,
    progress: Callable[[int], Tick] | None = None,
) -> Report:
    """Check each provider's part of the archive (``start``/``end``: epoch seconds, half-open).
    ``checkpoints``: each provider's checkpoint document, when the state store is at hand (its
    watermark ends the gap check, its open windows are not extra, its chain head is checked)."""
    reports = []
    for descriptor in descriptors:
        checkpoint = (checkpoints or {}).get(descriptor.name)
        reports.append(_Verifier(archive, prefix, descriptor, checkpoint, start, end, quick, progress).run())
    return Report(reports, quick)


class _Verifier:
    def __init__(
        self,
        archive: ArchiveWriter,
        prefix: str,
        descriptor: Descriptor,
        checkpoint: dict[str, Any] | None,
        start: float | None,
        end: float | None,
        quick: bool,
        progress: Callable[[int], Tick] | None,
    ) -> None:
        self.archive, self.prefix, self.descriptor = archive, prefix, descriptor
        self.checkpoint, self.quick, self.progress = checkpoint, quick, progress
        self.unit = descriptor.units_per_second
        self.start = None if start is None else descriptor.to_units(start)
        self.end = None if end is None else descriptor.to_units(end)
        self.report = ProviderReport(descriptor.name)
        self._decoder = msgspec.json.Decoder(
            list[msgspec.defstruct("Key", [(descriptor.id_field, Any, None)])]  # type: ignore[misc]
        )

    # ------------------------------------------------------------------ the run

    def run(self) -> ProviderReport:
        found = self._read_manifests()
        chained = sorted((m for m in found if m[1] is not None), key=lambda m: (m[1]["seq"], m[0]))
        self._check_chain(chained)
        latest: dict[str, tuple[str, dict[str, Any], str]] = {}  # a window's last revision (a sweep's)
        for m in chained:
            if self._overlaps(m[1]["range_start"], m[1]["range_end"]):
                window = m[1]["window_id"]
                if window not in latest or latest[window][1]["revision"] < m[1]["revision"]:
                    latest[window] = m
        in_range = sorted(latest.values(), key=lambda m: m[1]["range_start"])
        self.report.manifests = len(in_range)
        listed = self._check_objects(in_range)
        self._check_extra(listed)
        self._check_gaps(in_range)
        return self.report

    def _span(self, start: int, end: int) -> tuple[float, float]:
        return start / self.unit, end / self.unit

    def _overlaps(self, start: int, end: int) -> bool:
        return (self.end is None or start < self.end) and (self.start is None or end > self.start)

    def _date_in_range(self, key: str) -> bool:
        """A key's ``dt`` may hold something in range (a day of slack before ``start``: a window
        is filed under the date it starts on)."""
        dt = key.split("/dt=", 1)[1][:10] if "/dt=" in key else None
        if dt is None:
            return True
        if self.start is not None and dt < iso(self.start / self.unit - 86400)[:10]:
            return False
        return not (self.end is not None and dt > iso(self.end / self.unit)[:10])

    # ------------------------------------------------------------------ manifests and the chain

    def _read_manifests(self) -> list[tuple[str, dict[str, Any] | None, str]]:
        """(key, manifest or None if unreadable, SHA-256 of its bytes)."""
        folder = f"{self.prefix}{MANIFEST_FOLDER}/{self.descriptor.name}/"
        keys = [k for k in self.archive.keys(folder) if k.endswith(".json") and self._date_in_range(k)]
        out = []
        for key in keys:
            try:
                body = self.archive.get(key)
            except KeyError:
                continue  # deleted while listed
            sha = hashlib.sha256(body).hexdigest()
            try:
                document = json.loads(body)
                _check_manifest(document, self.descriptor.name)
            except (ValueError, KeyError, TypeError) as exc:
                self.report.add("altered", key, f"not a readable manifest of {self.descriptor.name}: {exc}")
                out.append((key, None, sha))
                continue
            out.append((key, document, sha))
        return out

    def _check_chain(self, chained: list[tuple[str, dict[str, Any] | None, str]]) -> None:
        """Consecutive ``seq``, each ``prev`` the SHA-256 of the one before, one manifest per
        ``seq``, and the checkpoint's head on the last (when the checkpoint is at hand)."""
        report = self.report
        by_seq: dict[int, list[tuple[str, dict[str, Any], str]]] = {}
        for key, document, sha in chained:
            by_seq.setdefault(document["seq"], []).append((key, document, sha))
        for seq, group in sorted(by_seq.items()):
            if len(group) > 1:
                keys = ", ".join(k for k, _, _ in group)
                report.add("chain", group[0][0], f"{len(group)} manifests claim place {seq} in the chain: {keys}")
        seqs = sorted(by_seq)
        if not seqs:
            head = (self.checkpoint or {}).get("chain")
            if head:
                report.add(
                    "chain", head.get("key"), f"the checkpoint's chain has {head.get('count')} manifests; none found"
                )
            return
        if seqs[0] != 1 and self.start is None:  # from a date on, the chain is checked from there
            key, document, _ = by_seq[seqs[0]][0]
            report.add(
                "chain",
                key,
                f"manifests 1 to {seqs[0] - 1} of the chain are missing (the first found is {seqs[0]})",
                self._span(document["range_start"], document["range_start"]),
            )
        elif seqs[0] == 1 and by_seq[1][0][1]["prev"] is not None:
            report.add("chain", by_seq[1][0][0], "the first manifest names a predecessor")
        for before, after in itertools.pairwise(seqs):
            b_key, b_doc, b_sha = by_seq[before][0]
            a_key, a_doc, _ = by_seq[after][0]
            if after != before + 1:
                missing = f"{before + 1}" if after == before + 2 else f"{before + 1} to {after - 1}"
                report.add(
                    "chain",
                    a_key,
                    f"manifest(s) {missing} of the chain are missing (deleted), between {b_key} ({before}) and "
                    f"{a_key} ({after})",
                )
            elif a_doc["prev"] != b_sha:
                report.add(
                    "chain",
                    a_key,
                    f"its prev ({str(a_doc['prev'])[:12]}…) is not the SHA-256 of {b_key} ({b_sha[:12]}…): "
                    "that manifest was edited or replaced",
                    self._span(b_doc["range_start"], b_doc["range_end"]),
                )
        last_key, last_doc, last_sha = by_seq[seqs[-1]][0]
        report.chain_head = last_sha
        head = (self.checkpoint or {}).get("chain")
        if head is not None and self.end is None and (head.get("count") != seqs[-1] or head.get("head") != last_sha):
            if head.get("count", 0) > seqs[-1]:
                detail = (
                    f"the checkpoint's chain has {head.get('count')} manifests, the archive {seqs[-1]}: "
                    "the last were deleted"
                )
            else:
                detail = f"the last manifest ({last_key}) is not the one the checkpoint's chain head names (edited?)"
            report.add(
                "chain",
                head.get("key") or last_key,
                detail,
                self._span(last_doc["range_start"], last_doc["range_end"]),
            )

    # ------------------------------------------------------------------ objects

    def _check_objects(self, in_range: list[tuple[str, dict[str, Any], str]]) -> set[str]:
        """Each object every manifest lists: there, and as listed. Returns the keys listed."""
        report = self.report
        listed: set[str] = set()
        seen_ids: dict[Any, str] = {}
        tick = self.progress(sum(len(m[1]["objects"]) for m in in_range)) if self.progress else None
        for manifest_key, document, _ in in_range:
            span = self._span(document["range_start"], document["range_end"])
            for entry in document["objects"]:
                key = entry["key"]
                listed.add(key)
                report.objects += 1
                self._check_object(manifest_key, entry, span, seen_ids)
                if tick:
                    tick(1)
        return listed

    def _check_object(self, manifest_key: str, entry: dict[str, Any], span, seen_ids: dict[Any, str]) -> None:
        report, key = self.report, entry["key"]
        if self.quick:
            stored = self.archive.checksum(key)
            if stored is None:
                report.add("missing", key, f"listed in {manifest_key}, not in the archive", span)
                return
            size, sha = stored
            if sha is not None:
                report.bytes += size
                report.events += entry["events"]
                if size != entry["bytes"] or sha != entry["sha256"]:
                    report.add("altered", key, _altered(entry, size, sha), span)
                return  # no stored checksum (written before checksums were sent): read it instead
        try:
            body = self.archive.get(key)
        except KeyError:
            report.add("missing", key, f"listed in {manifest_key}, not in the archive", span)
            return
        report.bytes += len(body)
        sha = hashlib.sha256(body).hexdigest()
        problems = [_altered(entry, len(body), sha)] if len(body) != entry["bytes"] or sha != entry["sha256"] else []
        try:
            ids = self._ids(body)
        except (zlib.error, ValueError, msgspec.DecodeError) as exc:
            report.add("altered", key, "; ".join([*problems, f"not gzip JSON Lines any more: {exc}"]), span)
            return
        report.events += len(ids)
        digest = manifests.digest_hex(manifests.ids_digest(ids))
        if len(ids) != entry["events"] or digest != entry["ids_digest"]:
            problems.append(
                f"holds {len(ids)} events (id digest {digest[:12]}…), its manifest says {entry['events']} "
                f"({entry['ids_digest'][:12]}…)"
            )
        if problems:
            report.add("altered", key, "; ".join(problems), span)
        here: set[Any] = set()
        for event_id in map(_hashable, ids):
            if event_id in here:
                report.add("duplicate", key, f"event {event_id!r} is in it twice", span)
            elif event_id in seen_ids:
                report.add("duplicate", key, f"event {event_id!r} is also in {seen_ids[event_id]}", span)
            here.add(event_id)
        for event_id in here:
            seen_ids.setdefault(event_id, key)

    def _ids(self, body: bytes) -> list[Any]:
        data = zlib.decompress(body, 47)
        lines = [line for line in data.split(b"\n") if line]
        if not lines:
            return []
        return [getattr(k, self.descriptor.id_field) for k in self._decoder.decode(b"[" + b",".join(lines) + b"]")]

    def _check_extra(self, listed: set[str]) -> None:
        """Data objects no manifest lists, unless an open window (the checkpoint's) is writing them."""
        open_windows = {
            self.descriptor.window_type.from_dict(job.window).id
            for job in jobs_of(self.checkpoint or {}).values()
            if job.window is not None
        }
        for key in self.archive.keys(f"{self.prefix}{self.descriptor.name}/"):
            if key in listed or not key.endswith(".jsonl.gz") or not self._date_in_range(key):
                continue
            window = key.rpartition("/")[2].removesuffix(".jsonl.gz").rpartition("-p")[0]
            if window in open_windows:
                continue
            if self.start is not None or self.end is not None:
                bounds = _window_bounds(window)
                if bounds is not None and not self._overlaps(*bounds):
                    continue
            self.report.add("extra", key, "in the archive, in no manifest")

    # ------------------------------------------------------------------ gaps

    def _check_gaps(self, in_range: list[tuple[str, dict[str, Any], str]]) -> None:
        """Instants from the first covered one to the watermark that no manifest covers and no
        unfinished job still owns (a backfill under way, the live job's open end)."""
        report = self.report
        covered = merge([[m[1]["range_start"], m[1]["range_end"]] for m in in_range])
        live = jobs_of(self.checkpoint or {}).get("live")
        if covered:
            first = covered[0][0]
        elif live is not None and live.watermark is not None and self.start is not None:
            first = self.start  # nothing in range at all, yet the live job is past it
        else:
            return
        last = (
            live.watermark if live is not None and live.watermark is not None else covered[-1][1] if covered else first
        )
        if self.start is not None:
            first = max(first, self.start)
        if self.end is not None:
            last = min(last, self.end)
        report.first, report.watermark = iso(first / self.unit), iso(last / self.unit)
        if last <= first:
            return
        pending = [r for job in jobs_of(self.checkpoint or {}).values() for r in _pending(job)]
        for start, end in subtract([[first, last]], covered + pending):
            report.add("gap", None, "no manifest covers this range", self._span(start, end))


def _pending(job: Job) -> list[list[int]]:
    """What an unfinished job still owns: its ranges from its watermark on."""
    if job.watermark is None:
        return [list(r) for r in job.ranges]
    return [r if r[1] is not None else [r[0], 1 << 62] for r in subtract(job.ranges, [[0, job.watermark]])]


def _window_bounds(window: str) -> tuple[int, int] | None:
    start, _, end = window.partition("-")
    return (int(start), int(end)) if start.isdigit() and end.isdigit() else None


def _altered(entry: dict[str, Any], size: int, sha: str) -> str:
    return (
        f"{size} bytes, SHA-256 {sha[:12]}…; its manifest says {entry['bytes']} bytes, SHA-256 {entry['sha256'][:12]}…"
    )


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _check_manifest(document: Any, provider: str) -> None:
    if not isinstance(document, dict) or document.get("format") != manifests.FORMAT:
        raise ValueError("unknown format")
    if document["provider"] != provider:
        raise ValueError(f"it names provider {document['provider']!r}")
    int(document["seq"])
    if not (isinstance(document["range_start"], int) and isinstance(document["range_end"], int)):
        raise ValueError("its range is not two integers")
    for entry in document["objects"]:
        for name in ("key", "bytes", "events", "sha256", "ids_digest"):
            entry[name]

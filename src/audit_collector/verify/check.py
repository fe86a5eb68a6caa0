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
  a fork, a checkpoint whose chain head is not the last manifest, or a manifest a signed head names
  that is gone or not as signed (``verify_chain.py``);
- ``superseded`` (fails nothing): a manifest that lost its place in the chain to another, written by
  a run that died before committing it (archives written before manifests were named in the
  checkpoint first).

Every object under a provider's ``dt=`` folders is checked, whatever its name (Athena reads them
all), and every manifest whose range overlaps the range asked, whatever day it is filed under.
With a public key (``checker``), the signed heads prove the chain from the bucket alone, and stand
in for the checkpoint where there is none: their watermark ends the gap check, the windows and
passes they say are under way are not extra, nor is the live job's next window (named as starting
exactly at the newest head's watermark, or at the end of a live window committed since).

``quick`` compares S3's stored checksums (GetObjectAttributes) with the manifests instead of
downloading objects: no id counts, digests or duplicates then.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from audit_collector.collector.jobs import LIVE, jobs_of, merge, subtract
from audit_collector.collector.provider import Descriptor
from audit_collector.collector.queue import pass_id
from audit_collector.dates import iso
from audit_collector.evidence import manifest as manifests
from audit_collector.evidence.signing import Checker
from audit_collector.storage.archive import ArchiveWriter
from audit_collector.storage.keys import MANIFEST_FOLDER, is_data_key, is_manifest_key, name_bounds, object_window
from audit_collector.verify.chain import Found, Heads, check_chain, read_heads
from audit_collector.verify.report import ProviderReport, Report

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
    checker: Checker | None = None,
) -> Report:
    """Check each provider's part of the archive (``start``/``end``: epoch seconds, half-open).
    ``checkpoints``: each provider's checkpoint document, when the state store is at hand (its
    watermark ends the gap check, its open windows are not extra, its chain head is checked).
    ``checker``: the public key (or KMS) the chain's heads must be signed with."""
    reports = []
    for descriptor in descriptors:
        checkpoint = (checkpoints or {}).get(descriptor.name)
        verifier = _Verifier(archive, prefix, descriptor, checkpoint, start, end, quick, progress)
        reports.append(verifier.run(checker))
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
        self._signed = Heads()  # the signed heads read (``run``)
        self._found: list[Found] = []  # the chain's manifests (none superseded)
        self._decoder = msgspec.json.Decoder(
            list[msgspec.defstruct("Key", [(descriptor.id_field, Any, None)])]  # type: ignore[misc]
        )

    # ------------------------------------------------------------------ the run

    def run(self, checker: Checker | None = None) -> ProviderReport:
        signed = read_heads(self, checker)
        named = {link[0] for link in signed.links.values()}
        for name in ("chain", "pending"):  # the checkpoint's head and the manifest being written
            named.add(((self.checkpoint or {}).get(name) or {}).get("key"))
        found = [m for m in self._read_manifests(named) if m[1] is not None]
        found.sort(key=lambda m: (m[1]["seq"], m[0]))
        superseded = check_chain(self, found, signed, checker_given=checker is not None)
        self._signed = signed
        self._found = [m for m in found if m[0] not in superseded]
        latest: dict[str, Found] = {}  # a window's last revision (sweeps before passes had manifests)
        for m in found:
            if m[0] not in superseded and self._overlaps(m[1]["range_start"], m[1]["range_end"]):
                window = m[1]["window_id"]
                if window not in latest or latest[window][1]["revision"] < m[1]["revision"]:
                    latest[window] = m
        in_range = sorted(latest.values(), key=lambda m: m[1]["range_start"])
        self.report.manifests = len(in_range)
        lost = [m for m in found if m[0] in superseded and self._overlaps(m[1]["range_start"], m[1]["range_end"])]
        listed = self._check_objects(in_range + lost)
        chained = {o["key"] for m in found if m[0] not in superseded for o in m[1]["objects"]}
        for key, document, _ in lost:  # a manifest outside the chain may not bring events of its own
            own = [o["key"] for o in document["objects"] if o["events"] and o["key"] not in chained]
            if own:
                self.report.add(
                    "chain",
                    key,
                    f"it is outside the chain, yet lists {len(own)} object(s) no manifest of the chain lists "
                    f"(e.g. {own[0]}): Athena reads their events",
                    self.span(document["range_start"], document["range_end"]),
                )
        listed |= chained  # listed by a window just outside the range
        self._check_extra(listed)
        self._check_gaps(in_range)
        return self.report

    def span(self, start: int, end: int) -> tuple[float, float]:
        return start / self.unit, end / self.unit

    def _overlaps(self, start: int, end: int) -> bool:
        return (self.end is None or start < self.end) and (self.start is None or end > self.start)

    def day_before_start(self) -> str | None:
        return None if self.start is None else iso(self.start / self.unit - 86400)[:10]

    def key_in_range(self, key: str) -> bool:
        """Whether a manifest's (or an object's) window, by its name, may overlap the range asked
        (a name without bounds may: it is read)."""
        bounds = name_bounds(key.rpartition("/")[2].partition(".")[0] if key.endswith(".json") else object_window(key))
        if bounds is None or (self.start is None and self.end is None):
            return True
        return (self.end is None or bounds[0] < self.end) and (self.start is None or bounds[1] >= self.start)

    def _date_in_range(self, key: str) -> bool:
        """A data object's ``dt`` is in the range asked (its events are of that date)."""
        dt = key.split("/dt=", 1)[1][:10] if "/dt=" in key else None
        if dt is None:
            return True
        if self.start is not None and dt < iso(self.start / self.unit)[:10]:
            return False
        return not (self.end is not None and dt > iso((self.end - 1) / self.unit)[:10])

    # ------------------------------------------------------------------ manifests

    def _read_manifests(self, named: set[str]) -> list[tuple[str, dict[str, Any] | None, str]]:
        """(key, manifest or None if unreadable, SHA-256 of its bytes): every manifest whose window
        may overlap the range (by its name), and every one a signed head read names."""
        folder = f"{self.prefix}{MANIFEST_FOLDER}/{self.descriptor.name}/"
        keys = [k for k in self.archive.keys(folder) if is_manifest_key(k) and (k in named or self.key_in_range(k))]
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
            totals = _totals_problem(document)
            if totals:
                self.report.add("altered", key, totals, self.span(document["range_start"], document["range_end"]))
            out.append((key, document, sha))
        return out

    # ------------------------------------------------------------------ objects

    def _check_objects(self, in_range: list[tuple[str, dict[str, Any], str]]) -> set[str]:
        """Each object every manifest lists: there, and as listed. Returns the keys listed."""
        report = self.report
        listed: set[str] = set()
        seen_ids: dict[Any, str] = {}
        tick = self.progress(sum(len(m[1]["objects"]) for m in in_range)) if self.progress else None
        for manifest_key, document, _ in in_range:
            span = self.span(document["range_start"], document["range_end"])
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
        """Objects under the provider's ``dt=`` folders no manifest lists, unless a window or pass
        under way is writing them: the checkpoint's; or else what the heads at the newest signed
        place name, and the live job's next window (``_live_next``)."""
        writing: set[str] = set()
        live_next: set[int] = set()
        head = self._signed.latest
        if self.checkpoint is None and head is not None:
            writing = set(self._signed.writing.get(head["seq"], ()))
            live_next = self._live_next(head["seq"])
        for job in jobs_of(self.checkpoint or {}).values():
            if job.window is not None:
                writing.add(self.descriptor.window_type.from_dict(job.window).id)
        for entry in (self.checkpoint or {}).get("sweep_queue") or []:
            if "pass" in entry:
                writing.add(pass_id(entry, entry["pass"]["age"]))
        name = self.descriptor.name
        for key in self.archive.keys(f"{self.prefix}{name}/dt="):
            if key in listed or not is_data_key(key, self.prefix, name) or not self._date_in_range(key):
                continue
            window = object_window(key)
            bounds = name_bounds(window)
            if window in writing or (
                bounds is not None and bounds[0] in live_next and _name_fits_date(key, window, self.unit)
            ):
                continue
            limited = self.start is not None or self.end is not None
            if limited and not self.key_in_range(key) and _name_fits_date(key, window, self.unit):
                continue  # a window out of the range asked (a name that fits its dt)

            self.report.add("extra", key, "in the archive (Athena reads it), in no manifest")

    def _live_next(self, seq: int) -> set[int]:
        """Where a live window a run died in can begin, without a checkpoint: the watermark signed at
        place ``seq`` (the newest), or the end of a live window committed since (a catch-up closes
        several). A live window is not announced in a head before its first part (that would double
        the heads); this lets its parts, and only an object named as exactly such a window, wait
        for the next head."""
        starts = set(self._signed.watermarks.get(seq, ()))
        starts |= {m[1]["range_end"] for m in self._found if m[1]["seq"] > seq and m[1].get("job") == LIVE}
        return starts

    # ------------------------------------------------------------------ gaps

    def _check_gaps(self, in_range: list[tuple[str, dict[str, Any], str]]) -> None:
        """Instants from the first covered one to the watermark that no manifest covers and no
        unfinished job still owns (a backfill under way, the live job's open end)."""
        report = self.report
        covered = merge([[m[1]["range_start"], m[1]["range_end"]] for m in in_range])
        signed = self._signed.latest if self.checkpoint is None else None
        live = jobs_of(self.checkpoint or {}).get("live")
        watermark = live.watermark if live is not None else (signed or {}).get("watermark")
        if covered:
            first = covered[0][0]
        elif watermark is not None and self.start is not None:
            first = self.start  # nothing in range at all, yet the live job is past it
        else:
            return
        last = watermark if watermark is not None else covered[-1][1] if covered else first
        if self.start is not None:
            first = max(first, self.start)
        if self.end is not None:
            last = min(last, self.end)
        report.first, report.watermark = iso(first / self.unit), iso(last / self.unit)
        if last <= first:
            return
        if signed is not None:
            owned = [list(r) for r in signed.get("open", [])]
        else:
            owned = [r for job in jobs_of(self.checkpoint or {}).values() for r in job.still_owned()]
        pending = [[r[0], r[1] if r[1] is not None else 1 << 62] for r in owned]
        for start, end in subtract([[first, last]], covered + pending):
            report.add("gap", None, "no manifest covers this range", self.span(start, end))


def _name_fits_date(key: str, window: str, unit: int) -> bool:
    """Whether an object's ``dt`` lies within the dates its window's name spans (a name that says
    another time than its folder is not the collector's)."""
    bounds = name_bounds(window)
    dt = key.split("/dt=", 1)[1][:10] if "/dt=" in key else None
    if bounds is None or dt is None:
        return True
    return iso(bounds[0] / unit)[:10] <= dt <= iso(bounds[1] / unit)[:10]


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
    document["events"], document["ids_digest"], document["window_id"]


def _totals_problem(document: dict[str, Any]) -> str | None:
    """A manifest's own totals must be its objects' sums."""
    objects = document["objects"]
    events = sum(o["events"] for o in objects)
    digest = manifests.add_digests(*(o["ids_digest"] for o in objects)) if objects else manifests.digest_hex(0)
    if events != document["events"] or digest != document["ids_digest"]:
        return (
            f"its totals ({document['events']} events, id digest {str(document['ids_digest'])[:12]}…) are not its "
            f"objects' ({events}, {digest[:12]}…)"
        )
    return None

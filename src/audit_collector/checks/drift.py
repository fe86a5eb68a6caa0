"""The drift watch: new or removed audit actions, object types and event types, once a day.

Per provider, the first collection run of each UTC day reads the provider's vocabulary
(``Descriptor.vocabulary``: Slack publishes its object types and action names at ``/schemas`` and
``/actions``; Asana publishes none, so the event types seen in yesterday's archived objects stand in,
added to those seen before) and compares it with the last snapshot:

    {prefix}_meta/{provider}/vocabulary/YYYY-MM-DD.json   the day's snapshot (its existence: done today)
    {prefix}_meta/{provider}/drift/YYYY-MM-DD.json        what was added and removed, when anything was

Each change is a log line and the ``SchemaDrift`` metric (the number of names added or removed).
Events are archived verbatim whatever their action or fields, so drift never loses data: the watch
tells users a detection may need a new name before it misses one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from audit_collector.dates import utc_date
from audit_collector.emf import metric_line
from audit_collector.storage.archive import ArchiveWriter, decode_object
from audit_collector.storage.keys import META_FOLDER

log = logging.getLogger(__name__)

DRIFT_METRIC = "SchemaDrift"
LOOK_BACK_DAYS = 31  # how far back the last snapshot is looked for


@dataclass(frozen=True)
class Vocabulary:
    """Names by kind ("actions", "schemas", "event_types"). ``complete``: the API published the
    whole list, so a name missing from it was removed; otherwise names are only ever added."""

    kinds: dict[str, set[str]]
    complete: bool = True


@dataclass
class DriftReport:
    provider: str
    day: str
    status: str  # "done today", "baseline", "unchanged", "drift"
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    previous: str | None = None  # the snapshot compared with

    @property
    def changes(self) -> int:
        return sum(len(v) for v in self.added.values()) + sum(len(v) for v in self.removed.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "day": self.day,
            "status": self.status,
            "added": self.added,
            "removed": self.removed,
            "previous": self.previous,
            "changes": self.changes,
        }


def meta_key(prefix: str, provider: str, kind: str, day: str) -> str:
    """Where the watch keeps a day's snapshot or drift report (``archive.is_meta_key`` accepts it)."""
    return f"{prefix}{META_FOLDER}/{provider}/{kind}/{day}.json"


def archived_events(archive: ArchiveWriter, prefix: str, provider: str, day: str) -> Iterator[dict[str, Any]]:
    """The events archived under one day's partition (what a data-derived vocabulary reads)."""
    for key in archive.keys(f"{prefix}{provider}/dt={day}/"):
        if key.endswith(".jsonl.gz"):
            yield from decode_object(archive.get(key))


def watch(
    provider: str,
    vocabulary: Callable[[Callable[[], Iterable[dict[str, Any]]]], Vocabulary],
    archive: ArchiveWriter,
    prefix: str,
    now: float,
) -> DriftReport:
    """At most once a UTC day: the vocabulary against the last snapshot; the snapshot, the drift
    object and the log line and metric when something changed. Raises what reading or writing
    raised (nothing is recorded then, so the next run tries again)."""
    day = utc_date(now)
    today = meta_key(prefix, provider, "vocabulary", day)
    if archive.version(today) is not None:
        return DriftReport(provider, day, "done today")
    previous_key, previous = _last_snapshot(archive, prefix, provider, now)
    current = vocabulary(lambda: archived_events(archive, prefix, provider, utc_date(now - 86400)))
    kinds = {kind: set(names) for kind, names in current.kinds.items()}
    if not current.complete and previous:  # seen names accumulate: absence is not removal
        for kind, names in previous.items():
            kinds.setdefault(kind, set()).update(names)
    report = DriftReport(provider, day, "baseline" if previous is None else "unchanged", previous=previous_key)
    if previous is not None:
        for kind in sorted(set(kinds) | set(previous)):
            added = sorted(kinds.get(kind, set()) - set(previous.get(kind, [])))
            removed = sorted(set(previous.get(kind, [])) - kinds.get(kind, set())) if current.complete else []
            if added:
                report.added[kind] = added
            if removed:
                report.removed[kind] = removed
        if report.changes:
            report.status = "drift"
            body = json.dumps(report.as_dict(), indent=1, sort_keys=True).encode() + b"\n"
            _put(archive, meta_key(prefix, provider, "drift", day), body)
    snapshot = {"provider": provider, "day": day, "complete": current.complete}
    snapshot["kinds"] = {kind: sorted(names) for kind, names in sorted(kinds.items())}
    _put(archive, today, json.dumps(snapshot, indent=1, sort_keys=True).encode() + b"\n")
    _emit(report, now)
    return report


def _put(archive: ArchiveWriter, key: str, body: bytes) -> None:
    archive.put(key, body, replaces=archive.version(key))  # a rerun after a crash replaces its own


def _last_snapshot(
    archive: ArchiveWriter, prefix: str, provider: str, now: float
) -> tuple[str | None, dict[str, list[str]] | None]:
    for days in range(1, LOOK_BACK_DAYS + 1):
        key = meta_key(prefix, provider, "vocabulary", utc_date(now - days * 86400))
        if archive.version(key) is not None:
            return key, json.loads(archive.get(key))["kinds"]
    return None, None


def _emit(report: DriftReport, now: float) -> None:
    if report.status == "drift":
        added = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in report.added.items())
        removed = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in report.removed.items())
        log.warning(
            "%s schema drift since %s: added %s; removed %s",
            report.provider,
            report.previous,
            added or "nothing",
            removed or "nothing",
        )
    elif report.status == "baseline":
        log.info("%s drift watch: first snapshot; later days are compared with it", report.provider)
    print(
        metric_line(
            DRIFT_METRIC,
            report.changes,
            now,
            [["service", "provider"]],
            service="audit-collector",
            provider=report.provider,
        )
    )

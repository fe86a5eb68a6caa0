"""How a late-event pass reads its stretch: through a ``SweepContext``, the ``WindowContext`` a source
sees during a pass, which keeps only events no object of the stretch holds (``LateBuffer``), writes
them as the pass's parts, saves progress in the pass's queue entry, and paces the sweep at its share.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from audit_collector.collector.commit import announce
from audit_collector.collector.jobs import Job
from audit_collector.collector.queue import pass_id, save_entry
from audit_collector.collector.result import SweepReport, lateness_bucket
from audit_collector.collector.settings import Budget
from audit_collector.evidence import manifest as manifests
from audit_collector.storage.archive import ObjectBuffer
from audit_collector.storage.keys import object_key

if TYPE_CHECKING:
    from audit_collector.collector.provider import Window
    from audit_collector.collector.run import Run
    from audit_collector.json_text import Line


class Turn(Budget):
    """The run's sweep budget, for at most ``pages`` pages (then the next pass's turn)."""

    def __init__(self, budget: Budget, pages: int) -> None:
        super().__init__(
            budget.clock, 0, reserve_seconds=budget.reserve_seconds, request_seconds=budget.request_seconds
        )
        self._budget, self.pages, self.used, self.exhausted = budget, pages, 0, False
        self.deadline = budget.deadline

    def allows(self, seconds: float = 0.0) -> bool:
        return not self.exhausted and self.used < self.pages and self._budget.allows(seconds)


class SweepContext:
    """What a source collects a stretch through when a pass re-reads it: the calls a
    ``WindowContext`` offers; only events no object of the stretch holds are kept, written as the
    pass's parts, and the pass's progress is saved in its queue entry."""

    def __init__(
        self,
        run: Run,
        entry: dict[str, Any],
        state: dict[str, Any],
        job: Job,
        turn: Turn,
        archived: set[Any],
        report: SweepReport,
    ) -> None:
        self._run, self._entry, self._state, self.job, self._report = run, entry, state, job, report
        self._name = pass_id(entry, state["age"])
        self.settings = run.settings
        self.budget = turn
        self.page_limit: int = run.settings.page_limit or run.descriptor.largest_page
        self.archived = archived
        self.calls = 0
        self._last_call = run.clock.monotonic()
        descriptor = run.descriptor
        self._identify = manifests.identifier(
            descriptor.id_field, descriptor.time_field, descriptor.event_seconds, every_time=True
        )

    @property
    def saved(self) -> bool:
        return self.job.window is not None

    def new_buffer(self) -> ObjectBuffer:
        return LateBuffer(self.settings.max_object_bytes, self._identify, self.archived)

    def key(self, dt: str, window: Window, part: int) -> str:
        base = self._state.get("base", 0)
        return object_key(self._run.prefix, self._run.descriptor.name, dt, f"{self._name}-p{base + part:05d}")

    def write(self, dt: str, window: Window, part: int, buffer: ObjectBuffer) -> None:
        if self.job.window is None:
            raise RuntimeError("a window is saved before its first object is written")
        assert isinstance(buffer, LateBuffer)
        key = self.key(dt, window, part)
        announce(self._run, self.job, self._name)
        body = self._run.put(key, buffer)
        self.job.record_part(manifests.part_record(key, body, buffer.events, buffer.ids, buffer.first, buffer.last))
        settle = self.settings.settle_seconds
        for _, _, when in buffer.kept:  # at least: it had not arrived when its stretch began to close
            if when is not None:
                self._report.lateness[lateness_bucket(max(self._entry["first"] - when, settle))] += 1
        self._report.late_events += buffer.events

    def blank(self, dt: str, window: Window, part: int) -> None:
        key = self.key(dt, window, part)
        announce(self._run, self.job, self._name)
        body = self._run.put(key, None)
        self.job.record_part(manifests.part_record(key, body, 0, [], None, None))

    def save(self, window: Window) -> None:
        self.job.window = window.to_dict()
        self._persist()

    def close(self, watermark: int) -> None:
        """One planned window of the stretch is read whole; the next (if any) numbers its parts on."""
        self.job.watermark, self.job.window = watermark, None
        used = [part_index(p["key"]) for p in self.job.parts]
        self._state["base"] = 1 + max(used, default=self._state.get("base", 0) - 1)
        self._persist()

    def _persist(self) -> None:
        self._state.update(job=self.job.to_dict(), failures=0)  # progress: the failures in a row end
        save_entry(self._run, self._entry, self._state)

    def page_fetched(self, events: int) -> None:
        """Count the call; keep the sweep's pace at its share of the provider's."""
        self.calls += 1
        self.budget.used += 1
        settings, clock = self.settings, self._run.clock
        if not settings.paced or not settings.calls_per_minute:
            return
        interval = 60.0 / (settings.calls_per_minute * settings.sweep_share)
        wait = self._last_call + interval - clock.monotonic()
        if wait > 0:
            if not self.budget.allows(wait):
                self.budget.exhausted = True  # the source sees it at its next budget check, and saves
                return
            clock.sleep(wait)
        self._last_call = clock.monotonic()


def part_index(key: str) -> int:
    found = re.search(r"-p(\d+)\.jsonl\.gz$", key)
    return int(found.group(1)) if found else -1


class LateBuffer(ObjectBuffer):
    """A buffer that keeps only events not archived yet (with their ids and times)."""

    def __init__(self, max_bytes: int, identify: Any, archived: set[Any]) -> None:
        super().__init__(max_bytes, identify=identify)
        self._ident = identify
        self._archived = archived
        self.kept: list[tuple[Any, Line, float | None]] = []

    def extend(self, lines: Any, keys: Any = None) -> None:
        if not lines:
            return
        ids, times = self._ident.of_keys(keys) if keys is not None else self._ident(lines)
        keep = [(i, line, t) for i, line, t in zip(ids, lines, times, strict=True) if i not in self._archived]
        if keep:
            self.kept.extend(keep)
            super().extend([line for _, line, _ in keep], None)

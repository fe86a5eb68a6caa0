"""The ``WindowContext`` a job's window is collected through: the only door to the archive and the
checkpoint a source has while it collects one window of one job.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from audit_collector.collector import commit
from audit_collector.collector.jobs import Job
from audit_collector.collector.provider import Source, Window
from audit_collector.collector.run import Run
from audit_collector.collector.settings import Budget
from audit_collector.evidence import manifest
from audit_collector.storage.archive import ObjectBuffer
from audit_collector.storage.keys import object_key


class JobContext:
    """What a source may do while it collects one window of one job: read the settings and the
    budget, fill buffers, write parts, and save the window's progress."""

    def __init__(self, run: Run, job: Job, source: Source, window: Window, budget: Budget | None = None) -> None:
        self._run = run
        self._source = source
        self.job = job
        self._window_id = window.id
        self._window_fields = _as_planned(window)
        # Where the window starts: the job's first gap, as it was planned (the watermark moves
        # only when a window closes, so a resumed window finds the same start).
        gap = job.next_gap(job.watermark)
        self._start = gap[0] if gap is not None else job.watermark
        self.settings = run.settings
        self.budget = budget or run.budget
        self.page_limit: int = run.settings.page_limit or run.descriptor.largest_page

    @property
    def saved(self) -> bool:
        """Whether the job's checkpoint already holds an open window."""
        return self.job.window is not None

    def new_buffer(self) -> ObjectBuffer:
        return ObjectBuffer(self.settings.max_object_bytes, identify=self._run.identify)

    def key(self, dt: str, window: Window, part: int) -> str:
        return object_key(self._run.prefix, self._run.descriptor.name, dt, f"{window.id}-p{part:05d}")

    def write(self, dt: str, window: Window, part: int, buffer: ObjectBuffer) -> None:
        """The part's object; the window must have been saved first (``save``)."""
        if self.job.window is None:
            raise RuntimeError("a window is saved before its first object is written")
        key = self.key(dt, window, part)
        self._run.check_clock(self._source)
        commit.announce(self._run, self.job, window.id)
        body = self._run.put(key, buffer)
        self.job.record_part(manifest.part_record(key, body, buffer.events, buffer.ids, buffer.first, buffer.last))

    def blank(self, dt: str, window: Window, part: int) -> None:
        """Overwrite a part a restarted window no longer fills with an empty object."""
        key = self.key(dt, window, part)
        commit.announce(self._run, self.job, window.id)
        body = self._run.put(key, None)
        self.job.record_part(manifest.part_record(key, body, 0, [], None, None))

    def save(self, window: Window) -> None:
        """The window's progress, so the next run resumes it where this one stopped."""
        self._run.check_clock(self._source)
        if self.job.window is None and self.job.opened_at is None:
            self.job.opened_at = self._run.clock.time()  # when the window was first read: what its passes wait for
        self.job.window = window.to_dict()
        self._run.save_jobs(self.job)

    def close(self, watermark: int) -> None:
        """The window is archived whole: its manifest, then the job moves past it."""
        self._run.check_clock(self._source)
        commit.close_window(self._run, self.job, self._window_id, self._start, watermark, self._window_fields)

    def page_fetched(self, events: int) -> None:
        self._run.page_fetched(self.job.id, events)


def _as_planned(window: Window) -> dict[str, Any] | None:
    """The window as its source planned it (its progress fields back at their defaults): what a
    sweep asks the API again. None for a window that is not a dataclass."""
    if not dataclasses.is_dataclass(window):
        return None
    required = {
        f.name: getattr(window, f.name)
        for f in dataclasses.fields(window)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return type(window)(**required).to_dict()

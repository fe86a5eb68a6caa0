"""The cyclic garbage collector, paused for a run: pages are acyclic and freed as they go."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for a whole run, then collect what the run left, once.

    Collections triggered by allocation cost CPU for nothing here: pages are acyclic and freed by
    reference counting the moment the next one replaces them, so memory stays bounded by one page
    (measured). The closing collection covers the young generations only, which hold everything the
    run allocated: a full one would walk the whole heap, however large (over a second in
    bench_backfill's process, which also holds the emulator and moto). Nests and is thread-safe:
    the GC comes back when the outermost pause ends, if it was on.
    """
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["was_enabled"]:
                gc.enable()
                gc.collect(1)


_gc_lock = threading.Lock()
_gc_state = {"depth": 0, "was_enabled": False}

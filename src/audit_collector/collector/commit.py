"""Closing a window: its manifest, named in the checkpoint before it is written, then the commit.

A window closes in three writes: the checkpoint names the manifest to come (``pending``: its key
and its place in the chain), the manifest is written, then the checkpoint that closes the window,
moves the chain's head, queues the window's late-event passes and clears ``pending`` (one write). A
run that finds ``pending`` set (its predecessor died in between) writes that same manifest again
before anything else: so no crash can leave two manifests that claim one place in the chain, and
no manifest under a key the chain never reaches.

After a run (and whenever enough manifests wait for it), the chain's head is signed
(``heads.py``): ``unsigned`` in the checkpoint lists the manifests committed since the last signed
head, so a run that died before signing leaves them to the next. A backfill window or a late-event
pass is *announced* too: before its first part, a head names it as under way (``announce``), so a
run killed after that part leaves nothing a verify from the bucket and a public key calls extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit_collector.collector.jobs import LIVE, Job, jobs_of
from audit_collector.collector.queue import enqueue, pass_id, without
from audit_collector.dates import iso, utc_date
from audit_collector.errors import WriteRefused
from audit_collector.evidence import heads, manifest
from audit_collector.storage.keys import head_key, manifest_key, object_key

if TYPE_CHECKING:
    from audit_collector.collector.run import Run

UNSIGNED_LIMIT = 64  # manifests a checkpoint lists before the head is signed mid-run


def close_window(
    run: Run, job: Job, window_id: str, start: int, watermark: int, window_fields: dict[str, Any] | None
) -> None:
    """The window is archived whole: clear what a crashed attempt left under another date, name
    the manifest in the checkpoint, then write it and commit. Serialized: one chain per provider."""
    with run.chain_lock:
        tidy(run, window_id, start, watermark, job)
        unit = run.descriptor.units_per_second
        pending = {
            "kind": "window",
            "key": manifest_key(run.prefix, run.descriptor.name, utc_date(start / unit), window_id),
            "seq": run.chain().get("count", 0) + 1,
            "job": job.id,
            "window_id": window_id,
            "start": start,
            "end": watermark,
            "window": window_fields,
            "opened": job.opened_at if job.opened_at is not None else run.started_at,
        }
        run.save_jobs(job, pending=pending)
        commit_pending(run)


def commit_pending(run: Run) -> None:
    """Write the manifest the checkpoint names, and commit it (nothing to do when none is named)."""
    pending = run.document.get("pending")
    if not pending:
        return
    with run.chain_lock:
        if pending["kind"] == "sweep":
            commit_pass(run, pending)
            return
        job = run.job(pending["job"])
        document = manifest.build(
            provider=run.descriptor.name,
            job=job.id,
            window=pending["window_id"],
            start=pending["start"],
            end=pending["end"],
            unit=run.descriptor.units_per_second,
            parts=sorted(job.parts, key=lambda p: p["key"]),
            chain=run.chain(),
            written_at=run.clock.time(),
            window_fields=pending["window"],
        )
        job.watermark, job.window, job.parts, job.opened_at = pending["end"], None, [], None
        fields: dict[str, Any] = {}
        ages = run.settings.sweep_after_seconds
        if ages:
            queue, dropped = enqueue(
                list(run.document.get("sweep_queue") or []),
                job=job.id,
                start=pending["start"],
                end=pending["end"],
                unit=run.descriptor.units_per_second,
                opened=pending["opened"],
                closed=run.clock.time(),
                ages=ages,
            )
            run.sweep_given_up += dropped
            fields["sweep_queue"] = queue
        commit_manifest(run, pending, document, job, **fields)


def commit_pass(run: Run, pending: dict[str, Any]) -> None:
    """Write a finished pass's manifest (named in ``pending``) and the checkpoint that commits it."""
    job_id, start, end = pending["entry"]
    queue = list(run.document.get("sweep_queue") or [])
    entry = next(e for e in queue if (e["job"], e["start"], e["end"]) == (job_id, start, end))
    state = entry["pass"]
    job = Job.from_dict(pass_id(entry, pending["age"]), state["job"])
    document = manifest.build(
        provider=run.descriptor.name,
        job=job_id,
        window=pass_id(entry, pending["age"]),
        start=start,
        end=end,
        unit=run.descriptor.units_per_second,
        parts=sorted(job.parts, key=lambda p: p["key"]),
        chain=run.chain(),
        written_at=run.clock.time(),
        sweep={"after_seconds": pending["age"], "ages": [a for a in entry["ages"] if a <= pending["age"]]},
    )
    commit_manifest(run, pending, document, sweep_queue=without(queue, entry, pending["age"]))


def commit_manifest(run: Run, pending: dict[str, Any], document: dict[str, Any], *jobs: Job, **fields: Any) -> None:
    """Write the manifest ``pending`` names, then the checkpoint with the chain's new head (and
    ``jobs`` and ``fields``), in one write. Caller holds ``run.chain_lock``."""
    if document["seq"] != pending["seq"]:  # the chain moved after the name was chosen: a bug, not a crash
        raise RuntimeError(f"manifest {pending['key']} was named for place {pending['seq']}, not {document['seq']}")
    body = manifest.encode(document)
    run.put_body(pending["key"], body)
    sha = manifest.sha256_of(body)
    head = {"head": sha, "count": document["seq"], "key": pending["key"]}
    if run.signer is not None:
        fields["unsigned"] = [*run.document.get("unsigned", []), [document["seq"], pending["key"], sha]]
    run.save_jobs(*jobs, chain=head, pending=None, **fields)
    if len(run.document.get("unsigned", [])) >= UNSIGNED_LIMIT:
        sign_head(run)


def tidy(run: Run, name: str, start: int, end: int, job: Job) -> None:
    """Blank every part of ``name`` under the window's dates that ``job`` does not list: what an
    attempt that died between a part and its checkpoint left under a date the rerun did not reach
    again (late events moved the part boundaries). Blanked parts are listed, empty."""
    unit = run.descriptor.units_per_second
    if end <= start:
        return
    listed = {p["key"] for p in job.parts}
    day, last = start / unit, (end - 1) / unit
    while utc_date(day) <= utc_date(last):
        stem = object_key(run.prefix, run.descriptor.name, utc_date(day), f"{name}-p").removesuffix(".jsonl.gz")
        for key in run.archive.keys(stem):
            if key not in listed and key[len(stem) :].removesuffix(".jsonl.gz").isdigit():
                body = run.put(key, None)
                job.record_part(manifest.part_record(key, body, 0, [], None, None))
        day += 86400


def announce(run: Run, job: Job, window_id: str) -> None:
    """Before the first part this run writes for a backfill window or a late-event pass: a signed
    head that names it as under way (once per window a run writes). A live window needs none: its
    next window begins exactly at the newest head's watermark (or where a live window committed
    since ended), and verify reads only that name as under way (``verify/check.py``)."""
    if run.signer is None or job.id == LIVE or window_id in run.announced:
        return
    with run.chain_lock:
        if window_id not in run.announced:
            sign_head(run, announcing=True)


def sign_head(run: Run, *, announcing: bool = False) -> None:
    """Sign the chain's head and what is under way, under a key of its own, if the run wrote
    anything (or a window is being announced)."""
    unsigned = run.document.get("unsigned") or []
    if run.signer is None or not (unsigned or run.writes or announcing):
        return
    chain = run.chain()
    if not chain:
        return  # nothing committed yet: nothing to stand for
    document = run.document
    by_id = jobs_of(document)
    jobs, live = by_id.values(), by_id.get(LIVE)
    writing = [run.descriptor.window_type.from_dict(job.window).id for job in jobs if job.window is not None]
    writing += [pass_id(entry, entry["pass"]["age"]) for entry in document.get("sweep_queue") or [] if "pass" in entry]
    # A millisecond after this run's last head at least: an announcement right after a head must
    # not fall on its key (nor sort before it: the newest head is the latest signed at its place).
    run.last_head_ms = max(round(run.clock.time() * 1000), run.last_head_ms + 1)
    now = run.last_head_ms / 1000
    payload = heads.build(
        provider=run.descriptor.name,
        chain=chain,
        after=int(unsigned[0][0]) - 1 if unsigned else chain["count"],
        links=[list(link) for link in unsigned],
        watermark=live.watermark if live is not None else None,
        open_ranges=[r for job in jobs if not job.done for r in job.still_owned()],
        writing=sorted(writing),
        unit=run.descriptor.units_per_second,
        signed_at=now,
    )
    run.renew()
    for _ in range(3):
        body = heads.encode(heads.sign(payload, run.signer))
        try:  # never replaced: a head, once written, stands
            run.archive.put(head_key(run.prefix, run.descriptor.name, chain["count"], now), body, replaces=None)
            break
        except WriteRefused:  # another run's head of this place, signed in the same millisecond
            run.last_head_ms += 1
            now = run.last_head_ms / 1000
            payload = {**payload, "signed_at": iso(now, "milliseconds")}
    else:
        raise WriteRefused(f"three heads of {run.descriptor.name} at place {chain['count']} in a row were taken")
    run.writes = 0
    run.announced = set(writing)
    if unsigned:
        run.save_jobs(unsigned=None)

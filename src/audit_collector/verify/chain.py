"""``verify``'s chain check: manifests linked by SHA-256, places resolved, signed heads checked.

What it decides, per provider:

- which manifest holds each place (``seq``) of the chain. Two manifests at one place is a fork; the
  one a signed head, the checkpoint's head or the next link names wins, and the other is
  ``superseded`` (a run died before committing it; it fails nothing). A fork nothing resolves is a
  ``chain`` finding;
- that each manifest's ``prev`` is the SHA-256 of the one before, and (from the start) that no
  place is missing;
- that every manifest a signed head names is there with the SHA-256 it was signed with: the newest
  windows deleted, or a window edited and every later link re-forged, cannot agree with the newest
  signed head again;
- that the checkpoint's head (with ``--state``) is the last manifest, or the one the checkpoint
  names as being written (``pending``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from audit_collector.evidence import heads as signed_heads
from audit_collector.evidence.signing import Checker
from audit_collector.storage.keys import filed_on, heads_folder, is_head_key

Found = tuple[str, dict[str, Any], str]  # (key, manifest, SHA-256 of its bytes)


@dataclass
class Heads:
    """The signed heads read, and what they claim."""

    links: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # seq -> (key, sha, head key)
    latest: dict[str, Any] | None = None  # the newest valid head
    count: int = 0
    # What the heads at each place in the chain say is under way: at the newest place, several heads
    # (a run's closing head, the next run's announcements) may each name windows, whatever their clocks.
    writing: dict[int, set[str]] = field(default_factory=dict)
    watermarks: dict[int, set[int]] = field(default_factory=dict)


def read_heads(verifier: Any, checker: Checker | None) -> Heads:
    """The heads under ``_chain/{provider}/`` (with ``--from``, those signed since the day before,
    and the newest): each parsed and, with a checker, its signature checked."""
    out = Heads()
    report, archive, name = verifier.report, verifier.archive, verifier.descriptor.name
    folder = heads_folder(verifier.prefix, name)
    keys = sorted(k for k in archive.keys(folder) if is_head_key(k))
    newest = max(keys, key=lambda k: k.rpartition("/")[2], default=None)
    since = verifier.day_before_start()
    for key in keys:
        if since is not None and filed_on(key) < since and key != newest:
            continue
        try:
            head = signed_heads.parse(archive.get(key), name)
        except KeyError:
            continue
        except ValueError as exc:
            report.add("altered", key, f"not a readable signed head of {name}: {exc}")
            continue
        if checker is not None and not signed_heads.signature_valid(head, checker):
            report.add("chain", key, "its signature does not verify with the public key given: forged or altered")
            continue
        out.count += 1
        claims = [*head["links"], [head["seq"], head["key"], head["sha256"]]]
        for seq, manifest_key, sha in claims:
            before = out.links.get(seq)
            if before is not None and before[:2] != (manifest_key, sha):
                report.add(
                    "chain",
                    key,
                    f"it signs {manifest_key} ({sha[:12]}…) at place {seq}; {before[2]} signs {before[0]} "
                    f"({before[1][:12]}…) there",
                )
                continue
            out.links[seq] = (manifest_key, sha, key)
        out.writing.setdefault(head["seq"], set()).update(head.get("writing") or [])
        if head.get("watermark") is not None:
            out.watermarks.setdefault(head["seq"], set()).add(head["watermark"])
        if out.latest is None or (head["seq"], head["signed_at"]) > (out.latest["seq"], out.latest["signed_at"]):
            out.latest = head
    return out


def check_chain(verifier: Any, found: list[Found], signed: Heads, *, checker_given: bool) -> set[str]:
    """Check the chain; returns the keys of superseded manifests."""
    report, checkpoint = verifier.report, verifier.checkpoint or {}
    by_seq: dict[int, list[Found]] = {}
    for item in found:
        by_seq.setdefault(item[1]["seq"], []).append(item)
    head = checkpoint.get("chain") or {}
    pending = (checkpoint.get("pending") or {}).get("key")
    chosen: dict[int, Found] = {}
    superseded: set[str] = set()
    for seq in sorted(by_seq):
        group = by_seq[seq]
        if len(group) == 1:
            chosen[seq] = group[0]
            continue
        winner = _winner(seq, group, signed, head, by_seq.get(seq + 1))
        if winner is None:
            keys = ", ".join(k for k, _, _ in group)
            report.add("chain", group[0][0], f"{len(group)} manifests claim place {seq} in the chain: {keys}")
            chosen[seq] = group[0]
            continue
        chosen[seq] = winner
        for key, document, _ in group:
            if key != winner[0]:
                superseded.add(key)
                report.add(
                    "superseded",
                    key,
                    f"place {seq} is {winner[0]}'s; this one was written at {document.get('written_at')} by "
                    f"{document.get('collector_version')}, by a run that died before committing it",
                )
    _check_links(verifier, chosen)
    _check_signed(verifier, chosen, signed, checker_given)
    _check_checkpoint(verifier, chosen, head, pending)
    seqs = sorted(chosen)
    if seqs:
        report.chain_head = chosen[seqs[-1]][2]
    if signed.latest is not None:
        report.signed_seq = signed.latest["seq"]
        report.unsigned = max(0, (seqs[-1] if seqs else 0) - signed.latest["seq"])
    return superseded


def _winner(
    seq: int, group: list[Found], signed: Heads, head: dict[str, Any], after: list[Found] | None
) -> Found | None:
    keys = {key: item for item in group for key in [item[0]]}
    link = signed.links.get(seq)
    if link is not None and link[0] in keys:
        return keys[link[0]]
    if head.get("count") == seq and head.get("key") in keys:
        return keys[head["key"]]
    if after and len(after) == 1:
        named = [item for item in group if item[2] == after[0][1]["prev"]]
        if len(named) == 1:
            return named[0]
    return None


def _check_links(verifier: Any, chosen: dict[int, Found]) -> None:
    """Consecutive places linked by SHA-256; from the start of the chain, no place missing."""
    report = verifier.report
    seqs = sorted(chosen)
    if not seqs:
        return
    whole = verifier.start is None and verifier.end is None  # a range reads only the places it needs
    if whole:
        if seqs[0] != 1:
            key, document, _ = chosen[seqs[0]]
            report.add(
                "chain",
                key,
                f"manifests 1 to {seqs[0] - 1} of the chain are missing (the first found is {seqs[0]})",
                verifier.span(document["range_start"], document["range_start"]),
            )
        elif chosen[1][1]["prev"] is not None:
            report.add("chain", chosen[1][0], "the first manifest names a predecessor")
    for before, after in itertools.pairwise(seqs):
        b_key, b_doc, b_sha = chosen[before]
        a_key, a_doc, _ = chosen[after]
        if after != before + 1:
            if whole:
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
                verifier.span(b_doc["range_start"], b_doc["range_end"]),
            )


def _check_signed(verifier: Any, chosen: dict[int, Found], signed: Heads, checker_given: bool) -> None:
    """Every manifest a signed head names: there, with the SHA-256 it was signed with."""
    report = verifier.report
    if checker_given and signed.latest is None and chosen:
        report.add(
            "chain",
            None,
            "no signed head verifies with the public key given: nothing proves the newest windows are all there",
        )
    for seq, (key, sha, head_key) in sorted(signed.links.items()):
        here = chosen.get(seq)
        if here is None or here[0] != key:
            if verifier.key_in_range(key) or verifier.start is None:
                report.add("chain", key, f"{head_key} signs this manifest (place {seq}); it is not in the archive")
        elif here[2] != sha:
            report.add(
                "chain",
                key,
                f"its SHA-256 ({here[2][:12]}…) is not the one {head_key} signed ({sha[:12]}…): edited, or the "
                "chain re-forged",
                verifier.span(here[1]["range_start"], here[1]["range_end"]),
            )


def _check_checkpoint(verifier: Any, chosen: dict[int, Found], head: dict[str, Any], pending: str | None) -> None:
    """The checkpoint's head is the last manifest (or the one after it is the manifest being written)."""
    report = verifier.report
    if not head or verifier.end is not None:
        return
    seqs = sorted(chosen)
    if not seqs:
        report.add("chain", head.get("key"), f"the checkpoint's chain has {head.get('count')} manifests; none found")
        return
    count = head.get("count", 0)
    beyond = [s for s in seqs if s > count]
    if beyond and not (beyond == [count + 1] and chosen[count + 1][0] == pending):
        key = chosen[beyond[0]][0]
        report.add("chain", key, f"place {beyond[0]} is past the checkpoint's head ({count}), and no run is writing it")
    here = chosen.get(count)
    if here is None:
        if verifier.start is None or count > seqs[-1]:
            detail = (
                f"the checkpoint's chain has {count} manifests, the archive {seqs[-1]}: the last were deleted"
                if count > seqs[-1]
                else f"the manifest at the checkpoint's head ({count}) is missing"
            )
            report.add("chain", head.get("key"), detail)
    elif here[2] != head.get("head"):
        report.add(
            "chain",
            head.get("key") or here[0],
            f"the last manifest ({here[0]}) is not the one the checkpoint's chain head names (edited?)",
            verifier.span(here[1]["range_start"], here[1]["range_end"]),
        )

"""Signed chain heads: what proves the archive from the bucket and a public key alone.

Each manifest holds the SHA-256 of the one before it (``manifest.py``), so the SHA-256 of the last
one stands for the whole chain. After each run that wrote anything, the collector writes one
signed head per provider, under a key of its own that nothing writes again:

    {prefix}_chain/{provider}/dt=YYYY-MM-DD/{seq:012d}-{signed at, epoch ms}.json

It names the last manifest (``seq``, ``key``, ``sha256``), lists every manifest committed since
the previous signed head (``links``: [seq, key, sha256]; together the heads index the whole chain
by place, so ``verify --from`` finds a window's manifest whatever day it is filed under), and says
how far collection had come, so the gap and extra checks need no state store: ``watermark`` (the
live job's), ``open`` (the ranges unfinished jobs still own) and ``writing`` (the windows and
late-event passes under way, whose parts no manifest lists yet). ``signature`` covers all of it
(``signing.py``). A backfill window or a pass is also signed into ``writing`` before its first part
(``commit.announce``): a run killed after that part leaves nothing unannounced but the live job's
next window, which begins exactly at the watermark (or where a live window committed since ended).

Under Object Lock the heads, like everything else, cannot be deleted or replaced: a collector (or
anyone holding its role) that deletes the newest windows, or edits a window and re-forges every
later link, cannot make the newest signed head agree again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from audit_collector import __version__
from audit_collector.dates import iso
from audit_collector.evidence.signing import Checker, Signer, decode_signature, encode_signature

FORMAT = 1


def build(
    *,
    provider: str,
    chain: dict[str, Any],
    after: int,
    links: list[list[Any]],
    watermark: int | None,
    open_ranges: list[list[Any]],
    writing: list[str],
    unit: int,
    signed_at: float,
) -> dict[str, Any]:
    """A head's payload (everything but its signature)."""
    return {
        "format": FORMAT,
        "provider": provider,
        "seq": chain["count"],
        "key": chain["key"],
        "sha256": chain["head"],
        "after": after,
        "links": links,
        "watermark": watermark,
        "open": open_ranges,
        "writing": writing,
        "units_per_second": unit,
        "signed_at": iso(signed_at, "milliseconds"),
        "collector_version": __version__,
    }


def digest(head: dict[str, Any]) -> bytes:
    """The 32 bytes a signature covers: SHA-256 of the canonical JSON of all but ``signature``."""
    payload = {k: v for k, v in head.items() if k != "signature"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).digest()


def sign(payload: dict[str, Any], signer: Signer) -> dict[str, Any]:
    signature = signer.sign(digest(payload))
    return {
        **payload,
        "signature": {"algorithm": signer.algorithm, "key_id": signer.key_id, "value": encode_signature(signature)},
    }


def encode(head: dict[str, Any]) -> bytes:
    return json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def parse(body: bytes, provider: str) -> dict[str, Any]:
    """A head document, or ValueError saying why it is not one."""
    try:
        head = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ValueError("unknown format")
    if head.get("provider") != provider:
        raise ValueError(f"it names provider {head.get('provider')!r}")
    for name, kind in (("seq", int), ("after", int), ("key", str), ("sha256", str), ("links", list)):
        if not isinstance(head.get(name), kind) or isinstance(head.get(name), bool):
            raise ValueError(f"its {name} is not a {kind.__name__}")
    for link in head["links"]:
        if not (isinstance(link, list) and len(link) == 3 and isinstance(link[0], int) and isinstance(link[2], str)):
            raise ValueError(f"a link is not [seq, key, sha256]: {link!r}")
    if not isinstance(head.get("signature"), dict):
        raise ValueError("it has no signature")
    return head


def signature_valid(head: dict[str, Any], checker: Checker) -> bool:
    signature = head["signature"]
    raw = decode_signature(signature.get("value"))
    if raw is None:
        return False
    return checker.check(digest(head), raw, str(signature.get("algorithm")))

"""Where everything lives in the bucket (the same layout in a local folder): one place for every key.

    {prefix}{provider}/dt=YYYY-MM-DD/{window}-p{part:05d}.jsonl.gz     data (the Athena tables read it)
    {prefix}_manifests/{provider}/dt=YYYY-MM-DD/{window}.json          a manifest per closed window
    {prefix}_chain/{provider}/dt=YYYY-MM-DD/{seq:012d}-{ms}.json       a signed head of the chain
    {prefix}_meta/{provider}/{vocabulary|drift}/YYYY-MM-DD.json        the drift watch's snapshots
    {prefix}_audit_collector/state-store.json                           which state store owns the archive

``dt`` is the event's UTC date. Names are deterministic (window and part index, both kept in the
checkpoint), so a rerun after a crash rewrites the same names instead of adding copies.
"""

from __future__ import annotations

import re

from audit_collector.dates import utc_date


def object_key(prefix: str, provider: str, dt: str, name: str) -> str:
    return f"{prefix}{provider}/dt={dt}/{name}.jsonl.gz"


# Manifests: one per closed window (and one more per sweep of it), in their own folder beside the
# providers' (never read as events).
MANIFEST_FOLDER = "_manifests"


def manifest_key(prefix: str, provider: str, dt: str, window: str, revision: int = 0) -> str:
    """The window's manifest; a sweep that adds a part to the window writes revision 1, 2, ..."""
    suffix = "" if revision == 0 else f".r{revision}"
    return f"{prefix}{MANIFEST_FOLDER}/{provider}/dt={dt}/{window}{suffix}.json"


def is_manifest_key(key: str) -> bool:
    return f"{MANIFEST_FOLDER}/" in key and key.endswith(".json") and "/dt=" in key


# The drift watch's dated objects (drift.py), the only keys under _meta/ a writer accepts:
# {prefix}_meta/{provider}/vocabulary/YYYY-MM-DD.json and .../drift/YYYY-MM-DD.json.
META_FOLDER = "_meta"


_META_KEY = re.compile(rf"(?:^|/){META_FOLDER}/[a-z0-9_]+/(?:vocabulary|drift)/\d{{4}}-\d{{2}}-\d{{2}}\.json$")


def is_meta_key(key: str) -> bool:
    return _META_KEY.search(key) is not None


def is_data_key(key: str, prefix: str, provider: str) -> bool:
    """Under a provider's ``dt=`` folders: what Athena's tables read, whatever the name."""
    rest = key[len(prefix) :] if key.startswith(prefix) else None
    return rest is not None and rest.startswith(f"{provider}/dt=") and rest.count("/") == 2 and not rest.endswith("/")


def object_window(key: str) -> str:
    """The window (or late-event pass) an object belongs to, by its name: the stem before ``-p``."""
    return key.rpartition("/")[2].partition(".")[0].rpartition("-p")[0]


def name_bounds(name: str) -> tuple[int, int] | None:
    """``start-end`` at the front of a window's (or a sweep pass's) name, where it has one."""
    start, _, rest = name.partition("-")
    end = rest.partition("-")[0].partition(".")[0]
    return (int(start), int(end)) if start.isdigit() and end.isdigit() else None


def normalize_prefix(prefix: str | None) -> str:
    """'' stays '', 'audit' becomes 'audit/': keys never start with a slash or double one."""
    prefix = (prefix or "").strip().strip("/")
    return f"{prefix}/" if prefix else ""


# Small objects of the collector's own, beside the providers' folders (never read as events).
MARKER_FOLDER = "_audit_collector"


MARKER_NAMES = frozenset({"state-store.json"})


def marker_key(prefix: str, name: str) -> str:
    return f"{prefix}{MARKER_FOLDER}/{name}"


CHAIN_FOLDER = "_chain"


def head_key(prefix: str, provider: str, seq: int, signed_at: float) -> str:
    return f"{prefix}{CHAIN_FOLDER}/{provider}/dt={utc_date(signed_at)}/{seq:012d}-{round(signed_at * 1000):013d}.json"


def heads_folder(prefix: str, provider: str) -> str:
    return f"{prefix}{CHAIN_FOLDER}/{provider}/"


def is_head_key(key: str) -> bool:
    parts = key.split("/")
    if len(parts) < 4 or parts[-4] != CHAIN_FOLDER or not parts[-2].startswith("dt="):
        return False
    seq, _, millis = parts[-1].removesuffix(".json").partition("-")
    return parts[-1].endswith(".json") and seq.isdigit() and millis.isdigit()


def filed_on(key: str) -> str:
    """The UTC date a head was signed on, from its key."""
    return key.rsplit("/", 2)[1].removeprefix("dt=")


STATE_STORE_MARKER = "state-store.json"

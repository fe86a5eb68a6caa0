"""What ``verify`` reports: findings by kind, per provider, and whether the archive is clean.

Kinds are explained in ``check.py``; ``superseded`` is the one kind that fails nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from audit_collector.dates import iso

KINDS = ("gap", "missing", "altered", "extra", "duplicate", "chain", "superseded")
NOT_FAILING = frozenset({"superseded"})  # what a crash may leave; every other kind means a change


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
    signed_seq: int | None = None  # the newest signed head's place in the chain
    unsigned: int = 0  # manifests after it (signed at the next run's end)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.kind not in NOT_FAILING]

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
        return not any(p.failing for p in self.providers)

    def as_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "quick": self.quick, "providers": [p.as_dict() for p in self.providers]}

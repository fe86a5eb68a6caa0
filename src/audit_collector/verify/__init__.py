"""Checking the evidence: re-read the archive and prove it against its manifests and signed heads.

``check`` walks one provider's archive, ``chain`` checks the manifest chain and the signed heads,
``report`` holds what comes back. This room reads what the collector wrote; it writes nothing.
"""

from audit_collector.verify.check import verify_archive
from audit_collector.verify.report import KINDS, Finding, ProviderReport, Report

__all__ = ["KINDS", "Finding", "ProviderReport", "Report", "verify_archive"]

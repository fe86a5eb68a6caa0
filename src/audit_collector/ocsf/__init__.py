"""OCSF: the archive's events in the Open Cybersecurity Schema Framework (1.1.0), a derived form.

The raw archive stays the source of truth; OCSF is computed from it, like the Parquet compaction.
Each provider brings its mapping as data (``Descriptor.ocsf_mapping``, ``providers/<name>/ocsf.json``);
this package applies it (``mapping``), turns it into the ``ocsf_<class>`` views (``views``), checks
events against the schema (``validate``, a dev tool) and writes Security Lake's custom-source
Parquet (``lake``).
"""

from __future__ import annotations

from audit_collector.collector.provider import Descriptor
from audit_collector.ocsf.classes import CLASSES, VERSION, OcsfClass
from audit_collector.ocsf.mapping import MappingError, OcsfMapping, mapping_for


def mapping(descriptor: Descriptor) -> OcsfMapping | None:
    """The provider's mapping, read and checked once (None: the provider has none)."""
    if descriptor.ocsf_mapping is None:
        return None
    return mapping_for(descriptor.name, descriptor.ocsf_mapping)


__all__ = ["CLASSES", "VERSION", "MappingError", "OcsfClass", "OcsfMapping", "mapping"]

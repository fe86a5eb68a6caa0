"""Which APIs the emulator serves: one module per provider, named by its descriptor.

A descriptor's ``emulator`` is a module path (``"audit_collector.emulator.slack"``, or a module of a
plug-in provider's own package); the module's ``API`` is an ``EmulatedApi`` subclass. Nothing here
names a provider: a new one is found through the registry it is already in.
"""

from __future__ import annotations

import importlib
from typing import Any

from audit_collector import providers
from audit_collector.emulator.api import EmulatedApi


def api_classes() -> dict[str, type[EmulatedApi]]:
    """Every registered provider's emulated API, by provider name."""
    found: dict[str, type[EmulatedApi]] = {}
    for descriptor in providers.all_descriptors():
        if descriptor.emulator:
            try:
                api = importlib.import_module(descriptor.emulator).API
            except (ImportError, AttributeError) as exc:
                raise ImportError(f"{descriptor.name}'s emulator module {descriptor.emulator!r}: {exc}") from exc
            if api.name != descriptor.name:
                raise ValueError(f"{descriptor.emulator}.API serves {api.name!r}, not the provider {descriptor.name!r}")
            found[descriptor.name] = api
    return found


def api_faults() -> dict[str, str]:
    """Each registered API's fault that rejects a paging position (``invalid_cursor``, ...), by name."""
    return {name: api.position_fault for name, api in api_classes().items()}


def position_faults() -> tuple[str, ...]:
    """The faults that reject a paging position, one per API."""
    return tuple(api_faults().values())


def served_text(name: str, event: dict[str, Any]) -> bytes:
    """An event's JSON text as the API ``name`` serves it (what the archive must keep, byte for byte)."""
    return api_classes()[name].encode(event)

"""The registry: provider name -> descriptor. The only place that lists the built-in providers.

Others plug in without touching this package: a distribution declares an entry point in the
``audit_collector.providers`` group whose object is a ``Descriptor`` (found on first use), or code
calls ``register()`` before it runs the collector.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from audit_collector.collector.provider import Descriptor
from audit_collector.errors import ConfigError

BUILTIN = ("audit_collector.providers.slack", "audit_collector.providers.asana")
ENTRY_POINT_GROUP = "audit_collector.providers"

_registry: dict[str, Descriptor] = {}
_loaded = False


def register(descriptor: Descriptor) -> Descriptor:
    """Add a provider; registering the same descriptor twice is harmless, two under one name are not."""
    _load()  # the built-ins come first, whenever a plug-in registers
    known = _registry.get(descriptor.name)
    if known is not None and known is not descriptor:
        raise ValueError(f"a provider named {descriptor.name!r} is already registered")
    _registry[descriptor.name] = descriptor
    return descriptor


def unregister(name: str) -> None:
    """Remove a provider (tests that register one of their own)."""
    _registry.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        register(importlib.import_module(module).DESCRIPTOR)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        descriptor = entry.load()
        if not isinstance(descriptor, Descriptor):
            raise TypeError(f"entry point {entry.name!r} ({entry.value}) is not a Descriptor")
        register(descriptor)


def names() -> tuple[str, ...]:
    """Every registered provider, built-ins first, in registration order."""
    _load()
    return tuple(_registry)


def all_descriptors() -> tuple[Descriptor, ...]:
    _load()
    return tuple(_registry.values())


def get(name: object) -> Descriptor:
    """The provider called ``name``; a ``ConfigError`` listing the known ones otherwise."""
    _load()
    descriptor = _registry.get(name) if isinstance(name, str) else None
    if descriptor is None:
        raise ConfigError(f"provider must be one of {', '.join(_registry)}, got {name!r}")
    return descriptor

"""Typed views of the objects an audit entry names: its actor, its entity and its context.

Each keeps every field it does not know in ``unknown_fields`` (see ``_models.Model``): Slack adds
entity types and fields without notice, and the archive must never lose one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from audit_collector.typed import Model


@dataclasses.dataclass
class User(Model):
    id: Any = None
    name: Any = None
    email: Any = None
    team: Any = None


@dataclasses.dataclass
class Actor(Model):
    type: Any = None
    user: User | None = None
    _nested = {"user": User}


@dataclasses.dataclass
class Location(Model):
    type: Any = None
    id: Any = None
    name: Any = None
    domain: Any = None


@dataclasses.dataclass
class App(Model):
    id: Any = None
    name: Any = None
    is_distributed: Any = None
    is_directory_approved: Any = None
    is_workflow_app: Any = None
    scopes: Any = None
    scopes_bot: Any = None
    creator: Any = None
    team: Any = None


@dataclasses.dataclass
class Context(Model):
    location: Location | None = None
    ua: Any = None
    ip_address: Any = None
    session_id: Any = None  # a string, an integer or null, depending on the event
    app: App | None = None
    _nested = {"location": Location, "app": App}


@dataclasses.dataclass
class NamedObject(Model):
    """The shape most entity payloads share; anything else is kept in ``unknown_fields``."""

    id: Any = None
    name: Any = None
    domain: Any = None
    privacy: Any = None
    is_shared: Any = None
    is_org_shared: Any = None
    filetype: Any = None
    title: Any = None


@dataclasses.dataclass
class Entity(Model):
    """``{"type": T, T: {...}}``. New entity types arrive over time and stay in ``unknown_fields``."""

    type: Any = None
    user: Any = None
    workspace: Any = None
    enterprise: Any = None
    channel: Any = None
    file: Any = None
    app: Any = None
    usergroup: Any = None
    workflow: Any = None
    barrier: Any = None
    message: Any = None
    huddle: Any = None
    role: Any = None
    _nested = {
        "user": User,
        "app": App,
        **{k: NamedObject for k in ("workspace", "enterprise", "channel", "file", "usergroup", "workflow")},
    }

    @property
    def target(self) -> Any:
        """The payload named by ``type``, whichever type that is."""
        if not isinstance(self.type, str):
            return None
        known = getattr(self, self.type, None) if self.type in self.__dataclass_fields__ else None
        return known if known is not None else self.unknown_fields.get(self.type)

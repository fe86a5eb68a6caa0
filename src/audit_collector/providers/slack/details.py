"""A typed view of an audit entry's ``details``: every field Slack documents, by name.

Which fields appear depends on the action (``inviter`` on a channel join, ``old_retention_policy``
on a retention change, …). The annotations are the types Slack documents; as everywhere in these
models, a value of another type is kept as it came, never rejected, and a field Slack adds later
lands in ``unknown_fields``. ``to_dict()`` gives back the details as sent, key for key.

``succeeded_users`` and ``failed_users`` are lists of user IDs, which Slack sends for historical
reasons either as a list or as a string holding a JSON list: the attribute is the list either way
(as slack_sdk hands it out), and ``to_dict()`` still gives back the string Slack sent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from audit_collector.json_text import parse_json
from audit_collector.providers.slack.objects import User
from audit_collector.typed import Model


def json_list(value: Any) -> Any:
    """The list a JSON-encoded string holds; any other value (or a string holding no list) as it is."""
    if not isinstance(value, str):
        return value
    try:
        decoded = parse_json(value.encode("utf-8", "surrogatepass"))
    except ValueError:
        return value
    return decoded if isinstance(decoded, list) else value


@dataclasses.dataclass
class RetentionPolicy(Model):
    """``old_retention_policy`` / ``new_retention_policy`` of a retention change."""

    type: str | None = None
    duration_days: int | None = None


@dataclasses.dataclass
class ConversationPref(Model):
    """``who_can_post`` / ``can_thread``: the roles (``type``) and users allowed."""

    type: list[str] | None = None
    user: list[str] | None = None


@dataclasses.dataclass
class FeatureEnablement(Model):
    """``enable_at_here``, ``enable_at_channel``, ``can_huddle``."""

    enabled: bool | None = None


@dataclasses.dataclass
class SharedWith(Model):
    channel_id: str | None = None


@dataclasses.dataclass
class Profile(Model):
    """``previous_profile`` / ``new_profile`` of a profile change."""

    real_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    image_original: str | None = None
    image_24: str | None = None
    image_32: str | None = None
    image_48: str | None = None
    image_72: str | None = None
    image_192: str | None = None
    image_512: str | None = None
    image_1024: str | None = None


@dataclasses.dataclass
class PermissionWildcard(Model):
    type: str | None = None


@dataclasses.dataclass
class PermissionGrant(Model):
    type: str | None = None
    resource_id: str | None = None
    wildcard: PermissionWildcard | None = None
    _nested = {"wildcard": PermissionWildcard}


@dataclasses.dataclass
class PermissionResource(Model):
    type: str | None = None
    grant: PermissionGrant | None = None
    _nested = {"grant": PermissionGrant}


@dataclasses.dataclass
class Permission(Model):
    """One entry of ``permissions``: the scopes an app was granted on a resource."""

    resource: PermissionResource | None = None
    scopes: list[str] | None = None
    _nested = {"resource": PermissionResource}


@dataclasses.dataclass
class Details(Model):
    """What an action adds to its entry; the fields present depend on the action."""

    # settings changes
    name: str | None = None
    new_value: str | list[str] | dict[str, Any] | None = None
    previous_value: str | list[str] | dict[str, Any] | None = None
    expires_on: int | None = None
    mobile_only: bool | None = None
    web_only: bool | None = None
    non_sso_only: bool | None = None
    type: str | None = None
    is_workflow: bool | None = None
    label: str | None = None
    # people and teams
    inviter: User | None = None
    kicker: User | None = None
    target_user: str | None = None
    initiated_by: str | None = None
    creator: str | None = None
    team: str | None = None
    enterprise: str | None = None
    subteam: str | None = None
    origin_team: str | None = None
    target_team: str | None = None
    source_team: str | None = None
    destination_team: str | None = None
    added_team_id: str | None = None
    exporting_team_id: int | None = None
    succeeded_users: list[str] | None = None
    failed_users: list[str] | None = None
    previous_profile: Profile | None = None
    new_profile: Profile | None = None
    # sharing and channels
    shared_to: str | None = None
    shared_with: SharedWith | None = None
    channel_id: str | None = None
    channels: list[str] | None = None
    is_external_limited: bool | None = None
    url_private: str | None = None
    # apps, bots and their approval
    reason: str | None = None
    app_id: str | None = None
    app_owner_id: str | None = None
    admin_app_id: str | None = None
    bot_id: str | None = None
    installer_user_id: str | None = None
    approver_id: str | None = None
    approval_type: str | None = None
    app_previously_approved: bool | None = None
    resolution: str | None = None
    cleared_resolution: str | None = None
    app_previously_resolved: bool | None = None
    is_internal_integration: bool | None = None
    is_token_rotation_enabled_app: bool | None = None
    granular_bot_token: bool | None = None
    scopes: list[str] | None = None
    scopes_bot: list[str] | None = None
    bot_scopes: list[str] | None = None
    new_scopes: list[str] | None = None
    previous_scopes: list[str] | None = None
    old_scopes: list[str] | None = None
    permissions: list[Permission] | None = None
    # workflows
    new_version_id: str | None = None
    trigger: str | None = None
    # exports
    export_type: str | None = None
    export_start_ts: str | None = None
    export_end_ts: str | None = None
    # information barriers
    barrier_id: str | None = None
    primary_usergroup_id: str | None = None
    barriered_from_usergroup_ids: list[str] | None = None
    restricted_subjects: list[str] | None = None
    # sessions
    duration: int | None = None
    desktop_app_browser_quit: bool | None = None
    session_search_start: int | None = None
    deprecation_search_end: int | None = None
    # invitations and external (Slack Connect) organizations
    invite_id: str | None = None
    external_organization_id: str | None = None
    external_organization_name: str | None = None
    external_user_id: str | None = None
    external_user_email: str | None = None
    # retention and conversation preferences
    old_retention_policy: RetentionPolicy | None = None
    new_retention_policy: RetentionPolicy | None = None
    who_can_post: ConversationPref | None = None
    can_thread: ConversationPref | None = None
    enable_at_here: FeatureEnablement | None = None
    enable_at_channel: FeatureEnablement | None = None
    can_huddle: FeatureEnablement | None = None
    # identity provider (SCIM) group syncs
    action: str | None = None
    idp_config_id: str | None = None
    config_type: str | None = None
    idp_entity_id_hash: str | None = None
    idp_group_member_count: int | None = None
    workspace_member_count: int | None = None
    added_user_count: int | None = None
    added_user_error_count: int | None = None
    reactivated_user_count: int | None = None
    removed_user_count: int | None = None
    removed_user_error_count: int | None = None
    total_removal_count: int | None = None
    # anomalies and errors
    is_flagged: str | None = None
    is_error: bool | None = None

    _nested = {
        "inviter": User,
        "kicker": User,
        "previous_profile": Profile,
        "new_profile": Profile,
        "shared_with": SharedWith,
        "permissions": Permission,
        "old_retention_policy": RetentionPolicy,
        "new_retention_policy": RetentionPolicy,
        "who_can_post": ConversationPref,
        "can_thread": ConversationPref,
        "enable_at_here": FeatureEnablement,
        "enable_at_channel": FeatureEnablement,
        "can_huddle": FeatureEnablement,
    }
    _decoded = {"succeeded_users": json_list, "failed_users": json_list}

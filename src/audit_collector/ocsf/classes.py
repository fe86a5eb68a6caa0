"""The OCSF 1.1.0 classes audit events map to: ids, names and activities, as the schema defines them.

OCSF 1.1.0 is pinned because AWS AppFabric (the managed peer) emits 1.1 and Security Lake checks
custom sources against 1.1 (its validation tool's target); a newer version would give classes Security
Lake's own tables do not have. Only what the mapping needs is here; ``tests/test_ocsf.py`` checks every
id and caption against the schema shipped by the ``ocsf-json-schema`` package, so a typo cannot hide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERSION = "1.1.0"
# The ``host`` profile is declared on every event: in 1.1.0 it is what allows ``actor`` and ``device``
# in the IAM classes other than Account Change and Authentication.
PROFILES = ("host",)

SEVERITIES = {
    0: "Unknown",
    1: "Informational",
    2: "Low",
    3: "Medium",
    4: "High",
    5: "Critical",
    6: "Fatal",
    99: "Other",
}
STATUSES = {0: "Unknown", 1: "Success", 2: "Failure", 99: "Other"}


@dataclass(frozen=True)
class OcsfClass:
    uid: int
    name: str  # the schema's name: the view is ``ocsf_<name>``
    caption: str
    category_uid: int
    category_name: str
    activities: dict[int, str]
    objects: tuple[str, ...]  # the class's own objects the mapping may fill
    has_src_endpoint: bool  # else the client's address goes to ``device.ip``
    has_http_request: bool
    lake: tuple[str, str] = ("", "")  # (short name in a custom source's name, Security Lake's event class)
    fixed: dict[str, object] = field(default_factory=dict)  # attributes every event of the class carries

    def activity_id(self, caption: str) -> int:
        for uid, name in self.activities.items():
            if name == caption:
                return uid
        raise KeyError(f"{self.caption} has no activity {caption!r}: one of {', '.join(self.activities.values())}")


_IAM = (3, "Identity & Access Management")
_APP = (6, "Application Activity")

CLASSES: dict[str, OcsfClass] = {
    c.name: c
    for c in (
        OcsfClass(
            3001,
            "account_change",
            "Account Change",
            *_IAM,
            {
                0: "Unknown",
                1: "Create",
                2: "Enable",
                3: "Password Change",
                4: "Password Reset",
                5: "Disable",
                6: "Delete",
                7: "Attach Policy",
                8: "Detach Policy",
                9: "Lock",
                10: "MFA Factor Enable",
                11: "MFA Factor Disable",
                99: "Other",
            },
            ("user",),
            True,
            True,
            ("acct", "ACCOUNT_CHANGE"),
        ),
        OcsfClass(
            3002,
            "authentication",
            "Authentication",
            *_IAM,
            {
                0: "Unknown",
                1: "Logon",
                2: "Logoff",
                3: "Authentication Ticket",
                4: "Service Ticket Request",
                5: "Service Ticket Renew",
                99: "Other",
            },
            ("user",),
            True,
            True,
            ("authn", "AUTHENTICATION"),
            {"service": True},  # 1.1.0 wants a service or a dst_endpoint: the product signed in to
        ),
        OcsfClass(
            3004,
            "entity_management",
            "Entity Management",
            *_IAM,
            {0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
            ("entity",),
            False,
            False,
            ("entity", "ENTITY_MANAGEMENT_AUDIT"),
        ),
        OcsfClass(
            3005,
            "user_access",
            "User Access Management",
            *_IAM,
            {0: "Unknown", 1: "Assign Privileges", 2: "Revoke Privileges", 99: "Other"},
            ("user", "privileges"),
            False,
            False,
            ("access", "USER_ACCESS"),
        ),
        OcsfClass(
            3006,
            "group_management",
            "Group Management",
            *_IAM,
            {
                0: "Unknown",
                1: "Assign Privileges",
                2: "Revoke Privileges",
                3: "Add User",
                4: "Remove User",
                5: "Delete",
                6: "Create",
                99: "Other",
            },
            ("group", "user", "privileges"),
            False,
            False,
            ("group", "GROUP_MANAGEMENT"),
        ),
        OcsfClass(
            6001,
            "web_resources_activity",
            "Web Resources Activity",
            *_APP,
            {
                0: "Unknown",
                1: "Create",
                2: "Read",
                3: "Update",
                4: "Delete",
                5: "Search",
                6: "Import",
                7: "Export",
                8: "Share",
                99: "Other",
            },
            ("web_resources",),
            True,
            True,
            ("webres", "WEB_RESOURCES_ACTIVITY"),
        ),
        OcsfClass(
            6003,
            "api_activity",
            "API Activity",
            *_APP,
            {0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
            ("api",),
            True,
            True,
            ("api", "API_ACTIVITY"),
        ),
    )
}


def by_uid(uid: int) -> OcsfClass:
    for c in CLASSES.values():
        if c.uid == uid:
            return c
    raise KeyError(f"no OCSF class {uid} in this mapping's set")

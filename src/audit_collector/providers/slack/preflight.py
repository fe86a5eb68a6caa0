"""What is wrong with a Slack deployment, from one ``GET logs?limit=1``: one message per error code.

Slack's Audit Logs API takes only a user token (``xoxp-``) of an Enterprise Grid org owner, with the
``auditlogs:read`` scope, from an app installed on the org. The documented error codes each say
which of these is missing; the codes a configuration cannot cause (a bad cursor, range or action)
say so too, so nobody chases a token that is fine.
"""

from __future__ import annotations

from collections.abc import Mapping

from audit_collector.checks.preflight import Check, clock_check
from audit_collector.collector.provider import ClientSettings
from audit_collector.providers.slack.client import AuditLogsClient
from audit_collector.providers.slack.models import AuditLogsApiError

# Every code the API documents, and the Web API's scope error: what each means for a deployment.
ERROR_MESSAGES = {
    "invalid_authentication": (
        "Slack rejected the token (revoked, mistyped, or not a user token): store a user token (xoxp-) of an "
        "Enterprise org owner, issued by an app installed on the org"
    ),
    "missing_authentication": (
        "no token reached Slack: the secret is empty, or a proxy strips the Authorization header"
    ),
    "feature_not_enabled": (
        "the Audit Logs API is off for this token's org: it needs an Enterprise Grid org (a workspace on another "
        "plan has no audit logs)"
    ),
    "team_not_authorized": (
        "the app is installed on a workspace, not on the Enterprise org: install it at the org level "
        "(Manage apps > org-level install) and issue the token from that install"
    ),
    "user_not_authorized": (
        "the token's user is not an Org Owner: issue the token as the org's Primary Owner or an Org Owner"
    ),
    "missing_scope": "the token lacks the auditlogs:read scope: add it to the app's user scopes, reinstall on the org",
    "rate_limited": (
        "Slack answered 429 to the check's single call: other apps are using the org-wide limit (about 50 calls a "
        "minute, shared) right now; lower SLACK_CALLS_PER_MINUTE, or find the app that reads audit logs too"
    ),
    "bad_endpoint": "SLACK_API_BASE_URL does not point at the Audit Logs API: it must end in /audit/v1/",
    "method_not_allowed": "Slack refused the HTTP method: a proxy rewrote the GET; call the API directly",
    "invalid_workspace": "a workspace named in the request is not in the org (the collector sends none: report it)",
    "invalid_cursor": "Slack refused a cursor the check never sent: report it; the token may be fine",
    "invalid_range": "Slack refused the time range of a request that sent none: report it; the token may be fine",
    "invalid_action": "Slack refused an action filter the check never sent: report it; the token may be fine",
}
TOKEN_TYPES = {
    "xoxb-": "a bot token (xoxb-)",
    "xapp-": "an app-level token (xapp-)",
    "xoxa-": "a workspace app token (xoxa-)",
    "xoxe-": "a refresh token (xoxe-)",
    "xoxc-": "a browser session token (xoxc-)",
}


def token_type_check(token: str) -> Check:
    if token.startswith(("xoxp-", "xoxe.xoxp-")):
        return Check("slack", "token type", True, "a user token (xoxp-)")
    kind = next((name for prefix, name in TOKEN_TYPES.items() if token.startswith(prefix)), "not a Slack token")
    return Check(
        "slack",
        "token type",
        False,
        f"the secret holds {kind}: the Audit Logs API takes only a user token (xoxp-) of an org owner",
    )


def preflight(client: ClientSettings, options: Mapping[str, str]) -> list[Check]:
    """The token's type, then one request: what Slack says of the token, its clock, its limit."""
    checks = [token_type_check(client.token)]
    api = AuditLogsClient(**client.client_kwargs())
    now = client.clock.time()
    try:
        response = api.logs(limit=1)
    except AuditLogsApiError as exc:
        code = exc.error or "unknown"
        message = ERROR_MESSAGES.get(code, f"Slack answered {code!r}: {exc}")
        name = "rate limit" if code == "rate_limited" else "token"
        headers = getattr(exc.response, "headers", None)
        if code == "rate_limited" and headers:
            wait = {k.lower(): v for k, v in headers.items()}.get("retry-after")
            message += f" (Retry-After {wait} s)" if wait else ""
        checks.append(Check("slack", name, False, message))
    except OSError as exc:
        checks.append(Check("slack", "reach", False, f"cannot reach {client.base_url}: {type(exc).__name__}: {exc}"))
        return checks
    else:
        headers = response.headers
        checks.append(Check("slack", "token", True, "accepted: an org owner's token with auditlogs:read, org install"))
        checks.append(Check("slack", "rate limit", True, "no 429 on the check's call"))
    clock = clock_check("slack", headers, now, "Slack")
    return [*checks, clock] if clock else checks

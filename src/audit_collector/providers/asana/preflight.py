"""What is wrong with an Asana deployment, from one ``GET workspaces/{gid}/audit_log_events?limit=1``.

The audit log API needs a service account token of an Enterprise or Enterprise+ domain, and the
domain's (organization's) gid. Asana's documented statuses each say which is missing.
"""

from __future__ import annotations

from collections.abc import Mapping

from audit_collector.checks.preflight import Check, clock_check
from audit_collector.collector.provider import ClientSettings
from audit_collector.providers.asana.client import AsanaAuditLogClient
from audit_collector.providers.asana.models import AsanaApiError

STATUS_MESSAGES = {
    400: "Asana refused the request: ASANA_WORKSPACE_GID must be the domain's numeric gid",
    401: "Asana rejected the token (revoked or mistyped): create a service account token in Admin Console > Apps",
    402: ("the domain's plan has no audit log API (HTTP 402 Payment Required): it needs Enterprise or Enterprise+"),
    403: (
        "the token may not read this domain's audit log (HTTP 403): use a service account token of this domain, "
        "not a personal access token"
    ),
    404: (
        "no such workspace for this token (HTTP 404): ASANA_WORKSPACE_GID must be the gid of the organization "
        "(domain) the service account belongs to"
    ),
    429: (
        "Asana answered 429 to the check's single call: this token is over its limit now (1,500 calls a minute on "
        "paid domains, 150 on free ones); another job may share the token"
    ),
    500: "Asana had a server error (HTTP 500): nothing to fix here; check again later",
}


def preflight(client: ClientSettings, options: Mapping[str, str]) -> list[Check]:
    """One request: what Asana says of the token and the workspace, its clock, its limit."""
    checks = []
    workspace = options.get("workspace_gid", "")
    if not workspace.isdigit():
        return [Check("asana", "workspace", False, f"ASANA_WORKSPACE_GID must be digits, got {workspace!r}")]
    api = AsanaAuditLogClient(**client.client_kwargs())
    now = client.clock.time()
    try:
        page = api.get_audit_log_events(workspace, limit=1)
    except AsanaApiError as exc:
        status = exc.status_code or 0
        message = STATUS_MESSAGES.get(status) or f"Asana answered HTTP {status}: {'; '.join(exc.messages) or exc}"
        said = "; ".join(exc.messages)
        checks.append(Check("asana", "rate limit" if status == 429 else "token", False, f"{message} (Asana: {said})"))
        headers = getattr(exc.response, "headers", None)
    except OSError as exc:
        return [Check("asana", "reach", False, f"cannot reach {client.base_url}: {type(exc).__name__}: {exc}")]
    else:
        headers = getattr(page, "headers", None) or getattr(getattr(page, "response", None), "headers", None)
        checks.append(
            Check("asana", "token", True, f"accepted: service account token, workspace {workspace} has audit logs")
        )
        checks.append(Check("asana", "rate limit", True, "no 429 on the check's call"))
    clock = clock_check("asana", headers, now, "Asana")
    return [*checks, clock] if clock else checks

"""Every AWS call a role makes in moto, checked twice: by moto's own IAM enforcement and by the
statements of the role, with the resource each call really touches.

moto checks a call's action against the caller's policies, but passes the resource as ``*`` for
every service except S3 and SQS (so a statement naming a DynamoDB table would deny everything), and
evaluates no ``s3:prefix`` condition. The ledger sits where moto authorizes a request
(``IAMRequestBase.check_action_permitted``): it computes the call's resources from the request
(the table, the secret, the Glue catalog/database/table, the Athena workgroup), lets moto check
each, then checks the statements itself, ``s3:prefix`` included, and records the call, allowed or
not, with the statements that allowed it. A denial the code swallows (S3 answers a denied
HeadObject with 403, which the archive reads as "absent") is still in the ledger.

What neither moto nor the ledger evaluates: KMS (moto's S3 never calls KMS as the caller, so SSE-KMS
grants are never exercised), bucket policies and other resource policies (moto's S3 enforcement reads
identity policies only), and condition keys other than ``s3:prefix`` (``UNEVALUATED_CONDITION_KEYS``).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .stack import ACCOUNT, PARTITION, REGION

# Condition keys the ledger cannot evaluate (treated as met): a new key in a role fails the suite
# until it is named here with the reason.
UNEVALUATED_CONDITION_KEYS = {
    "aws:SourceAccount": "a trust-policy/service condition: moto's callers are not services",
    "aws:SourceArn": "a service condition: moto's callers are not services",
}


@dataclass(frozen=True)
class Call:
    role: str  # the role's name
    action: str  # service:Operation
    resources: tuple[str, ...]
    context: tuple[tuple[str, str], ...]  # condition keys the ledger knows for this call
    allowed: bool
    statements: tuple[int, ...] = ()  # indexes of the role's statements that allowed it


def _regex(pattern: str) -> str:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one; the rest literal."""
    return "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"


def _match(pattern: str, value: str, *, case: bool = True) -> bool:
    return re.match(_regex(pattern), value, 0 if case else re.IGNORECASE) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_allows(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    if not any(_match(a, action, case=False) for a in _listed(statement.get("Action", []))):
        return False
    if not any(_match(r, resource) for r in _listed(statement.get("Resource", []))):
        return False
    for operator, tests in statement.get("Condition", {}).items():
        for key, expected in tests.items():
            if key not in context:
                if key in UNEVALUATED_CONDITION_KEYS:
                    continue
                return False  # a condition on a key the call does not carry is not met
            if operator == "StringLike":
                ok = any(_match(e, context[key]) for e in _listed(expected))
            elif operator == "StringEquals":
                ok = context[key] in _listed(expected)
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated by tests/iam_ledger.py")
            if not ok:
                return False
    return True


def condition_keys(statements: list[dict[str, Any]]) -> set[str]:
    return {key for s in statements for tests in s.get("Condition", {}).values() for key in tests}


@dataclass
class Ledger:
    roles: dict[str, list[dict[str, Any]]]  # role name -> statements
    calls: list[Call] = field(default_factory=list)

    def denied(self, role: str | None = None) -> list[Call]:
        return [c for c in self.calls if not c.allowed and (role is None or c.role == role)]

    def used(self, role: str) -> set[tuple[int, str, str]]:
        """(statement index, action pattern, resource pattern) of the role that allowed some call."""
        out = set()
        statements = self.roles[role]
        for call in self.calls:
            if call.role != role or not call.allowed:
                continue
            context = dict(call.context)
            for index in call.statements:
                statement = statements[index]
                for action in _listed(statement["Action"]):
                    if not _match(action, call.action, case=False):
                        continue
                    for resource in _listed(statement["Resource"]):
                        if any(_match(resource, r) for r in call.resources):
                            single = dict(statement, Action=action, Resource=resource)
                            if any(statement_allows(single, call.action, r, context) for r in call.resources):
                                out.add((index, action, resource))
        return out


def _request_json(request: Any) -> dict[str, Any]:
    try:
        return json.loads(request._body or b"{}")
    except ValueError:
        return {}


# Bucket sub-resources moto authorizes as s3:ListBucket (its default for a bucket GET), and the
# action AWS authorizes each as.
BUCKET_GETS = {
    "object-lock": "s3:GetBucketObjectLockConfiguration",
    "encryption": "s3:GetEncryptionConfiguration",
    "notification": "s3:GetBucketNotification",
    "versioning": "s3:GetBucketVersioning",
}


# moto from 5.2.6 authorizes some S3 requests by their operation's name, which no IAM policy grants;
# AWS authorizes each as this action (the Service Authorization Reference's S3 table).
OPERATION_ACTIONS = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "s3:HeadObject": "s3:GetObject",
    "s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "s3:PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "s3:GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:CopyObject": "s3:PutObject",  # on the destination, the resource moto passes
}


def actions_of(request: Any) -> list[str]:
    """What AWS authorizes the request as. moto names GetObjectAttributes s3:GetObject (AWS wants
    s3:GetObject and s3:GetObjectAttributes) and several bucket GETs s3:ListBucket."""
    query = parse_qs(urlsplit(request._path).query, True)
    if request._action == "s3:GetObject" and "attributes" in query:
        return ["s3:GetObject", "s3:GetObjectAttributes"]
    if request._action == "s3:ListBucket":
        named = [action for sub, action in BUCKET_GETS.items() if sub in query]
        if named:
            return named[:1]
    return [request._action]


def resources_of(request: Any, moto_resource: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The resources a call touches, and the condition keys it carries, as AWS would authorize it."""
    service, _, operation = request._action.partition(":")
    body = _request_json(request)
    base = f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}"
    if service == "s3":
        context = {}
        if operation == "ListBucket" and not set(parse_qs(urlsplit(request._path).query, True)) & set(BUCKET_GETS):
            query = parse_qs(urlsplit(request._path).query)
            context["s3:prefix"] = query.get("prefix", [""])[0]
        return (moto_resource,), context
    if service == "dynamodb":
        return (f"{base}:table/{body.get('TableName')}",), {}
    if service == "secretsmanager":
        from moto.secretsmanager.models import secretsmanager_backends

        backend = secretsmanager_backends[ACCOUNT][REGION]
        secret_id = body.get("SecretId", "")
        secret = backend.secrets.get(secret_id) if secret_id in backend.secrets else None
        return ((secret.arn if secret else f"{base}:secret:{secret_id}"),), {}
    if service == "glue":
        database = body.get("DatabaseName") or (body.get("Name") if operation == "GetDatabase" else None)
        table = body.get("TableName") or (body.get("Name") if operation != "GetDatabase" else None)
        table = table or body.get("TableInput", {}).get("Name")
        found = [f"{base}:catalog"]
        if database:
            found.append(f"{base}:database/{database}")
        if database and table:
            found.append(f"{base}:table/{database}/{table}")
        return tuple(found), {}
    if service == "athena":
        workgroup = body.get("WorkGroup")
        if not workgroup and body.get("QueryExecutionId"):
            from moto.athena.models import athena_backends

            execution = athena_backends[ACCOUNT][REGION].executions.get(body["QueryExecutionId"])
            workgroup = execution.workgroup.name if execution and execution.workgroup else "primary"
        return (f"{base}:workgroup/{workgroup or 'primary'}",), {}
    if service == "sqs":  # moto knows the queue from QueueUrl only; GetQueueUrl names it
        name = body.get("QueueName") or str(body.get("QueueUrl", "")).rsplit("/", 1)[-1]
        return ((f"{base}:{name}" if name else moto_resource),), {}
    if service == "kms":
        key = str(body.get("KeyId", ""))
        return ((key if key.startswith("arn:") else f"{base}:key/{key}"),), {}
    return (moto_resource,), {}


@contextlib.contextmanager
def recording(roles: dict[str, list[dict[str, Any]]]) -> Iterator[Ledger]:
    """IAM enforcement on (every call needs a permission), each call recorded in the ledger."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam import access_control

    for statements in roles.values():
        unknown = condition_keys(statements) - {"s3:prefix"} - set(UNEVALUATED_CONDITION_KEYS)
        assert not unknown, f"condition keys the ledger does not evaluate: {unknown}; add them with a reason"
    ledger = Ledger(roles)
    original = access_control.IAMRequestBase.check_action_permitted

    def checked(request: Any, resource: str) -> None:
        arn = request._access_key.arn
        role = arn.split(":assumed-role/", 1)[1].split("/", 1)[0] if ":assumed-role/" in arn else arn
        request._action = OPERATION_ACTIONS.get(request._action, request._action)
        resources, context = resources_of(request, resource)
        statements = roles.get(role, [])
        for action in actions_of(request):
            request._action = action
            allowing = tuple(
                i for i, s in enumerate(statements) if any(statement_allows(s, action, r, context) for r in resources)
            )
            every = all(any(statement_allows(s, action, r, context) for s in statements) for r in resources)
            try:
                for each in resources:  # moto's own verdict, for each resource the call touches
                    original(request, each)
                if not every:
                    request._raise_access_denied()
            except Exception:
                ledger.calls.append(Call(role, action, resources, tuple(context.items()), False))
                raise
            ledger.calls.append(Call(role, action, resources, tuple(context.items()), True, allowing))

    old_count, old_match = settings.INITIAL_NO_AUTH_ACTION_COUNT, access_control.IAMPolicyStatement._match
    access_control.IAMRequestBase.check_action_permitted = checked
    # moto turns a pattern into a regex unescaped: the "?" of a secret's "-??????" breaks it.
    access_control.IAMPolicyStatement._match = staticmethod(
        lambda pattern, string: re.match(_regex(pattern), string, 0 if string.startswith("arn:") else re.IGNORECASE)
    )
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield ledger
    finally:
        access_control.IAMRequestBase.check_action_permitted = original
        access_control.IAMPolicyStatement._match = old_match
        settings.INITIAL_NO_AUTH_ACTION_COUNT = old_count

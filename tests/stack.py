"""template.yaml as deployed, offline: SAM's transform, the resources in moto, each function's role.

Why not moto's CloudFormation: it supports too few of the stack's types (no Glue, Athena, Scheduler,
bucket policies), leaves ``${AuditDatabase}`` unresolved inside the roles' policies when the resource
is a type it skips, keeps ``AWS::NoValue`` as ``None`` inside statement lists, and stores inline
policies as Python reprs that its own IAM enforcement cannot parse. So the intrinsics of the
translated template are resolved here (names chosen up front, so every ARN is known before anything
exists) and each resource is created through its service's API in moto.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from audit_collector import providers

from .support import ROOT, FakeClock, FakeContext

if TYPE_CHECKING:
    from audit_collector.emulator import Emulator

REGION, ACCOUNT, PARTITION, STACK = "us-east-1", "123456789012", "aws", "audit"
NO_VALUE = object()


# ------------------------------------------------------------------ SAM's transform


@functools.cache
def _translated(parameters: tuple[tuple[str, str], ...]) -> str:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    document = yaml_parse((ROOT / "template.yaml").read_text())
    for resource in document["Resources"].values():  # what `sam package` does before CloudFormation
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/function.zip"
    return json.dumps(transform(document, dict(parameters), NoManagedPolicies()))


def translate(parameters: dict[str, str]) -> dict[str, Any]:
    """The CloudFormation template SAM produces for these parameter values (a fresh copy)."""
    return json.loads(_translated(tuple(sorted(parameters.items()))))


# ------------------------------------------------------------------ intrinsics


def physical_name(stack: str, logical: str, kind: str) -> str:
    """Deterministic names, chosen before anything is created (buckets want lower case)."""
    name = f"{stack}-{logical}"
    return name.lower() if kind == "AWS::S3::Bucket" else name


def _attributes(stack: str, logical: str, resource: dict[str, Any]) -> dict[str, str]:
    kind = resource["Type"]
    name = physical_name(stack, logical, kind)
    arn = f"arn:{PARTITION}"
    if kind == "AWS::S3::Bucket":
        return {"Ref": name, "Arn": f"{arn}:s3:::{name}"}
    if kind == "AWS::DynamoDB::Table":
        return {"Ref": name, "Arn": f"{arn}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
    if kind == "AWS::SQS::Queue":
        url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        return {"Ref": url, "Arn": f"{arn}:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name, "QueueUrl": url}
    if kind == "AWS::IAM::Role":
        return {"Ref": name, "Arn": f"{arn}:iam::{ACCOUNT}:role/{name}", "RoleId": name}
    if kind == "AWS::IAM::ManagedPolicy":
        return {"Ref": f"{arn}:iam::{ACCOUNT}:policy/{name}", "PolicyName": name}
    if kind == "AWS::SNS::Topic":
        return {"Ref": f"{arn}:sns:{REGION}:{ACCOUNT}:{name}", "TopicArn": f"{arn}:sns:{REGION}:{ACCOUNT}:{name}"}
    if kind == "AWS::Events::Rule":
        return {"Ref": name, "Arn": f"{arn}:events:{REGION}:{ACCOUNT}:rule/{name}"}
    if kind == "AWS::Lambda::Function":
        return {"Ref": name, "Arn": f"{arn}:lambda:{REGION}:{ACCOUNT}:function:{name}"}
    if kind == "AWS::Logs::LogGroup":  # the name is the template's; CloudFormation's Arn ends in :*
        return {"Ref": logical, "Arn": f"{arn}:logs:{REGION}:{ACCOUNT}:log-group:{logical}:*"}
    if kind == "AWS::Glue::Database":
        return {"Ref": logical}
    if kind == "AWS::Athena::WorkGroup":
        return {"Ref": logical}
    if kind == "AWS::KMS::Key":
        key = f"{arn}:kms:{REGION}:{ACCOUNT}:key/{logical}"
        return {"Ref": logical, "Arn": key, "KeyId": logical}
    return {"Ref": name, "Arn": f"{arn}:{kind}:{name}"}  # never called by the code: never created


class Resolver:
    """Ref, Fn::GetAtt, Fn::Sub, Fn::If and the condition functions, over one template."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], stack: str = STACK) -> None:
        self.template = template
        self.parameters = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::StackName": stack,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.attributes: dict[str, dict[str, str]] = {}
        for logical, resource in template["Resources"].items():
            self.attributes[logical] = _attributes(stack, logical, resource)
        # Log groups and databases are named by the template itself: resolve their names first.
        for logical, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Logs::LogGroup":
                name = self.resolve(props["LogGroupName"])
                self.attributes[logical] = {
                    "Ref": name,
                    "Arn": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
                }
            elif resource["Type"] == "AWS::SQS::Queue" and "QueueName" in props:
                name = self.resolve(props["QueueName"])
                url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
                arn = f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}"
                self.attributes[logical] = {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}
            elif resource["Type"] == "AWS::Glue::Database":
                self.attributes[logical] = {"Ref": self.resolve(props["DatabaseInput"]["Name"])}
            elif resource["Type"] == "AWS::Athena::WorkGroup":
                self.attributes[logical] = {"Ref": self.resolve(props["Name"])}
            elif resource["Type"] == "AWS::Lambda::Function" and "FunctionName" in props:
                name = self.resolve(props["FunctionName"])
                self.attributes[logical] = {
                    "Ref": name,
                    "Arn": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
                }
        self.conditions = {name: bool(self.resolve(c)) for name, c in template.get("Conditions", {}).items()}

    def exists(self, logical: str) -> bool:
        condition = self.template["Resources"][logical].get("Condition")
        return condition is None or self.condition(condition)

    def condition(self, name: str) -> bool:
        if name not in getattr(self, "conditions", {}):
            return bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.attributes[name]["Ref"]

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Condition" and isinstance(value, str):
                return self.condition(value)
            if key.startswith("Fn::"):
                return self._function(key[4:], value)
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _function(self, name: str, value: Any) -> Any:
        if name == "GetAtt":
            logical, attribute = value if isinstance(value, list) else value.split(".", 1)
            return self.attributes[logical][attribute]
        if name == "Sub":
            text, names = (value, {}) if isinstance(value, str) else (value[0], self.resolve(value[1]))
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), names), text)
        if name == "If":
            condition, yes, no = value
            return self.resolve(yes if self.condition(condition) else no)
        if name == "Join":
            return value[0].join(str(v) for v in self.resolve(value[1]))
        if name == "Split":
            return str(self.resolve(value[1])).split(value[0])
        if name == "Select":
            return self.resolve(value[1])[int(self.resolve(value[0]))]
        if name == "Equals":
            return str(self.resolve(value[0])) == str(self.resolve(value[1]))
        if name == "Not":
            return not self.resolve(value[0])
        if name == "And":
            return all(self.resolve(v) for v in value)
        if name == "Or":
            return any(self.resolve(v) for v in value)
        raise NotImplementedError(f"Fn::{name} is not resolved offline; add it to tests/stack.py")

    def _sub(self, name: str, names: dict[str, Any]) -> str:
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in names:
            return str(names[name])
        if "." in name:
            logical, attribute = name.split(".", 1)
            return str(self.attributes[logical][attribute])
        return str(self.ref(name))


# ------------------------------------------------------------------ the deployed stack


@dataclass
class Function:
    """A Lambda function as the template defines it: its code's entry point, role and inputs."""

    logical: str
    handler: str
    role: str  # the role's logical id
    environment: dict[str, str]
    payloads: list[dict[str, Any]]  # what its schedules send


@dataclass
class Stack:
    template: dict[str, Any]
    resolver: Resolver
    functions: dict[str, Function] = field(default_factory=dict)
    roles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # logical id -> statements
    policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # managed policies, likewise

    def name(self, logical: str) -> str:
        return self.resolver.attributes[logical]["Ref"]

    def arn(self, logical: str) -> str:
        return self.resolver.attributes[logical]["Arn"]

    def of_type(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical, resource in self.template["Resources"].items():
            if resource["Type"] == kind and self.resolver.exists(logical):
                yield logical, self.resolver.resolve(resource.get("Properties", {}))


CREATORS: dict[str, Callable[[Stack, str, dict[str, Any]], None]] = {}


def creates(kind: str):
    def register(fn):
        CREATORS[kind] = fn
        return fn

    return register


@creates("AWS::KMS::Key")  # first: moto names the key, and the roles and variables name it
def _kms_key(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    found = boto3.client("kms", region_name=REGION).create_key(
        Description=props.get("Description", ""),
        KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
        KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
    )["KeyMetadata"]
    stack.resolver.attributes[logical] = {"Ref": found["KeyId"], "Arn": found["Arn"], "KeyId": found["KeyId"]}


@creates("AWS::S3::Bucket")
def _bucket(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    name = stack.name(logical)
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=bool(props.get("ObjectLockEnabled")))
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
    if props.get("ObjectLockConfiguration"):
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=props["ObjectLockConfiguration"])
    notifications = props.get("NotificationConfiguration")
    if notifications and "EventBridgeConfiguration" in notifications:
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


@creates("AWS::DynamoDB::Table")
def _table(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=stack.name(logical),
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
    )


@creates("AWS::SQS::Queue")
def _queue(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    attributes = {}
    for key in ("MessageRetentionPeriod", "VisibilityTimeout", "KmsMasterKeyId", "SqsManagedSseEnabled"):
        if key in props:
            attributes[key] = str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
    if "RedrivePolicy" in props:
        attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    boto3.client("sqs", region_name=REGION).create_queue(
        QueueName=stack.resolver.attributes[logical]["QueueName"], Attributes=attributes
    )


@creates("AWS::IAM::Role")
def _role(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    iam = boto3.client("iam", region_name=REGION)
    name = stack.name(logical)
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
    statements = []
    for policy in props.get("Policies", []):
        iam.put_role_policy(
            RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
        )
        statements += policy["PolicyDocument"]["Statement"]
    if props.get("ManagedPolicyArns"):
        raise AssertionError(f"{logical} attaches managed policies: their statements are not measured here")
    stack.roles[logical] = statements


@creates("AWS::IAM::ManagedPolicy")
def _managed_policy(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    boto3.client("iam", region_name=REGION).create_policy(
        PolicyName=stack.resolver.attributes[logical]["PolicyName"], PolicyDocument=json.dumps(props["PolicyDocument"])
    )
    stack.policies[logical] = props["PolicyDocument"]["Statement"]


@creates("AWS::Glue::Database")
def _database(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    boto3.client("glue", region_name=REGION).create_database(DatabaseInput=props["DatabaseInput"])


@creates("AWS::Glue::Table")
def _glue_table(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    boto3.client("glue", region_name=REGION).create_table(
        DatabaseName=props["DatabaseName"], TableInput=props["TableInput"]
    )


@creates("AWS::Athena::WorkGroup")
def _workgroup(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    configuration = dict(props.get("WorkGroupConfiguration", {}))
    if "BytesScannedCutoffPerQuery" in configuration:  # a Number parameter arrives as text
        configuration["BytesScannedCutoffPerQuery"] = int(configuration["BytesScannedCutoffPerQuery"])
    boto3.client("athena", region_name=REGION).create_work_group(Name=props["Name"], Configuration=configuration)


@creates("AWS::Events::Rule")
def _rule(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    events = boto3.client("events", region_name=REGION)
    name = stack.name(logical)
    events.put_rule(Name=name, EventPattern=json.dumps(props["EventPattern"]), State=props.get("State", "ENABLED"))
    if props.get("Targets"):
        events.put_targets(Rule=name, Targets=props["Targets"])


@creates("AWS::SQS::QueuePolicy")
def _queue_policy(stack: Stack, logical: str, props: dict[str, Any]) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for url in props["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})


def _functions(stack: Stack) -> None:
    payloads: dict[str, list[dict[str, Any]]] = {}
    for _, props in stack.of_type("AWS::Scheduler::Schedule"):
        payloads.setdefault(props["Target"]["Arn"], []).append(json.loads(props["Target"]["Input"]))
    for logical, resource in stack.template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function" or not stack.resolver.exists(logical):
            continue
        role_logical = resource["Properties"]["Role"]["Fn::GetAtt"][0]
        props = stack.resolver.resolve(resource["Properties"])
        stack.functions[logical] = Function(
            logical=logical,
            handler=props["Handler"],
            role=role_logical,
            environment={k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
            payloads=payloads.get(stack.arn(logical), []),
        )


def plain_template(name: str) -> dict[str, Any]:
    """A template without the SAM transform (siem-consumer.yaml), its short tags as Fn:: forms."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse((ROOT / name).read_text())


def deploy(
    parameters: dict[str, str],
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
    template: dict[str, Any] | None = None,
    name: str = STACK,
) -> Stack:
    """The translated template's resources (or ``template``'s), created in the moto backend that is
    active now. ``edit`` changes the template first (a test that removes a permission, say)."""
    template = template if template is not None else translate(parameters)
    if edit is not None:
        edit(template)
    stack = Stack(template, Resolver(template, parameters, name))
    for kind in CREATORS:  # buckets, tables and queues before what points at them
        for logical, props in stack.of_type(kind):
            CREATORS[kind](stack, logical, props)
    _functions(stack)
    return stack


def role_credentials(stack: Stack, role_logical: str) -> dict[str, str]:
    """Temporary credentials of the role, as Lambda hands them to the function (its variables)."""
    found = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=stack.arn(role_logical), RoleSessionName=f"{role_logical}-session"
    )["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": found["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": found["SecretAccessKey"],
        "AWS_SESSION_TOKEN": found["SessionToken"],
    }


# ------------------------------------------------------------------ running a function as Lambda would


class Deployment:
    """The stack in moto, the emulator behind its API hosts, and one clock for both."""

    def __init__(self, stack: Stack, emulator: Emulator, clock: FakeClock) -> None:
        self.stack, self.emulator, self.clock = stack, emulator, clock
        self.credentials = {logical: role_credentials(stack, logical) for logical in stack.roles}

    def environment(self, logical: str) -> dict[str, str]:
        """The function's variables as the template sets them; only the API hosts point at the
        emulator (tests talk to 127.0.0.1 only)."""
        env = dict(self.stack.functions[logical].environment)
        for descriptor in providers.all_descriptors():
            if descriptor.base_url_env in env:
                env[descriptor.base_url_env] = self.emulator.api(descriptor.name).base_url
        return env

    def invoke(self, logical: str, event: Any) -> Any:
        """The function's handler, with its role's credentials and its environment, nothing else."""
        from aws_lambda_powertools.utilities import parameters

        from audit_collector.aws import handler
        from audit_collector.aws.config import environment_variables

        function = self.stack.functions[logical]
        saved = dict(os.environ)
        for name in environment_variables():
            os.environ.pop(name, None)
        os.environ.update(self.environment(logical))
        os.environ.update(self.credentials[function.role])
        os.environ["AWS_DEFAULT_REGION"] = REGION
        boto3.DEFAULT_SESSION = None  # a fresh container: no client made under other credentials
        handler.aws_adapters.cache_clear()
        parameters.clear_caches()
        parameters.base.DEFAULT_PROVIDERS.clear()
        module, _, name = function.handler.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)(event, FakeContext())
        finally:
            os.environ.clear()
            os.environ.update(saved)
            boto3.DEFAULT_SESSION = None

"""What each provider deploys, built from its descriptor alone: one function per kind of block that
``template.py`` writes at a ``#@ <block>`` mark of the base (parameters, conditions, schedules, ...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from audit_collector.aws.yaml_text import NO_VALUE, Comment, Flow, Tag, get_att, ref, sub
from audit_collector.collector.provider import Descriptor, Option
from audit_collector.compaction import sql
from audit_collector.compaction.rules import COMPACTED

NAMESPACE, SERVICE = "AuditCollector", "audit-collector"  # the metrics' namespace and service dimension


def english(words: Sequence[str]) -> str:
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def raw_table_id(d: Descriptor) -> str:
    """``SlackAuditLogsTable``: the key, then the table's name after the provider's."""
    return d.key + camel(d.table.removeprefix(f"{d.name}_")) + "Table"


def _enabled(d: Descriptor) -> str:
    return f"{d.key}Enabled"


def _set(parameter: str) -> Flow:
    return Flow(Tag("Not", [Tag("Equals", [ref(parameter), ""])]))


def _required(d: Descriptor) -> list[Option]:
    return [o for o in d.options if o.required]


# ------------------------------------------------------------------ blocks: (descriptor) -> mapping or items


def parameters(d: Descriptor) -> dict[Any, Any]:
    token = d.token_help or f"the {d.title} token"
    out: dict[Any, Any] = {
        d.secret_parameter: {
            "Type": "String",
            "Default": "",
            "Description": f"Secrets Manager secret (name or full ARN) holding {token}. Empty disables {d.key}.",
        }
    }
    for option in d.options:
        help_ = option.help[:1].upper() + option.help[1:] + "."
        out[d.option_parameter(option)] = {
            "Type": "String",
            "Default": "",
            **({"AllowedPattern": option.pattern} if option.pattern else {}),
            "Description": f"{help_} Empty disables {d.key}." if option.required else help_,
        }
    return out


def parameter_names(d: Descriptor) -> list[Any]:
    return [d.secret_parameter, *(d.option_parameter(o) for o in d.options)]


def conditions(d: Descriptor) -> dict[Any, Any]:
    needed = [_set(d.secret_parameter), *(_set(d.option_parameter(o)) for o in _required(d))]
    secret = Flow(Tag("Equals", [Tag("Select", [0, Tag("Split", [":", sub(f"${{{d.secret_parameter}}}:")])]), "arn"]))
    return {_enabled(d): needed[0] if len(needed) == 1 else Tag("And", needed), f"{d.key}SecretIsArn": secret}


def token_statements(d: Descriptor) -> list[Any]:
    account = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
    arn = f"{account}:secret:${{{d.secret_parameter}}}-??????"  # a name: its ARN ends in 6 random characters
    statement = {
        "Sid": f"Read{d.key}Token",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": Tag("If", [f"{d.key}SecretIsArn", ref(d.secret_parameter), sub(arn)]),
    }
    return [Tag("If", [_enabled(d), statement, NO_VALUE])]


def environment(d: Descriptor) -> dict[Any, Any]:
    return {
        d.secret_env: ref(d.secret_parameter),
        **{o.env: ref(d.option_parameter(o)) for o in d.options},
        d.base_url_env: d.default_base_url,
        Comment(
            f"{d.key}'s pace, under its published {d.rate_limit_per_minute:g} a minute; lower it if others share it."
        ): 0,
        d.pace_env: f"{d.calls_per_minute:g}",
    }


def schedules(d: Descriptor) -> dict[Any, Any]:
    target = {
        "Arn": get_att("CollectorFunction.Arn"),
        "RoleArn": get_att("SchedulerRole.Arn"),
        "Input": f'{{"provider": "{d.name}"}}',
        "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
        "DeadLetterConfig": {"Arn": get_att("DeadLetterQueue.Arn")},
    }
    properties = {
        "Description": f"Collect {d.key} {d.events_noun}.",
        "ScheduleExpression": ref("ScheduleExpression"),
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": target,
    }
    return {
        f"{d.key}Schedule": {"Type": "AWS::Scheduler::Schedule", "Condition": _enabled(d), "Properties": properties}
    }


_TEXT = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
}
_DT = [{"Name": "dt", "Type": "string"}]


def _glue(table: dict[Any, Any]) -> dict[Any, Any]:
    return {
        "Type": "AWS::Glue::Table",
        "Properties": {"CatalogId": ref("AWS::AccountId"), "DatabaseName": ref("AuditDatabase"), "TableInput": table},
    }


def _projected(d: Descriptor, classification: str) -> dict[Any, Any]:
    """Partition projection over the provider's dt= folders, from its first event on."""
    return {
        "classification": classification,
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": f"{d.first_event:%Y-%m-%d},NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        "storage.location.template": sub(f"s3://${{ArchiveBucket}}/${{ArchivePrefix}}{d.name}/dt=${{!dt}}/"),
    }


def _columns(columns: Sequence[tuple[str, str, str]]) -> list[Any]:
    return [Flow({"Name": n, "Type": t, **({"Comment": c} if c else {})}) for n, t, c in columns]


def tables(d: Descriptor) -> dict[Any, Any]:
    """The raw JSON table; with compaction, the raw lines (compaction reads them) and the Parquet days."""
    raw = sub(f"s3://${{ArchiveBucket}}/${{ArchivePrefix}}{d.name}/")
    out = {
        raw_table_id(d): _glue(
            {
                "Name": d.table,
                "TableType": "EXTERNAL_TABLE",
                "Parameters": _projected(d, "json"),
                "PartitionKeys": _DT,
                "StorageDescriptor": {
                    "Location": raw,
                    **_TEXT,
                    "SerdeInfo": {
                        "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
                        "Parameters": {"ignore.malformed.json": "false"},
                    },
                    "Columns": _columns([(c.name, c.athena, c.comment) for c in d.columns]),
                },
            }
        )
    }
    if not sql.compacted(d):
        return out
    out[f"{d.key}LinesTable"] = _glue(
        {
            "Name": sql.lines_table(d),
            "Description": "The raw archive, one row per event holding its exact JSON text (compaction reads this).",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": _projected(d, "text"),
            "PartitionKeys": _DT,
            "StorageDescriptor": {
                "Location": raw,
                **_TEXT,
                "SerdeInfo": {
                    Comment(
                        "The default field delimiter (\\001) never occurs in JSON text: each line is one field."
                    ): 0,
                    "SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                    "Parameters": {"serialization.format": "1"},
                },
                "Columns": _columns([("line", "string", "The event's JSON text, byte for byte as archived")]),
            },
        }
    )
    out[f"{d.key}CompactedTable"] = _glue(
        {
            "Name": sql.compacted_table(d),
            "Description": "Closed days as Parquet (zstd), sorted by event type then time; partitions are added by "
            "the compaction function.",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "parquet.compression": "ZSTD"},
            "PartitionKeys": _DT,
            "StorageDescriptor": {
                "Location": sub(f"s3://${{ArchiveBucket}}/${{ArchivePrefix}}{COMPACTED}/{d.name}/"),
                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
                "Columns": _columns([(name, athena, "") for name, athena, _ in sql.columns(d)]),
            },
        }
    )
    return out


def queries(d: Descriptor) -> dict[Any, Any]:
    return {
        f"Query{d.key}{q.id}": {
            "Type": "AWS::Athena::NamedQuery",
            "Properties": {
                "Name": q.name,
                "Database": ref("AuditDatabase"),
                "WorkGroup": ref("AthenaWorkGroup"),
                "QueryString": q.sql,
            },
        }
        for q in d.athena_queries
    }


def user_activity_sql(descriptors: Sequence[Descriptor]) -> str:
    """Everything one user did in every provider that says how (``Descriptor.activity``): one query
    an investigator edits (the e-mail), instead of one per API with its own column names."""
    parts = [
        f"SELECT '{d.name}' AS source, {a.at} AS at, {a.event} AS event, {a.ip} AS ip\n"
        f"FROM {d.table}\n"
        "WHERE dt >= date_format(current_date - interval '30' day, '%Y-%m-%d')\n"
        f"  AND {a.email} = 'someone@example.com'\n"
        for d in descriptors
        if (a := d.activity) is not None
    ]
    return "UNION ALL\n".join(parts) + "ORDER BY at\n" if parts else ""


def user_activity(descriptors: Sequence[Descriptor]) -> dict[Any, Any]:
    """The saved query over every provider (none when no provider says how to read its activity)."""
    text = user_activity_sql(descriptors)
    if not text:
        return {}
    keys = english([d.key for d in descriptors if d.activity is not None])
    return {
        "QueryEventsByUser": {
            "Type": "AWS::Athena::NamedQuery",
            "Properties": {
                "Name": f"Everything one user did, {keys} (last 30 days; edit the e-mail)",
                "Database": ref("AuditDatabase"),
                "WorkGroup": ref("AthenaWorkGroup"),
                "QueryString": text,
            },
        }
    }


def _alarm(d: Descriptor, description: str, metric: str, **settings: Any) -> dict[Any, Any]:
    ok = settings.pop("ok", True)
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Condition": _enabled(d),
        "Properties": {
            "AlarmDescription": description,
            "Namespace": NAMESPACE,
            "MetricName": metric,
            "Dimensions": [Flow({"Name": "service", "Value": SERVICE}), Flow({"Name": "provider", "Value": d.name})],
            **settings,
            "AlarmActions": Flow([ref("AlarmTopic")]),
            **({"OKActions": Flow([ref("AlarmTopic")])} if ok else {}),
        },
    }


def alarms(d: Descriptor) -> dict[Any, Any]:
    k = d.key
    quiet: dict[str, Any] = {"TreatMissingData": "notBreaching"}
    return {
        f"{k}LagAlarm": _alarm(
            d,
            f"The {k} archive trails real time by more than LagAlarmSeconds.",
            "SecondsBehind",
            **{"Statistic": "Minimum", "Period": 900, "EvaluationPeriods": 2, "Threshold": ref("LagAlarmSeconds")},
            ComparisonOperator="GreaterThanThreshold",
            **quiet,
        ),
        f"{k}SweepOverdueAlarm": _alarm(
            d,
            f"A {k} late-event pass has waited over an hour past its time (the sweep's share is too small for its "
            "queue, or its pages keep failing). Late events are not lost yet; see the function's sweep log lines.",
            "SweepOverdue",
            **{"Statistic": "Minimum", "Period": 3600, "EvaluationPeriods": 3, "Threshold": 0},
            ComparisonOperator="GreaterThanThreshold",
            **quiet,
        ),
        f"{k}LateEventsUncheckedAlarm": _alarm(
            d,
            f"A {k} late-event pass was given up (its queue was full, it failed five turns in a row, or its stretch "
            "is older than the API keeps): late events in that stretch may be missing. The log line names the "
            "stretch; re-read it with a backfill of that range into a new archive, or accept the risk.",
            "LateEventsUnchecked",
            **{"Statistic": "Sum", "Period": 3600, "EvaluationPeriods": 1, "Threshold": 0},
            ComparisonOperator="GreaterThanThreshold",
            ok=False,
            **quiet,
        ),
        f"{k}NoDataAlarm": _alarm(
            d,
            f"No {k} run has reported for NoDataAlarmHours (schedule disabled, function failing before it reports).",
            "SecondsBehind",
            **{"Statistic": "SampleCount", "Period": 3600, "EvaluationPeriods": ref("NoDataAlarmHours")},
            Threshold=1,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="breaching",
        ),
    }


def outputs(d: Descriptor) -> dict[Any, Any]:
    return {f"{d.key}Table": {"Value": sub(f"${{AuditDatabase}}.{d.table}")}}


# A block mark: its function, whether it writes list items (else mapping entries), and whether its
# resources stand apart (a blank line between providers).
BLOCKS: dict[str, tuple[Callable[[Descriptor], Any], bool, bool]] = {
    "parameters": (parameters, False, False),
    "parameter-names": (parameter_names, True, False),
    "conditions": (conditions, False, False),
    "token-statements": (token_statements, True, False),
    "environment": (environment, False, False),
    "schedules": (schedules, False, True),
    "tables": (tables, False, True),
    "queries": (queries, False, True),
    "alarms": (alarms, False, True),
    "outputs": (outputs, False, False),
}
# A mark written once from every provider together (not once per provider).
TOGETHER: dict[str, Callable[[Sequence[Descriptor]], dict[Any, Any]]] = {"user-activity": user_activity}

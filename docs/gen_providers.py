"""Writes the site's ``providers.md`` (Providers reference) from the provider registry at build time.

Run by the mkdocs-gen-files plugin (``mkdocs.yml``), so the page follows the registry: a provider added
to ``providers.BUILTIN``, or plugged in by an entry point, is documented with its token, variables,
options, pace, retention, page size and tables, and no page of ``docs/`` is edited by hand.
``render()`` is a plain function: the docs tests call it to count a variable or flag as documented.
``python docs/gen_providers.py`` prints the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from audit_collector import providers
from audit_collector.aws.config import provider_variables
from audit_collector.collector.provider import Descriptor, Option
from audit_collector.compaction import sql

PAGE = "providers.md"
UNITS = {1: "epoch seconds", 1000: "epoch milliseconds"}


def render(descriptors: Iterable[Descriptor] | None = None) -> str:
    """The whole page, for ``descriptors`` (default: every registered provider, in registry order)."""
    found = tuple(providers.all_descriptors() if descriptors is None else descriptors)
    listed = ", ".join(f"[{d.title}](#{d.name}) (`{d.name}`)" for d in found) or "none"
    parts = [
        "# Providers reference",
        "",
        "Generated from the provider registry when the site is built (`docs/gen_providers.py`): every",
        "provider registered, built in (`providers.BUILTIN`) or plugged in by an entry point, is on this",
        "page with nothing written by hand ([Adding a source](adding-a-source.md)). The settings every",
        "provider shares are on [Deploy](deploy.md#configuration-environment-set-by-the-template) and",
        "[The CLI](cli.md).",
        "",
        f"Registered: {listed}.",
        "",
        "Each provider `NAME` brings the same set of names: in the Lambda, `NAME_TOKEN_SECRET_ID` (the",
        "Secrets Manager secret holding its token; set, with its required options, it enables the",
        "provider), `NAME_API_BASE_URL` and `NAME_CALLS_PER_MINUTE`, all set by the template; in the",
        "CLI, `NAME_TOKEN` holds the token itself (or `--token-env`, `--secret-id`). Its options add a",
        "variable, a template parameter and a CLI flag each.",
        "",
    ]
    for descriptor in found:
        parts += _provider(descriptor)
    return "\n".join(parts)


def _provider(d: Descriptor) -> list[str]:
    token = d.token_help or f"the {d.title} token"
    prefix = f"`<prefix>{d.name}/`"
    return [
        f"## {d.title} {{#{d.name}}}",
        "",
        f'`--provider {d.name}`, `{{"provider": "{d.name}"}}`: {d.title} {d.events_noun}, archived under '
        f"{prefix} and queried as `{d.table}`. The Lambda collects it when {_enabled_by(d)} set.",
        "",
        *_token(d, token),
        *_variables(d, token),
        *_options(d),
        *_limits(d),
        *_tables(d),
    ]


def _enabled_by(d: Descriptor) -> str:
    names = [f"`{d.secret_env}`", *(f"`{o.env}`" for o in d.options if o.required)]
    return f"{names[0]} is" if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]} are"


def _token(d: Descriptor, token: str) -> list[str]:
    return [
        f"### Token {{#{d.name}-token}}",
        "",
        _cell(f"{token[:1].upper()}{token[1:]}."),
        "",
        "| Where | Name | Holds |",
        "|---|---|---|",
        f"| Template parameter | `{d.secret_parameter}` | the Secrets Manager secret (name or ARN); "
        f"empty disables {d.title} |",
        f"| Lambda | `{d.secret_env}` | the same secret, set from `{d.secret_parameter}` |",
        f"| CLI | `{d.token_env}` | the token itself (`--token-env NAME` reads another variable, "
        "`--secret-id ID` a secret) |",
        "",
    ]


def _variables(d: Descriptor, token: str) -> list[str]:
    """Every variable ``aws/config.py`` reads for this provider, then the CLI's (``cli/options.py``)."""
    options = {o.env: o for o in d.options}
    rows = []
    for name, default in provider_variables(d).items():
        if name == d.secret_env:
            parameter, meaning = f"`{d.secret_parameter}`", f"the secret holding {_cell(token)}; set: enabled"
        elif name in options:
            option = options[name]
            parameter, meaning = f"`{d.option_parameter(option)}`", _option_meaning(d, option)
        elif name == d.base_url_env:
            parameter, meaning = "", "the API host; another for a government cloud or the emulator"
        elif name == d.pace_env:
            parameter = ""
            meaning = (
                f"calls a minute, at most this, under the published {_number(d.rate_limit_per_minute)}; "
                "lower it when other apps use the same limit"
            )
        else:
            parameter, meaning = "", "read by the Lambda (`aws/config.py`)"
        if name == d.pace_env:  # as the template writes it: 48, not 48.0
            default = f"{d.calls_per_minute:g}"
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `{name}` | {parameter} | {shown} | {meaning} |")
    cli = [f"| `{d.token_env}` | the token, unless `--token-env` or `--secret-id` is given |"]
    cli += [f"| `{o.env}` | the default of `{o.flag}` ({_required(o)}) |" for o in d.options]
    return [
        f"### Environment variables {{#{d.name}-variables}}",
        "",
        "The Lambda's, set by the template:",
        "",
        "| Variable | Template parameter | Default | Meaning |",
        "|---|---|---|---|",
        *rows,
        "",
        "The CLI's (`collect`, `backfill`, `doctor`):",
        "",
        "| Variable | Meaning |",
        "|---|---|",
        *cli,
        "",
    ]


def _required(option: Option) -> str:
    return "required" if option.required else "optional"


def _option_meaning(d: Descriptor, option: Option) -> str:
    meaning = _cell(option.help)
    if option.required:
        meaning += f"; required: empty disables {d.title}"
    if option.pattern:
        meaning += f" (pattern `{option.pattern}`)"
    return meaning


def _options(d: Descriptor) -> list[str]:
    head = [f"### Options {{#{d.name}-options}}", ""]
    if not d.options:
        return [*head, f"None: {d.title} needs only its token.", ""]
    rows = [
        f"| `{o.flag}` | `{o.env}` | `{d.option_parameter(o)}` | {'yes' if o.required else 'no'} | {_cell(o.help)} |"
        for o in d.options
    ]
    return [
        *head,
        "The flags are taken by `collect`, `backfill` and `doctor`; without one, the CLI reads the variable.",
        "",
        "| Flag | Variable | Template parameter | Required | Meaning |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _limits(d: Descriptor) -> list[str]:
    if d.retention_days is None:
        retention = f"kept: every event since {_day(d.first_event)} can be collected"
    else:
        retention = f"{d.retention_days} days: the API deletes older events, so no backfill reaches further back"
    rows = [
        ("Published rate limit", f"{_number(d.rate_limit_per_minute)} calls a minute"),
        (
            "Pace",
            f"{_number(d.calls_per_minute)} calls a minute, bursts of {d.pacing_burst} "
            f"(`{d.pace_env}`, `--calls-per-minute`: at most this)",
        ),
        ("Largest page", f"{_number(d.largest_page)} events a request (`--page-limit`: at most this)"),
        ("Backfill", f"{_slices(d.backfill_concurrency)} fetched at once (`--slices`)"),
        ("Retention", retention),
        ("First event", f"{_day(d.first_event)}: the API has nothing earlier"),
        ("API host", f"`{d.default_base_url}` (`{d.base_url_env}`, `--api-base-url`)"),
        ("Event id, time", f"`{d.id_field}`, `{d.time_field}` (kept in {UNITS[d.units_per_second]})"),
    ]
    return [
        f"### Limits and pace {{#{d.name}-limits}}",
        "",
        "| Fact | Value |",
        "|---|---|",
        *(f"| {fact} | {value} |" for fact, value in rows),
        "",
    ]


def _tables(d: Descriptor) -> list[str]:
    tables = [(d.table, "the raw table: the archived JSON Lines, one row per event, partitioned by `dt`")]
    if sql.compacted(d):
        tables += [
            (sql.lines_table(d), "the same objects, one string `line` per event (its exact text): compaction reads it"),
            (sql.compacted_table(d), "closed days as Parquet, sorted by " + ", ".join(_sort(d))),
            (sql.all_view(d), "what to query: compacted days, then the open days from the raw text"),
        ]
    columns = [f"| `{c.name}` | `{c.athena}` | {_cell(c.comment)} |" for c in d.columns]
    out = [
        f"### Tables {{#{d.name}-tables}}",
        "",
        "| Table | What |",
        "|---|---|",
        *(f"| `{name}` | {what} |" for name, what in tables),
        "",
        f"Columns of `{d.table}` (Athena types; `dt`, the event's UTC date, is the partition):",
        "",
        "| Column | Type | Note |",
        "|---|---|---|",
        *columns,
        "",
    ]
    if sql.compacted(d):
        typed = ", ".join(f"`{c.name}`" for c in d.compacted_columns)
        out += [f"`{sql.compacted_table(d)}` holds {typed} and `{sql.EVENT}` ([Compaction](compaction.md)).", ""]
    else:
        out += [f"{d.title} is not compacted: query `{d.table}`.", ""]
    if d.ocsf_mapping is not None:
        out += ["Its events are mapped to OCSF ([OCSF and Amazon Security Lake](ocsf.md)).", ""]
    if d.athena_queries:
        out += ["Saved Athena queries: " + "; ".join(q.name for q in d.athena_queries) + ".", ""]
    return out


def _slices(n: int) -> str:
    return "1 time slice" if n == 1 else f"{n} time slices"


def _sort(d: Descriptor) -> list[str]:
    return [f"`{name}`" for name in d.compacted_sort] or ["time", "id"]


def _cell(text: str) -> str:
    """Text for a table cell: a ``|`` would end the cell, and ``<type>`` would be read as HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _number(value: float) -> str:
    return f"{value:,g}" if isinstance(value, float) else f"{value:,}"


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


if __name__ == "<run_path>":  # run by mkdocs-gen-files (runpy.run_path): the page joins the build
    import mkdocs_gen_files

    with mkdocs_gen_files.open(PAGE, "w") as page:
        page.write(render())
    mkdocs_gen_files.set_edit_path(PAGE, "gen_providers.py")
elif __name__ == "__main__":
    print(render())

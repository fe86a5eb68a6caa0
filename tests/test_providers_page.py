"""The Providers reference follows the registry: a provider registered only in the tests
(``tests/fake_provider.py``) is on the generated page, with its token, variables, option flag and
tables, and the docs tests hold, while no file under ``docs/`` names it."""

from __future__ import annotations

import yaml

from audit_collector import providers
from audit_collector.aws.config import provider_variables

from .docs_pages import DOCS, GENERATOR, ROOT, generator, providers_page, undocumented_cli, undocumented_variables
from .fake_provider import DESCRIPTOR, TENANT


def test_the_build_runs_the_generator_and_lists_its_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    (gen_files,) = [p["gen-files"] for p in config["plugins"] if isinstance(p, dict) and "gen-files" in p]
    assert (ROOT / gen_files["scripts"][0]).resolve() == GENERATOR
    assert "providers.md" in str(config["nav"]) and generator().PAGE == "providers.md"
    assert not (DOCS / "providers.md").exists()  # written by the build only: nothing to keep in step by hand


def test_every_built_in_provider_is_on_the_page():
    page = providers_page()
    for descriptor in providers.all_descriptors():
        assert f"## {descriptor.title} {{#{descriptor.name}}}" in page
        for name in (*provider_variables(descriptor), descriptor.token_env, descriptor.secret_parameter):
            assert f"`{name}`" in page


def test_a_provider_registered_only_in_the_tests_is_on_the_page_with_no_docs_file_edited(fakeaudit):
    page = providers_page()
    section = page[page.index("## FakeAudit {#fakeaudit}") :]
    option_row = f"| `{TENANT.flag}` | `{TENANT.env}` | `FakeAuditTenant` | yes | {TENANT.help} |"
    assert option_row in section
    for name in (
        "FAKEAUDIT_TOKEN_SECRET_ID",
        "FAKEAUDIT_TOKEN",
        "FAKEAUDIT_API_BASE_URL",
        "FAKEAUDIT_CALLS_PER_MINUTE",
    ):
        assert f"`{name}`" in section
    assert "| Published rate limit | 1,200 calls a minute |" in section
    assert "| Largest page | 100 events a request" in section
    assert "`fakeaudit_events`" in section and "FakeAudit is not compacted" in section
    # The docs tests hold with it registered, yet no file under docs/ names its variables or its flag.
    assert undocumented_variables() == [] and undocumented_cli() == []
    names = [*provider_variables(DESCRIPTOR), DESCRIPTOR.token_env, TENANT.flag]
    written = {
        p.name: p.read_text(errors="replace") for p in DOCS.rglob("*") if p.is_file() and p.suffix in (".md", ".py")
    }
    assert [(file, name) for file, text in written.items() for name in names if name in text] == []


def test_a_table_cell_survives_a_pipe_and_angle_brackets():
    cell = generator()._cell("a | b <type> & c")
    assert cell == "a \\| b &lt;type&gt; &amp; c"

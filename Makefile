# Two commands a newcomer needs: `make demo` and `make test`. Each sets up what it uses.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Template tools conflict with the app's pins (checkov pins urllib3, aws-sam-cli pins click): own venv.
TOOLS := .tools-venv
TOOLS_STAMP := $(TOOLS)/.installed
TOOL_PINS := aws-sam-cli==1.170.0 cfn-lint==1.58.0 checkov==3.2.459
# sam build needs a real python3.13 (the Lambda runtime) first on PATH; pyenv's shim alone is refused.
PY313_BIN := $(shell pyenv root 2>/dev/null)/versions/3.13.0/bin
export SAM_CLI_TELEMETRY := 0

.PHONY: demo test unit crash-points template check-template lint format docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

$(TOOLS_STAMP): Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet $(TOOL_PINS)
	touch $(TOOLS_STAMP)

## demo: emulator -> collector -> local archive -> DuckDB queries. No AWS, no token, loopback only.
demo: $(STAMP)
	$(VENV)/bin/audit-collector demo --archive ./demo-archive

## test: lint, the template checks, the docs, then the whole suite.
test: lint check-template docs unit

# worksteal: a worker that runs out of tests takes queued ones from the other, so the minute-long
# crash-point tests do not leave one core idle at the end.
unit: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal

## crash-points: every crash point of every scripted run (make test runs a sample).
crash-points: $(STAMP)
	CRASH_POINTS=all $(PY) -m pytest -q -p no:logging -s tests/test_crash_points.py \
	  "tests/ocsf/test_athena_lake.py::test_a_crash_at_every_call_then_a_rerun_leaves_every_event_once_per_class"

lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check src tests benchmarks docs/gen_providers.py
	$(VENV)/bin/ruff format --check src tests benchmarks docs/gen_providers.py

## template: write template.yaml from src/audit_collector/aws/template_base.yaml and the providers' descriptors.
template: $(STAMP)
	$(VENV)/bin/audit-collector template --output template.yaml

## check-template: cfn-lint, sam validate --lint, checkov and sam build, all offline.
check-template: $(TOOLS_STAMP)
	$(TOOLS)/bin/cfn-lint template.yaml siem-consumer.yaml
	AWS_DEFAULT_REGION=us-east-1 $(TOOLS)/bin/sam validate --lint
	$(TOOLS)/bin/checkov -f template.yaml -f siem-consumer.yaml --framework cloudformation --compact --quiet --skip-download
	@if [ -x "$(PY313_BIN)/python3.13" ]; then \
		PATH="$(PY313_BIN):$$PATH" $(TOOLS)/bin/sam build --build-dir .aws-sam/build >/dev/null && \
		echo "sam build: ok ($$(du -sh .aws-sam/build/CollectorFunction | cut -f1) unzipped)"; \
	else echo "sam build: SKIPPED, no python3.13 at $(PY313_BIN)"; fi

## docs: the site (mkdocs.yml, docs/) into site/; --strict: a broken link, anchor or page fails.
# The variable only silences mkdocs-material's notice about MkDocs' future.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks docs/gen_providers.py
	$(VENV)/bin/ruff check --fix src tests benchmarks docs/gen_providers.py

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## bench: every benchmark, one line per figure; writes benchmarks/RESULTS.md and the charts (docs/img links to them).
bench: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(TOOLS) demo-archive .pytest_cache .ruff_cache .aws-sam site

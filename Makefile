# `make test` is all a user runs: it builds the venv and the services it needs first.
.PHONY: venv services test test-adversarial lint demo bench load clean

VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

venv: $(STAMP)

# Re-installs only when pyproject.toml changes; the stamp makes a second `make venv` instant.
$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -e '.[dev]'
	touch $(STAMP)

# pgbouncer (Debian package) sits in front of the pgvector server in the pooler tests.
# Installed only when missing and we are root; otherwise those tests skip and say why.
services:
	@if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq pgbouncer; \
		else \
			echo "pgbouncer is not installed (apt-get install pgbouncer): its tests will skip"; \
		fi; \
	fi

test: venv services
	$(VENV)/bin/pytest --cov=app --cov-report=term-missing --cov-fail-under=90 $(PYTEST_ARGS)

# benchmarks/ is linted once it exists.
# The fault and fuzz tests of tests/adversarial with large budgets (CI runs them with small ones).
test-adversarial: venv services
	TEST_CRASH_RUNS=$${TEST_CRASH_RUNS:-100} TEST_FUZZ_EXAMPLES=$${TEST_FUZZ_EXAMPLES:-2000} \
		TEST_DEADLOCK_SECONDS=$${TEST_DEADLOCK_SECONDS:-30} TEST_RESTART_SECONDS=$${TEST_RESTART_SECONDS:-30} \
		TEST_COPY_CHUNKS=$${TEST_COPY_CHUNKS:-50000} \
		$(VENV)/bin/pytest -s tests/adversarial $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check app tests $(wildcard benchmarks)
	$(VENV)/bin/mypy app

demo: venv
	$(PYTHON) -m app.demo

bench: venv
	$(PYTHON) -m benchmarks

# 8 clients x 5 minutes of searches, ingests and task moves on each SQL backend (LOAD_ARGS=--help).
load: venv
	$(PYTHON) -m benchmarks.load $(LOAD_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache htmlcov build dist .coverage .coverage.* coverage.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# The two commands of the README. Both set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv

.PHONY: demo test lint install clean

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e clients/python -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/flywheel demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy src clients/python/src bench tests

# Starts Apache Kafka, S3Proxy and Argilla (with OpenSearch, Redis and its worker) on loopback,
# runs every test against them, and stops them by PID whatever the outcome.
test: $(VENV)/.installed lint
	deploy/run-tests.sh

clean:
	rm -rf $(VENV) .run flywheel-demo

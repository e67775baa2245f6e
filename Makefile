# Bottega: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
SVC := python3 deploy/services/svc.py


.PHONY: demo demo-stop setup test lint typecheck pytest services-up services-down services-status services-fetch lock clean

demo:  ## light setup, then the API + prediction service on embedded defaults and one model's whole life
	@bash deploy/demo.sh

demo-stop:  ## stop the servers `make demo` left running
	@bash deploy/demo.sh stop

setup:  ## install system packages (when root) and the pinned .venv; idempotent
	@bash deploy/setup.sh

test: setup  ## setup, start the real services, ruff, mypy, pytest; services stop on exit
	@bash deploy/run-tests.sh

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck: setup
	@.venv/bin/mypy

pytest: setup  ## pytest only; expects `make services-up` (integration tests skip, naming what is down)
	@eval "$$($(SVC) env)" && .venv/bin/pytest $(ARGS)

services-fetch:
	@$(SVC) fetch

services-up:  ## start PostgreSQL, Cassandra and Kafka as local processes
	@$(SVC) up

services-down:
	@$(SVC) down

services-status:
	@$(SVC) status

lock: setup  ## re-resolve requirements/constraints.txt from pyproject.toml
	@.venv/bin/uv pip compile -q --python-version 3.11 --all-extras pyproject.toml -o requirements/constraints.txt

clean: services-down
	rm -rf .venv .services dist

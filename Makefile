# Conectado: `make demo` runs the platform, `make test` runs every check.
SHELL := /bin/bash
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
VENV := .venv
UV := .tools/bin/uv

.PHONY: demo test setup native system-demo system-test lint check clean-db

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install -q "uv==$(UV_VERSION)"

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on our machines and in the image)
# nothing would ever write .pyc files, and every process (CLI, lab agents, probe workers)
# would compile pandas, SQLAlchemy and the rest from source at each start.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python python3.11 --compile-bytecode
	touch $@

# The compiled fast paths (core/native.py): the lab agents' (lab/native) and the HTTP prober's
# (probes/native). Without them the same code runs in pure Python, slower.
NATIVE := $(patsubst %.c,%.so,$(foreach c,$(wildcard lab/native/*.c probes/native/*.c),$(dir $(c))_$(notdir $(c))))
CC_NATIVE := gcc -O2 -g -fPIC -shared -std=gnu11 -Wall -Wextra -Werror -ffp-contract=off
lab/native/_%.so: lab/native/%.c lab/native/lab_common.h
	$(CC_NATIVE) -o $@ $< -lm
probes/native/_%.so: probes/native/%.c
	$(CC_NATIVE) -o $@ $<

native: $(NATIVE)

system-demo:
	scripts/system-packages.sh demo

system-test:
	scripts/system-packages.sh test

setup: system-demo $(VENV)/.synced $(NATIVE)

demo: setup
	$(VENV)/bin/conectado demo

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

test: system-test $(VENV)/.synced $(NATIVE) lint
	$(VENV)/bin/pytest

clean-db:
	-$(VENV)/bin/conectado db stop
	rm -rf var/pg var/pg-test

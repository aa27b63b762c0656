# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    create the environment, set up the SQLite database, keys, first administrator and demo, serve the app
#   make test   run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint format

run: $(VENV)/.installed
	$(BIN)/trialcoord setup
	$(BIN)/trialcoord serve

# One worker per core; a test file stays on one worker, so a module's served app and browser start once.
test: $(VENV)/.installed
	$(BIN)/python -m pytest -n logical --dist loadfile $(PYTEST_ARGS)

# Lint, format and type checks (ruff; mypy on the whole package, strict on the pure rules; configured in
# pyproject.toml); .ci/run runs them
# before the tests. `make format` fixes what ruff can.
lint: $(VENV)/.installed
	$(BIN)/ruff check trialcoord tests bench setup.py
	$(BIN)/ruff format --check trialcoord tests bench setup.py
	$(BIN)/mypy trialcoord

format: $(VENV)/.installed
	$(BIN)/ruff check --fix trialcoord tests bench setup.py
	$(BIN)/ruff format trialcoord tests bench setup.py

bench: $(VENV)/.installed
	$(BIN)/python -m bench

# Re-installs only when pyproject.toml changes, so both targets are idempotent and quick the second time.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("trialcoord needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

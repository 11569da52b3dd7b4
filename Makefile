# The two commands of the README:
#   make run   install DinoMail in .venv and run it on the embedded SQLite database
#   make test  install everything the tests need (Debian packages as root) and run them
# On a mail server (as root): make install-system / make uninstall-system (scripts/install.sh:
# its own virtualenv in /opt/dinomail, users, /etc/dinomail, systemd units; uninstall keeps data).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test modules run side by side, one worker a core of the machines this is built for.
TEST_WORKERS ?= 2

.PHONY: run test install install-test system-deps lint clean install-system uninstall-system

run: install
	$(BIN)/dinomail migrate
	$(BIN)/dinomail createsuperuser --if-missing
	$(BIN)/dinomail serve

test: system-deps install-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

install-system:
	./scripts/install.sh

uninstall-system:
	./scripts/uninstall.sh

system-deps:
	./scripts/install-system-deps.sh

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info

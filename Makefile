# crmkit developer entry points. Everything runs from .venv, bootstrapped with plain pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGINS := $(wildcard plugins/*)
PACKAGES := core $(PLUGINS)
PYTEST_ARGS ?=

.PHONY: install browser imap demo test bench lint clean

install: $(STAMP)

$(STAMP): requirements-dev.txt $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e './core[postgresql,mysql]' $(foreach p,$(PLUGINS),-e ./$(p))
	touch $(STAMP)

demo: install
	$(BIN)/crmkit demo

# Debian's Chromium for the browser tests (tests/browser), installed only when missing.
browser:
	test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# Debian's Dovecot IMAP server for crmkit-email's IMAP polling tests (each test starts a private
# instance with its own configuration; nothing system-wide is started), installed only when missing.
imap:
	command -v dovecot >/dev/null 2>&1 || test -x /usr/sbin/dovecot || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dovecot-imapd; }

test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks

lint: install
	$(BIN)/ruff check core plugins tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache

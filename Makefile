# make demo: a throwaway CA, both daemons on a virtual serial cable, one request signed.
# make test: lint and type checks, then the whole suite, once on Debian's own python3-*
# packages, once on PyPI's.
SHELL := /bin/bash
DEMO_DIR ?= demo-ca
PYTEST_ARGS ?=
DEB_ENV := PYTHONPATH=$(CURDIR):$(CURDIR)/.deb-extra

.PHONY: setup demo serve test lint test-debian test-venv deb test-package clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/signerctl demo --dir $(DEMO_DIR)

serve: setup
	.venv/bin/signerctl demo --dir $(DEMO_DIR) --serve

test: setup lint test-debian test-venv

lint:
	@echo "== ruff (lint, format), mypy, and docs/architecture.md's module list"
	cd $(CURDIR) && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
	cd $(CURDIR) && .venv/bin/python scripts/module-map.py --check

test-debian:
	@echo "== tests on Debian's packages (/usr/bin/python3)"
	cd $(CURDIR) && $(DEB_ENV) /usr/bin/python3 -m pytest $(PYTEST_ARGS)

test-venv:
	@echo "== tests on current PyPI releases (.venv)"
	cd $(CURDIR) && .venv/bin/python -m pytest $(PYTEST_ARGS)

deb:
	scripts/build-deb.sh dist

test-package:
	@echo "== the Debian package: build, lintian, install into Debian 12 and 13, run, purge (root)"
	cd $(CURDIR) && $(DEB_ENV) /usr/bin/python3 -m pytest tests/test_package.py $(PYTEST_ARGS)

clean:
	rm -rf .venv .deb-extra $(DEMO_DIR) .pytest_cache .hypothesis

# make demo: a throwaway CA, both daemons on a virtual serial cable, one request signed.
# make test: lint and type checks, then the whole suite, once on Debian's own python3-*
# packages, once on PyPI's.
SHELL := /bin/bash
DEMO_DIR ?= demo-ca
PYTEST_ARGS ?=
# Most tests wait on pipes, ptys and daemons, so four workers on two cores pay.
# make test runs scripts/run-tests.sh: both environments, the Debian package's
# tests beside the PyPI run, the tests that measure elapsed time (marker
# "timing") last and alone. test-debian and test-venv run one environment each.
WORKERS ?= 4
export WORKERS
PARALLEL = -n $(WORKERS) --dist loadgroup -m "not timing"
ALONE = -m timing
# pytest's status 5: nothing selected (PYTEST_ARGS named no timing test).
NONE_IS_OK = || [ $$? = 5 ]
DEB_ENV := PYTHONPATH=$(CURDIR):$(CURDIR)/.deb-extra

.PHONY: setup demo serve test lint test-debian test-venv deb test-package clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/signerctl demo --dir $(DEMO_DIR)

serve: setup
	.venv/bin/signerctl demo --dir $(DEMO_DIR) --serve

test: setup lint
	@scripts/run-tests.sh $(PYTEST_ARGS)

lint:
	@echo "== ruff (lint, format), mypy, and docs/architecture.md's module list"
	cd $(CURDIR) && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
	cd $(CURDIR) && .venv/bin/python scripts/module-map.py --check

test-debian:
	@echo "== tests on Debian's packages (/usr/bin/python3)"
	cd $(CURDIR) && $(DEB_ENV) /usr/bin/python3 -m pytest $(PARALLEL) $(PYTEST_ARGS)
	cd $(CURDIR) && $(DEB_ENV) /usr/bin/python3 -m pytest $(ALONE) $(PYTEST_ARGS) $(NONE_IS_OK)

test-venv:
	@echo "== tests on current PyPI releases (.venv)"
	cd $(CURDIR) && .venv/bin/python -m pytest $(PARALLEL) $(PYTEST_ARGS)
	cd $(CURDIR) && .venv/bin/python -m pytest $(ALONE) $(PYTEST_ARGS) $(NONE_IS_OK)

deb:
	scripts/build-deb.sh dist

test-package:
	@echo "== the Debian package: build, lintian, install into Debian 12 and 13, run, purge (root)"
	cd $(CURDIR) && $(DEB_ENV) /usr/bin/python3 -m pytest tests/package $(PYTEST_ARGS)

clean:
	rm -rf .venv .deb-extra $(DEMO_DIR) .pytest_cache .hypothesis

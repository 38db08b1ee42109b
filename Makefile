# make demo: a throwaway CA, both daemons on a virtual serial cable, one request signed.
# make test: the whole suite, once on Debian's own python3-* packages, once on PyPI's.
SHELL := /bin/bash
DEMO_DIR ?= demo-ca
PYTEST_ARGS ?=
DEB_ENV := PYTHONPATH=$(CURDIR):$(CURDIR)/.deb-extra

.PHONY: setup demo serve test test-debian test-venv bench clean

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/signerctl demo --dir $(DEMO_DIR)

serve: setup
	.venv/bin/signerctl demo --dir $(DEMO_DIR) --serve

test: setup test-debian test-venv

test-debian:
	@echo "== tests on Debian's packages (/usr/bin/python3)"
	cd $(CURDIR) && $(DEB_ENV) /usr/bin/python3 -m pytest $(PYTEST_ARGS)

test-venv:
	@echo "== tests on current PyPI releases (.venv)"
	cd $(CURDIR) && .venv/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf .venv .deb-extra $(DEMO_DIR) .pytest_cache .hypothesis

"""Fixtures of the signer's tests: an X.509 world, real GnuPG homes.

Test tooling, trusted side.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from signer_core.daemon import build_context
from signer_core.dispatch import SignerContext
from tests.support.openpgp import Homes
from tests.support.x509 import NOW, World


@pytest.fixture(scope="module")
def homes():
    """Private GnuPG homes for one test module, removed (and their agents stopped) after it."""
    homes = Homes()
    yield homes
    homes.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """The X.509 roots, configuration and subject keys of support.x509.World, once per module."""
    return World(tmp_path_factory.mktemp("x509"))


@pytest.fixture
def ctx(tmp_path) -> Iterator[SignerContext]:
    """A signer context as the daemon builds it, on a fresh World, its clock at NOW."""
    context = build_context(World(tmp_path).cfg)
    context.now = lambda: NOW
    yield context
    context.db.close()

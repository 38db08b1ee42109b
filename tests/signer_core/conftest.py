"""Fixtures of the signer's tests: an X.509 world, real GnuPG homes.

Test tooling, trusted side.
"""

from __future__ import annotations

import pytest

from tests.support.openpgp import Homes
from tests.support.x509 import World


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

"""How many examples a property test draws: all of them, or the share a pass asks for.

Test tooling. ``make test`` runs the suite twice, on Debian's python3-*
packages and on PyPI's releases (scripts/run-tests.sh). Both passes run every
property test. The PyPI pass draws every example; the Debian pass, whose
purpose is that the code works with Debian's releases of the libraries, draws
a quarter (``TEST_EXAMPLES_SHARE=0.25``). Our parsers and the strategies are
the same code in both passes, so the depth of the search is had once, and the
Debian pass still puts every parser through Debian's libraries.
"""

from __future__ import annotations

import os

SHARE = float(os.environ.get("TEST_EXAMPLES_SHARE", "1"))
LEAST = 10  # enough to reach the strategies' small and edge cases


def examples(count: int) -> int:
    """``count`` examples, scaled by the pass's share."""
    return max(LEAST, round(count * SHARE))

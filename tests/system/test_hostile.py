"""Requests shaped to cost the signer the most, through the link and both daemons.

Each is refused with its code in a small fraction of a second (the old SPKAC
pattern took over a minute on the first), both daemons keep their PIDs, and
a well-formed request sent right behind it is answered at once.
"""

from __future__ import annotations

import time

import pytest

from spool.header import Action, RequestHeader, System
from webhost.client import WebClient

SPKAC = RequestHeader(
    action=Action.SIGN, system=System.X509, root=0, profile=5, md=8, days=365, spkac=True
)
# Well inside any sane budget, far below the minute the quadratic pattern took.
DECIDED_WITHIN = 5.0


@pytest.mark.parametrize(
    "payload1",
    [
        b"SPKAC=x" + b" " * 65000 + b"y",
        b"SPKAC=" + b" \t" * 32000,
        b"\n" * 65000 + b"SPKAC=AAAA",
        b"CN=x\n" * 13000 + b"SPKAC=AAAA",
    ],
    ids=["blanks-inside", "blanks-at-end", "newlines-before", "many-lines"],
)
@pytest.mark.timing
def test_worst_case_spkac_is_refused_at_once(appliance, world_dir, payload1, write_csr):
    pids = {name: appliance.supervisor.pid(name) for name in ("signer-core", "signer-comm")}
    with WebClient(appliance.link) as client:
        started = time.monotonic()
        response = client.exchange(SPKAC, payload1, b"DNS:www.example.org", b"/CN=www.example.org")
        took = time.monotonic() - started
    print(f"hostile SPKAC of {len(payload1)} bytes refused in {took * 1000:.0f} ms")
    assert response.payload1 == b"" and response.payload2.startswith(b"ERR bad-spkac: ")
    assert took < DECIDED_WITHIN
    write_csr(world_dir / "good.csr")
    started = time.monotonic()
    assert appliance.sign(world_dir / "good.csr").returncode == 0
    assert time.monotonic() - started < DECIDED_WITHIN
    assert {name: appliance.supervisor.pid(name) for name in pids} == pids
    appliance.assert_alive()

"""Every hostile Sign X.509 request of the library's table, sent over the link.

The cases are those of tests/signer_core/x509/test_refusals.py that the demo CA's
configuration can express (its table also covers settings the demo does not
have, such as a blocklist); each must come back as a refusal with its code in
payload 2, and both daemons must still be running at the end.
"""

from __future__ import annotations

from spool.header import Action, RequestHeader, System
from tests.support.x509 import BASE_REQUEST, csr_pem
from webhost.client import WebClient

NEEDS_OTHER_CONFIG = {
    "disabled profile",
    "blocklisted key",
    "no key usage left for EC",
    "SAN on a sub-CA",
    "e-mail subject on a sub-CA",
    "negative days",
    "days above 16 bits",  # cannot be written in the header's 16 bits
}
LINK_ONLY = [
    ("profile 10 is off by default", {"profile": 10}, "profile-disabled"),
    ("request of 1 MiB", {"payload1": b"A" * (1 << 20)}, "bad-csr"),
]


def test_hostile_requests_over_the_link(
    appliance, refusal_world, hostile_requests, world_dir, write_csr
):
    table = [c for c in hostile_requests if c[0] not in NEEDS_OTHER_CONFIG] + LINK_ONLY
    codes = set()
    with WebClient(appliance.link) as client:
        for name, change, code in table:
            f = {**BASE_REQUEST, "payload1": csr_pem(refusal_world.rsa_key), **change}
            header = RequestHeader(
                action=Action.SIGN,
                system=System.X509,
                root=f["root"],
                profile=f["profile"],
                md=f["md"],
                days=f["days"],
                spkac=f["spkac"],
            )
            response = client.exchange(header, f["payload1"], f["payload2"], f["payload3"])
            assert response.payload1 == b"", name
            assert response.payload2.startswith(f"ERR {code}: ".encode()), (name, response.payload2)
            codes.add(code)
    assert codes == {
        "unknown-root",
        "root-not-installed",
        "unknown-profile",
        "profile-disabled",
        "unknown-digest",
        "weak-digest",
        "bad-days",
        "bad-csr",
        "bad-csr-signature",
        "bad-spkac",
        "bad-subject",
        "bad-san",
        "weak-key",
        "bad-exponent",
        "small-factor",
        "close-primes",
        "roca-key",
        "unsupported-key",
    }
    appliance.assert_alive()
    with appliance.db() as db:
        assert db.execute("SELECT count(*) FROM certificates").fetchone()[0] == 0
        refused = db.execute("SELECT count(*) FROM audit WHERE event = 'refused'").fetchone()[0]
    assert refused == len(table)
    write_csr(world_dir / "good.csr")
    assert appliance.sign(world_dir / "good.csr").returncode == 0

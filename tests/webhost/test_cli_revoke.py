"""signer-client revoke says whether the certificate was revoked now or had been before."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from webhost import cli as client_cli


@pytest.mark.parametrize(
    ("held", "said"),
    [
        ([], "certificate 1 revoked"),
        ([1], "certificate 1 was already revoked"),
        (None, "certificate 1 revoked"),  # no CRL held yet: nothing says it was before
    ],
)
def test_revoke_tells_a_new_revocation_from_an_old_one(
    link, tmp_path: Path, capsys, new_ca, held, said
) -> None:
    ca = new_ca()
    root = ca.write_cert(tmp_path / "root.pem")
    cert = ca.write_cert(tmp_path / "cert.pem")  # serial 1: the client only sends its bytes
    crl_path = tmp_path / "held.crl"
    if held is not None:
        crl_path.write_bytes(ca.crl_der(held))
    link(lambda request: (ca.crl([1]).public_bytes(serialization.Encoding.PEM), b""))
    argv = ["--link", link.path, "--timeout", "5", "revoke", "--root", "0"]
    code = client_cli.main(
        [*argv, "--cert", str(cert), "--crl", str(crl_path), "--root-cert", str(root)]
    )
    assert code == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == said
    assert second.startswith(f"crl updated: {crl_path} sha1=")

"""signer_core.roots with keys in a token: each fault refuses only its root, with its reason."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer_core.config import ConfigError, load_config
from signer_core.refusal import Refusal
from signer_core.roots import RootStore
from signer_core.tokens.keys import open_token_key
from signer_core.tokens.pkcs11 import TokenSession
from signer_core.tokens.uri import parse_uri
from signer_core.x509.compat import verify_signature
from signer_core.x509.issue import SignRequest, new_serial, plan_certificate, sign_certificate
from tests.support import softhsm
from tests.support.x509 import BASE_TOML, NOW, csr_pem, make_root, root_toml, write_root

pytestmark = pytest.mark.skipif(not softhsm.available(), reason="softhsm2 or PyKCS11 missing")


def _token_certificate(token, label, pin) -> x509.Certificate:
    """A root certificate of the token key ``label``, self-signed by the token."""
    session = TokenSession("setup", parse_uri(token.uri(label)), token.module, pin)
    try:
        return make_root(open_token_key(session), f"token {label}")
    finally:
        session.close()


def _write_cert(directory, rid, cert) -> None:
    (directory / f"root{rid}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _sign(cfg, store, rid):
    key = ec.generate_private_key(ec.SECP256R1())
    req = SignRequest(
        rid, 5, 0, 90, False, csr_pem(key), b"DNS:a.example.org", b"/CN=a.example.org"
    )
    return sign_certificate(plan_certificate(cfg, store, req, NOW), new_serial())


def test_token_roots_and_their_faults(tmp_path):
    token = softhsm.keyed_token(tmp_path / "hsm")
    pin = token.write_pin(tmp_path / "pin")
    wrong = token.write_pin(tmp_path / "wrong", "000000")
    file_key = ec.generate_private_key(ec.SECP256R1())
    write_root(tmp_path, 0, file_key, make_root(file_key, "file root"))
    with softhsm.in_environment(token):
        rsa_cert = _token_certificate(token, "rsa", pin)
        ec_cert = _token_certificate(token, "ec", pin)
        for rid, cert in ((2, rsa_cert), (3, ec_cert), (4, rsa_cert), (5, rsa_cert)):
            _write_cert(tmp_path, rid, cert)
        _write_cert(tmp_path, 6, ec_cert)  # for the RSA key: no match
        toml = (
            BASE_TOML
            + root_toml(0)
            + softhsm.token_root_toml(2, token, "rsa", pin)
            + softhsm.token_root_toml(3, token, "ec", pin)
            + softhsm.token_root_toml(4, token, "rsa", wrong)
            + softhsm.token_root_toml(5, token, "rsa", pin, tmp_path / "no-module.so")
            + softhsm.token_root_toml(6, token, "rsa", pin)
        )
        (tmp_path / "signer.toml").write_text(toml)
        cfg = load_config(tmp_path / "signer.toml")
        store = RootStore.load(cfg.x509)
        try:
            assert sorted(store.roots) == [0, 2, 3]
            assert store.missing == {
                # The token has the signer logged in for root 2 already: the PIN is compared.
                4: f"token key {token.uri('rsa')}: the PIN differs from the one another key "
                "logged in to this token with",
                5: f"token key {token.uri('rsa')}: the PKCS#11 module "
                f"{tmp_path / 'no-module.so'} does not exist",
                6: f"token key {token.uri('rsa')}: the token's key does not match the certificate",
            }
            # The roots that did not load still have their certificates' keys known.
            assert store.public_keys[6][0].public_numbers() == ec_cert.public_key().public_numbers()
            for rid, cert in ((0, None), (2, rsa_cert), (3, ec_cert)):
                leaf = _sign(cfg, store, rid)
                verify_signature(leaf, (cert or store.get(0).certificate).public_key())

            token.remove()  # both token roots refuse; the file root signs on
            for rid in (2, 3):
                with pytest.raises(Refusal) as refused:
                    _sign(cfg, store, rid)
                assert refused.value.code == "root-unavailable"
                assert refused.value.text.startswith(f"root {rid}'s token key cannot sign now")
            _sign(cfg, store, 0)

            token.put_back()  # and back, without a new RootStore
            for rid in (3, 2):
                verify_signature(_sign(cfg, store, rid), store.get(rid).certificate.public_key())
        finally:
            store.close()


@pytest.mark.parametrize(
    "extra, words",
    [
        ('key = "pkcs11:token=t"\nmodule = "m.so"\npin_file = "p"', "names no key"),
        ('key = "pkcs11:token=t;object=k"\npin_file = "p"', "module: missing"),
        ('key = "pkcs11:token=t;object=k"\nmodule = "m.so"', "pin_file: missing"),
        ('key = "root2.key"\nmodule = "m.so"', "only for a key in a token"),
        (
            'key = "pkcs11:token=t;object=k"\nmodule = "m.so"\npin_file = "p"\n'
            'passphrase_file = "x"',
            "has pin_file instead",
        ),
    ],
)
def test_token_settings(tmp_path, extra, words):
    (tmp_path / "signer.toml").write_text(
        BASE_TOML
        + '[x509.roots.2]\nname = "t"\ncertificate = "c.crt"\n'
        + 'crl_url = "http://crl.example.org/2.crl"\n'
        + extra
        + "\n"
    )
    with pytest.raises(ConfigError, match=words):
        load_config(tmp_path / "signer.toml")


def test_token_settings_read(tmp_path):
    (tmp_path / "signer.toml").write_text(
        BASE_TOML
        + '[x509.roots.2]\nname = "t"\ncertificate = "c.crt"\n'
        + 'crl_url = "http://crl.example.org/2.crl"\n'
        + 'key = "pkcs11:token=CA;object=root%202"\nmodule = "/usr/lib/m.so"\npin_file = "p"\n'
    )
    root = load_config(tmp_path / "signer.toml").x509.roots[2]
    assert root.key is None and root.passphrase_file is None and root.token is not None
    assert (root.token.uri.token, root.token.uri.object) == ("CA", "root 2")
    assert root.token.module.as_posix() == "/usr/lib/m.so"
    assert root.token.pin_file == tmp_path / "p"

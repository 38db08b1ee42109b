from signer_core.config import load_config
from signer_core.roots import RootStore
from signer_core.issue import SignRequest, plan_certificate, sign_certificate, new_serial
from cryptography.hazmat.primitives.asymmetric import rsa, ec
from conftest_x509 import *

def test_smoke(tmp_path):
    k = ec.generate_private_key(ec.SECP384R1())
    write_root(tmp_path, 0, k, make_root(k, "r0"))
    (tmp_path / "c.toml").write_text(BASE_TOML + root_toml(0))
    cfg = load_config(tmp_path / "c.toml")
    store = RootStore.load(cfg.x509)
    sk = rsa.generate_private_key(65537, 2048)
    req = SignRequest(0, 0, 0, 365, False, csr_pem(sk), b"DNS:a.example.org", b"/CN=x/emailAddress=a@b.org")
    plan = plan_certificate(cfg, store, req, NOW)
    cert = sign_certificate(plan, new_serial())
    print(cert.extensions)
    req = SignRequest(0, 5, 0, 365, True, spkac_block(sk, tmp_path, ["CN = a.example.org"]), b"DNS:a.example.org", b"")
    cert = sign_certificate(plan_certificate(cfg, store, req, NOW), new_serial())

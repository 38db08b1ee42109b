"""SoftHSM2 tokens for the tests: one token per test, in its own directory.

Test tooling. ``SoftToken.create(directory)`` writes a softhsm2.conf whose
token directory is ``directory/tokens`` and initialises a token there;
``generate`` makes an RSA, P-256 or Ed25519 key pair in it (private half
sensitive and not extractable), ``attributes`` reads a key's flags back.
Both run PyKCS11 in a child process with ``SOFTHSM2_CONF`` set, so that the
test process's own PKCS#11 state is never the one being examined. A process
that loads the token itself (the signer's code in a unit test) must see
``SOFTHSM2_CONF`` too: ``token.environment()`` gives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
)
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
ED25519_PARAMS = bytes.fromhex("06032b6570")  # the OID 1.3.101.112
CODE_ROOT = Path(__file__).resolve().parents[2]


def module_path() -> Path | None:
    """SoftHSM2's PKCS#11 module, None when softhsm2 is not installed."""
    return next((m for m in MODULES if m.is_file()), None)


def available() -> bool:
    if module_path() is None or shutil.which("softhsm2-util") is None:
        return False
    try:
        import PyKCS11  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class SoftToken:
    directory: Path
    label: str = "test-token"
    pin: str = "123456"
    so_pin: str = "87654321"

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def tokens(self) -> Path:
        return self.directory / "tokens"

    @property
    def module(self) -> Path:
        path = module_path()
        assert path is not None, "softhsm2 is not installed"
        return path

    @classmethod
    def create(cls, directory: Path, label: str = "test-token") -> SoftToken:
        token = cls(directory, label)
        token.tokens.mkdir(parents=True)
        token.conf.write_text(
            f"directories.tokendir = {token.tokens}\nobjectstore.backend = file\n"
            "log.level = ERROR\nslots.removable = false\n"
        )
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label]
            + ["--pin", token.pin, "--so-pin", token.so_pin],
            env={**os.environ, "SOFTHSM2_CONF": str(token.conf)},
            check=True,
            capture_output=True,
        )
        return token

    def environment(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def uri(self, label: str) -> str:
        return f"pkcs11:token={self.label};object={label}"

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.softhsm", *args],
            env={
                **os.environ,
                "SOFTHSM2_CONF": str(self.conf),
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(CODE_ROOT), os.environ.get("PYTHONPATH")])
                ),
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def generate(self, kind: str, label: str, key_id: int = 1) -> None:
        """A key pair ``kind`` ("rsa4096", "rsa2048", "p256", "ed25519") named ``label``."""
        self._run("generate", str(self.module), self.label, self.pin, kind, label, str(key_id))

    def attributes(self, label: str) -> dict[str, bool]:
        """CKA_SENSITIVE, CKA_EXTRACTABLE and their history flags of the private key ``label``."""
        out: dict[str, bool] = json.loads(
            self._run("attributes", str(self.module), self.label, self.pin, label)
        )
        return out

    def give_to(self, uid: int, gid: int) -> None:
        """The token's files to the user that will open it (the signer user)."""
        for path in [self.directory, *self.directory.rglob("*")]:
            os.chown(path, uid, gid)

    def write_pin(self, path: Path, pin: str | None = None, uid: int = -1, gid: int = -1) -> Path:
        path.write_text((self.pin if pin is None else pin) + "\n")
        path.chmod(0o600)
        os.chown(path, uid, gid)
        return path

    def remove(self) -> None:
        """The token gone, as a pulled-out USB token: its directory renamed away."""
        self.tokens.rename(self.directory / "tokens.away")

    def put_back(self) -> None:
        (self.directory / "tokens.away").rename(self.tokens)


@contextlib.contextmanager
def in_environment(token: SoftToken) -> Iterator[SoftToken]:
    """``SOFTHSM2_CONF`` set in this process while the block runs."""
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf)
    try:
        yield token
    finally:
        if old is None:
            del os.environ["SOFTHSM2_CONF"]
        else:
            os.environ["SOFTHSM2_CONF"] = old


def keyed_token(directory: Path, label: str = "test-token") -> SoftToken:
    """A new token holding an RSA-4096 key "rsa" (id 1) and a P-256 key "ec" (id 2)."""
    token = SoftToken.create(directory, label)
    token.generate("rsa4096", "rsa", 1)
    token.generate("p256", "ec", 2)
    return token


def token_root_toml(
    rid: int, token: SoftToken, label: str, pin_file: Path, module: Path | None = None
) -> str:
    """A root whose key is ``label`` in ``token`` (certificate rootN.crt beside the file)."""
    return f"""
[x509.roots.{rid}]
name = "token root {rid}"
key = "{token.uri(label)}"
module = "{module or token.module}"
pin_file = "{pin_file}"
certificate = "root{rid}.crt"
crl_url = "http://crl.example.org/root{rid}.crl"
"""


def log_key_toml(token: SoftToken, pin_file: Path, label: str = "log") -> str:
    """An ``[audit]`` section whose log key is ``label`` in ``token`` (origin ca.example/log)."""
    return f"""
[audit]
origin = "ca.example/log"
log_key = "{token.uri(label)}"
module = "{token.module}"
pin_file = "{pin_file}"
"""


# --- the child process ------------------------------------------------------


def _session(module: str, label: str, pin: str, rw: bool):  # noqa: ANN202
    import PyKCS11 as p

    lib = p.PyKCS11Lib()
    lib.load(module)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.rstrip(" \0") == label:
            flags = p.CKF_SERIAL_SESSION | (p.CKF_RW_SESSION if rw else 0)
            session = lib.openSession(slot, flags)
            session.login(pin)
            return lib, session
    raise SystemExit(f"no token {label}")


def _generate(module: str, token: str, pin: str, kind: str, label: str, key_id: str) -> None:
    import PyKCS11 as p

    _lib, session = _session(module, token, pin, rw=True)
    ident = (int(key_id),)
    common = [(p.CKA_TOKEN, True), (p.CKA_LABEL, label), (p.CKA_ID, ident)]
    private = [
        (p.CKA_CLASS, p.CKO_PRIVATE_KEY),
        (p.CKA_SIGN, True),
        (p.CKA_PRIVATE, True),
        (p.CKA_SENSITIVE, True),
        (p.CKA_EXTRACTABLE, False),
        *common,
    ]
    public = [(p.CKA_CLASS, p.CKO_PUBLIC_KEY), (p.CKA_VERIFY, True), *common]
    if kind.startswith("rsa"):
        public += [(p.CKA_MODULUS_BITS, int(kind[3:])), (p.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
        mechanism = p.CKM_RSA_PKCS_KEY_PAIR_GEN
    elif kind == "p256":
        public.append((p.CKA_EC_PARAMS, tuple(P256_PARAMS)))
        mechanism = p.CKM_EC_KEY_PAIR_GEN
    elif kind == "ed25519":
        public.append((p.CKA_EC_PARAMS, tuple(ED25519_PARAMS)))
        mechanism = p.CKM_EC_EDWARDS_KEY_PAIR_GEN
    else:
        raise SystemExit(f"unknown key kind {kind}")
    session.generateKeyPair(public, private, mecha=p.Mechanism(mechanism, None))
    session.logout()
    session.closeSession()


def _attributes(module: str, token: str, pin: str, label: str) -> None:
    import PyKCS11 as p

    _lib, session = _session(module, token, pin, rw=False)
    (key,) = session.findObjects([(p.CKA_CLASS, p.CKO_PRIVATE_KEY), (p.CKA_LABEL, label)])
    names = ("CKA_SENSITIVE", "CKA_EXTRACTABLE", "CKA_ALWAYS_SENSITIVE", "CKA_NEVER_EXTRACTABLE")
    values = session.getAttributeValue(key, [getattr(p, n) for n in names])
    print(json.dumps({n: bool(v) for n, v in zip(names, values, strict=True)}))
    session.closeSession()


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "generate":
        _generate(*arguments)
    else:
        _attributes(*arguments)

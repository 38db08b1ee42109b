"""The web-side client library (webhost.client) against a scripted server on a pty."""

from __future__ import annotations

import datetime
import hashlib
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from comm_handler.frames import Message
from spool.header import Action, RequestHeader, is_spkac
from webhost.client import CrlUpdateError, Response, WebClient, apply_crl_answer, nul_timestamp

NOW = datetime.datetime(2026, 11, 28, 20, 45, 7, tzinfo=datetime.UTC)


def echo_ok(request: Message) -> tuple[bytes, bytes]:
    return (b"" if request.header[1] == Action.NUL else b"OK " + request.payloads[0][:10]), b""


def test_nul_sends_the_time_and_header(link) -> None:
    client, server = link(echo_ok)
    response = client.nul(NOW)
    assert response == Response(b"\x01\x00\x00\x00", b"", b"")
    assert response.ok and response.reason == ""
    [request] = server.finish()
    assert request.header == bytes.fromhex("010000000000000000")
    assert request.payloads == (b"112820452026.07", b"", b"")


def test_nul_timestamp_format_is_date_u_argument() -> None:
    stamp = nul_timestamp().decode()
    assert re.fullmatch(r"\d{12}\.\d{2}", stamp)
    local = datetime.datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    assert nul_timestamp(local) == b"010201042026.05"


def _csr_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.org")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def test_sign_x509_header_payloads_and_spkac_detection(link, spkac) -> None:
    client, server = link(echo_ok)
    csr = _csr_pem()
    first = client.sign_x509(
        1, 5, 8, 730, csr, "DNS:example.org,DNS:www.example.org", "/CN=example.org"
    )
    second = client.sign_x509(0, 0, 0, 365, spkac, b"email:jane@example.org", b"/CN=Jane")
    assert first.ok and first.payload1 == b"OK " + csr[:10]
    assert second.ok
    one, two = server.finish()
    assert one.header == bytes([1, 1, 1, 1, 5, 8, 0x02, 0xDA, 0])
    assert one.payloads == (csr, b"DNS:example.org,DNS:www.example.org", b"/CN=example.org")
    assert RequestHeader.from_bytes(two.header).spkac is True
    assert two.header == bytes([1, 1, 1, 0, 0, 0, 0x01, 0x6D, 1])
    assert two.payloads == (spkac, b"email:jane@example.org", b"/CN=Jane")


def test_spkac_detection_rule() -> None:
    assert is_spkac(b"CN = x\nSPKAC=abc")
    assert is_spkac(b"SPKAC  \t= abc\n")
    assert not is_spkac(b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n")
    assert not is_spkac(b"CN = my SPKAC = no\n")


def test_sign_openpgp_header(link) -> None:
    client, server = link(echo_ok)
    assert client.sign_openpgp(b"\x99\x01\x0dkey").ok
    [request] = server.finish()
    assert request.header == bytes.fromhex("01010200000201 6E00".replace(" ", ""))
    assert request.payloads == (b"\x99\x01\x0dkey", b"", b"")


def test_refusal_carries_the_reason(link) -> None:
    client, _ = link(lambda request: (b"", b"ERR unknown-root: root 7 is not configured"))
    response = client.sign_x509(7, 0, 0, 365, _csr_pem(), "", "/CN=x")
    assert not response.ok
    assert response.reason == "ERR unknown-root: root 7 is not configured"
    assert not client.nul(NOW).ok


# -- CRLs --


def xdelta_delta(tmp: Path, old: bytes, new: bytes) -> bytes:
    (tmp / "d-old").write_bytes(old)
    (tmp / "d-new").write_bytes(new)
    result = subprocess.run(
        ["xdelta", "delta", str(tmp / "d-old"), str(tmp / "d-new"), str(tmp / "d-patch")]
    )
    assert result.returncode in (0, 1)  # xdelta 1.x: 1 means "the files differ"
    return (tmp / "d-patch").read_bytes()


def openssl_verifies(crl_path: Path, root_cert: Path) -> bool:
    result = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(crl_path),
            "-noout",
            "-verify",
            "-CAfile",
            str(root_cert),
        ],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0 and "verify OK" in result.stderr


def test_refresh_without_a_crl_gets_the_whole_pem(link, tmp_path: Path, new_ca) -> None:
    ca = new_ca()
    root = ca.write_cert(tmp_path / "root.pem")
    crl = ca.crl([5])
    client, server = link(lambda request: (crl.public_bytes(serialization.Encoding.PEM), b""))
    crl_path = tmp_path / "revoke.crl"
    assert client.refresh_crl(3, crl_path, root).ok
    assert crl_path.read_bytes() == crl.public_bytes(serialization.Encoding.DER)
    assert openssl_verifies(crl_path, root)
    [request] = server.finish()
    assert request.header == bytes.fromhex("010201030000016d00")
    assert request.payloads == (b"", b"", hashlib.sha1(b"").hexdigest().encode())


def test_revoke_applies_an_xdelta_patch(link, tmp_path: Path, new_ca) -> None:
    ca = new_ca()
    root = ca.write_cert(tmp_path / "root.pem")
    old, new = ca.crl_der([5]), ca.crl_der([5, 77, 1 << 70])
    crl_path = tmp_path / "revoke.crl"
    crl_path.write_bytes(old)
    patch = xdelta_delta(tmp_path, old, new)
    client, server = link(lambda request: (patch, b""))
    cert_pem = ca.cert.public_bytes(serialization.Encoding.PEM)
    assert client.revoke(0, cert_pem, crl_path, root).ok
    assert crl_path.read_bytes() == new
    assert openssl_verifies(crl_path, root)
    parsed = x509.load_der_x509_crl(crl_path.read_bytes())
    assert parsed.get_revoked_certificate_by_serial_number(77) is not None
    [request] = server.finish()
    assert request.payloads == (cert_pem, b"", hashlib.sha1(old).hexdigest().encode())


@pytest.mark.parametrize("kind", ["foreign-signature", "garbage-patch", "wrong-base", "bad-pem"])
def test_bad_crl_answers_leave_the_file_alone(tmp_path: Path, kind: str, new_ca) -> None:
    ca, other = new_ca(), new_ca("Test Root")  # same name, other key
    root = ca.write_cert(tmp_path / "root.pem")
    held = ca.crl_der([1])
    crl_path = tmp_path / "revoke.crl"
    crl_path.write_bytes(held)
    answer = {
        "foreign-signature": other.crl([1, 2]).public_bytes(serialization.Encoding.PEM),
        "garbage-patch": b"%XDZ004%" + bytes(40),
        "wrong-base": xdelta_delta(tmp_path, ca.crl_der([9, 10, 11]), ca.crl_der([9, 10, 11, 12])),
        "bad-pem": b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n",
    }[kind]
    with pytest.raises(CrlUpdateError):
        apply_crl_answer(answer, held, crl_path, root)
    assert crl_path.read_bytes() == held
    if kind == "foreign-signature":  # openssl agrees with the refusal
        (tmp_path / "foreign.crl").write_bytes(other.crl_der([1, 2]))
        assert not openssl_verifies(tmp_path / "foreign.crl", root)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_empty_crl_answer_is_a_failure_not_an_update(link, tmp_path: Path, new_ca) -> None:
    ca = new_ca()
    root = ca.write_cert(tmp_path / "root.pem")
    crl_path = tmp_path / "revoke.crl"
    held = ca.crl_der([])
    crl_path.write_bytes(held)
    client, _ = link(lambda request: (b"", b"ERR crl-unavailable: no CRL for root 0"))
    response = client.refresh_crl(0, crl_path, root)
    assert not response.ok and response.reason.startswith("ERR crl-unavailable")
    assert crl_path.read_bytes() == held


# -- over a TCP socket (pyserial's socket:// URL) --


class SocketPort:
    """The server side of socket://: just enough of pyserial's interface."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.timeout: float | None = None

    def read(self, size: int = 1) -> bytes:
        self.sock.settimeout(self.timeout)
        try:
            return self.sock.recv(size)
        except TimeoutError:
            return b""

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)


def test_client_over_socket_url(scripted_server) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    holder = {}

    def accept() -> None:
        conn, _ = listener.accept()
        holder["server"] = scripted_server(SocketPort(conn), echo_ok)
        holder["server"].start()

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    with WebClient(f"socket://127.0.0.1:{port}", response_timeout=5.0) as client:
        acceptor.join(timeout=5)
        assert client.sign_openpgp(b"key over tcp").payload1 == b"OK key over t"
    [request] = holder["server"].finish()
    assert request.payloads[0] == b"key over tcp"
    listener.close()

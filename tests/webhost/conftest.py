"""Fixtures of the web-side client tests: a scripted server on a pty, a CA for CRLs.

Test tooling on the untrusted side: the server plays the appliance, answering
each request as the test's handler says.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from comm_handler.frames import Message, decode_message, encode_message, response_header
from comm_handler.transfer import LinkTimeout, receive_message, send_message
from signerctl.demo.nullmodem import NullModem
from webhost.client import WebClient

Handler = Callable[[Message], tuple[bytes, bytes]]
CRL_TIME = datetime.datetime(2026, 11, 28, 20, 45, 7, tzinfo=datetime.UTC)


class Server(threading.Thread):
    """Answers each request with ``handler(request) -> (payload1, payload2)``."""

    def __init__(self, port, handler: Handler) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.handler = handler
        self.requests: list[Message] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                request = decode_message(
                    receive_message(self.port, start_timeout=0.1, chunk_timeout=1.0)
                )
            except LinkTimeout:
                continue
            self.requests.append(request)
            p1, p2 = self.handler(request)
            reply = Message(response_header(request.header[1]), (p1, p2, b""))
            send_message(self.port, encode_message(reply), ready_timeout=2.0, verdict_timeout=2.0)

    def finish(self) -> list[Message]:
        self._done.set()
        self.join(timeout=5)
        return self.requests


@pytest.fixture
def link() -> Iterator[Callable[[Handler], tuple[WebClient, Server]]]:
    """Yields a factory: handler -> (client on end a, running server on end b)."""
    with NullModem() as modem:
        b = serial.Serial(modem.b_path, 115200)
        made: list[tuple[WebClient, Server]] = []

        def make(handler: Handler) -> tuple[WebClient, Server]:
            server = Server(b, handler)
            server.start()
            client = WebClient(
                modem.a_path, response_timeout=5.0, ready_timeout=2.0, verdict_timeout=2.0
            )
            made.append((client, server))
            return client, server

        make.path = modem.a_path  # type: ignore[attr-defined]
        make.port_b = b  # type: ignore[attr-defined]
        yield make
        for client, server in made:
            server.finish()
            client.close()
        b.close()


class Ca:
    def __init__(self, name: str = "Test Root") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(CRL_TIME - datetime.timedelta(days=1))
            .not_valid_after(CRL_TIME + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def crl(self, revoked: list[int]) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.name)
            .last_update(CRL_TIME)
            .next_update(CRL_TIME + datetime.timedelta(days=7))
        )
        for serial_number in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial_number)
                .revocation_date(CRL_TIME)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256())

    def crl_der(self, revoked: list[int]) -> bytes:
        return self.crl(revoked).public_bytes(serialization.Encoding.DER)

    def write_cert(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


@pytest.fixture
def new_ca():
    """``new_ca(name="Test Root")``: a new EC root that issues CRLs."""
    return Ca


@pytest.fixture
def spkac() -> bytes:
    """An SPKAC request as the web side sends it (only its form matters here)."""
    return (
        b"commonName = Jane\n1.emailAddress = jane@example.org\n"
        b"SPKAC = MIIBQDCBqjCBnzANBgkqhkiG9w0B\n"
    )


@pytest.fixture
def scripted_server():
    """``scripted_server(port, handler)``: a Server (not started) on any pyserial-like port."""
    return Server

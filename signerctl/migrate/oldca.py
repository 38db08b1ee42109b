"""Reading an OpenSSL ``ca`` directory (the old signer's state) for the import.

Trusted side tooling, run by an operator with signer-core stopped. Nothing
on the old CA's disk is trusted: every file is read with a size bound, a
certificate must agree with its index line and be signed by the appliance's
configured root, and a CRL must be signed by that root. What is wrong is
told to ``complain`` (line, text, file) rather than raised, so that the
import (``openssl_ca``) can list every problem at once.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from signer_core.crl.revocation import MAX_IMPORTED_CRL
from signer_core.x509.compat import not_after, verify_issued_by
from signer_core.x509.der import CERTIFICATE, CRL, fault, from_pem
from signerctl.migrate.index import MAX_LINE, IndexEntry, oneline

MAX_CERT_FILE = 64 * 1024
CERT_DIRS = ("newcerts", "certs")
_SHA1_NAME = re.compile(r"[0-9a-f]{40}\.crl")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,42}")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"

# complain(line or None, what is wrong, file or None for the index)
Complain = Callable[[int | None, str, Path | None], None]


@dataclass(frozen=True)
class OldCrl:
    path: Path
    der: bytes
    crl: x509.CertificateRevocationList


class Progress:
    """A one-line progress meter on a terminal (share done, lines/s, time left); silent otherwise.

    Redrawn at most four times a second.
    """

    def __init__(self, stream: TextIO | None, total_bytes: int, label: str) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._total = max(total_bytes, 1)
        self._label = label
        self._start = time.monotonic()
        self._next = self._start + 0.25
        self._width = 0

    def update(self, done_bytes: int, lines: int) -> None:
        now = time.monotonic()
        if self._stream is None or now < self._next:
            return
        self._next = now + 0.25
        elapsed = now - self._start
        rate = lines / elapsed if elapsed > 0 else 0.0
        left = elapsed * (self._total - done_bytes) / done_bytes if done_bytes else None
        share = min(100 * done_bytes // self._total, 99)
        self._show(
            f"{self._label}: {share:2d}% {lines} lines, {rate:.0f} lines/s, {_duration(left)} left"
        )

    def done(self, lines: int) -> None:
        if self._stream is not None:
            elapsed = time.monotonic() - self._start
            self._show(f"{self._label}: 100% {lines} lines in {_duration(elapsed)}")
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, text: str) -> None:
        assert self._stream is not None
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown time"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole // 60 % 60:02d} min"


def hex_file(path: Path, complain: Complain) -> int | None:
    """The number in an OpenSSL ``serial`` or ``crlnumber`` file; None if absent."""
    try:
        with path.open("rb") as f:
            text = f.read(64).strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        complain(None, f"cannot read: {exc.strerror}", path)
        return None
    if not _HEX.fullmatch(text):
        complain(1, "not a hexadecimal number", path)
        return None
    return int(text, 16)


def load_certificate(ca_dir: Path, entry: IndexEntry) -> x509.Certificate | None:
    """The entry's certificate; None if no file holds it."""
    names = [f"{d}/{entry.serial_hex}.pem" for d in CERT_DIRS]
    if entry.filename not in ("", "unknown") and "/" not in entry.filename.lstrip("./"):
        names.insert(0, entry.filename)
    for name in names:
        try:
            with open(ca_dir / name, "rb") as f:
                data = f.read(MAX_CERT_FILE + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        if len(data) > MAX_CERT_FILE:
            raise ValueError(f"{name} is larger than {MAX_CERT_FILE} bytes")
        try:
            cert = (
                x509.load_pem_x509_certificate(data)
                if _PEM_CERT in data
                else x509.load_der_x509_certificate(data)
            )
            _ = (cert.subject, cert.serial_number, not_after(cert))  # cryptography 38 is lazy
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError(f"{name} is not a certificate: {_cert_fault(data)}") from None
        return cert
    return None


def _cert_fault(data: bytes) -> str:
    try:
        der = from_pem(data, ("CERTIFICATE",)) if _PEM_CERT in data else data
    except ValueError as exc:
        return str(exc)
    return fault(der, CERTIFICATE)


def check_certificate(
    cert: x509.Certificate, entry: IndexEntry, root_cert: x509.Certificate
) -> list[str]:
    """How the certificate disagrees with its index line or root (empty if it does not)."""
    wrong = []
    if cert.serial_number != entry.serial:
        wrong.append(
            f"certificate has serial {cert.serial_number:X}, index says {entry.serial_hex}"
        )
    subject = oneline(cert.subject.public_bytes())
    if subject != entry.subject:
        wrong.append(f"certificate subject {subject!r} differs from the index's {entry.subject!r}")
    if not_after(cert) != entry.expires:
        wrong.append(
            f"certificate expires {not_after(cert):%Y-%m-%d %H:%M:%S},"
            f" index says {entry.expires:%Y-%m-%d %H:%M:%S}"
        )
    try:
        verify_issued_by(cert, root_cert)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        wrong.append("certificate is not signed by this root")
    return wrong


def read_crl(path: Path, root_cert: x509.Certificate) -> OldCrl:
    """A CRL file as the web host holds it (DER), signed by the root; ValueError otherwise."""
    with path.open("rb") as f:
        der = f.read(MAX_IMPORTED_CRL + 1)
    if len(der) > MAX_IMPORTED_CRL:
        raise ValueError("CRL too large")
    if der.lstrip().startswith(b"-----BEGIN"):
        raise ValueError("PEM: give the DER file the web host holds (its SHA-1 is what it sends)")
    try:
        crl = x509.load_der_x509_crl(der)
        _ = (crl.issuer, crl.signature_hash_algorithm)  # cryptography 38 is lazy
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"not a DER CRL: {fault(der, CRL)}") from None
    try:
        verify_issued_by(crl, root_cert)
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        raise ValueError("CRL is not signed by this root") from None
    return OldCrl(path, der, crl)


def read_crls(
    current: Path | None, crl_dir: Path | None, root_cert: x509.Certificate, complain: Complain
) -> list[OldCrl]:
    paths = [] if current is None else [current]
    if crl_dir is not None:
        for path in sorted(crl_dir.iterdir()):
            if path.suffix != ".crl":
                continue
            if not _SHA1_NAME.fullmatch(path.name):
                complain(None, "CRL file name is not <sha1>.crl", path)
                continue
            paths.append(path)
    crls = []
    for path in paths:
        try:
            old = read_crl(path, root_cert)
        except (OSError, ValueError) as exc:
            complain(None, f"bad CRL: {exc}", path)
            continue
        if path.parent == crl_dir and hashlib.sha1(old.der).hexdigest() != path.stem:
            complain(None, "bad CRL: file name is not the SHA-1 of its content", path)
            continue
        crls.append(old)
    return crls


def index_lines(path: Path, progress: Progress) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of each line; text None for a line too long or not UTF-8."""
    done = number = 0
    with path.open("rb") as f:
        while raw := f.readline(MAX_LINE + 1):
            number += 1
            done += len(raw)
            if number % 4096 == 0:
                progress.update(done, number)
            if len(raw) > MAX_LINE:
                while raw and not raw.endswith(b"\n"):  # skip the rest, keep the count right
                    raw = f.readline(MAX_LINE + 1)
                    done += len(raw)
                yield number, None
                continue
            try:
                yield number, raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError:
                yield number, None
    progress.done(number)


def crl_number(old: OldCrl) -> int:
    try:
        return old.crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0

"""The web-side client library: requests over the v1 link, as the web host sends them.

Runs on the web database host (or in tests and the demo), on the untrusted
side of the link. It trusts the appliance's answers only as far as it can
check them: a CRL (patched with the real ``xdelta`` or sent whole in PEM) is
verified against the root certificate before it replaces the file held, and
the replacement is atomic. Certificates and keys it receives are returned
as bytes for the caller to check.

One exchange at a time: the client sends the request (it is the sender),
then receives the response (120 s for the server's start byte by default).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import serial
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from comm_handler.frames import Message, decode_message, encode_message
from comm_handler.transfer import PORT_ERRORS, Pacing, SerialLike, receive_message, send_message
from spool.header import Action, RequestHeader, System, is_spkac
from spool.safeio import commit_file

log = logging.getLogger(__name__)

PEM_CRL_MARKER = b"-----BEGIN X509 CRL-----"
XDELTA_TIMEOUT = 60.0
SIGNING_KEY_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    dsa.DSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


class ClientError(Exception):
    """The client could not complete an operation (other than a link failure)."""


class CrlUpdateError(ClientError):
    """The CRL answer could not be applied or did not verify; the file is unchanged.

    Its message is a sentence of ours; what a library or xdelta said goes to the log."""


@dataclass(frozen=True)
class Response:
    """A decoded response; ``payload2`` carries the refusal reason, if any."""

    header: bytes
    payload1: bytes
    payload2: bytes

    @property
    def action(self) -> int | None:
        return self.header[1] if len(self.header) > 1 else None

    @property
    def ok(self) -> bool:
        """As the deployed client judges it: payload 1 present (NUL: no reason given)."""
        if self.action == Action.NUL:
            return not self.payload2
        return bool(self.payload1)

    @property
    def reason(self) -> str:
        if self.payload2:
            return self.payload2.decode("utf-8", "replace")
        return "" if self.ok else "refused without a reason (empty payload 1)"


def nul_timestamp(now: datetime.datetime | None = None) -> bytes:
    """UTC time as ``MMDDhhmmYYYY.SS``, the argument format of ``date -u``.

    An aware ``now`` is converted to UTC; a naive one is taken as UTC."""
    now = now or datetime.datetime.now(datetime.UTC)
    if now.tzinfo is not None:
        now = now.astimezone(datetime.UTC)
    return now.strftime("%m%d%H%M%Y.%S").encode("ascii")


def _text(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class WebClient:
    """Speaks v1 to the appliance over ``link``: a device path, a pyserial URL
    (``loop://``, ``socket://host:port``) or an already open pyserial-like port."""

    def __init__(
        self,
        link: str | SerialLike,
        *,
        baud: int = 115200,
        response_timeout: float = 120.0,
        ready_timeout: float = 20.0,
        verdict_timeout: float = 5.0,
        chunk_timeout: float = 5.0,
        pacing: Pacing | None = None,
    ) -> None:
        self.port: SerialLike
        self._owned: serial.Serial | None
        if isinstance(link, str):
            self._owned = serial.serial_for_url(link, baudrate=baud, timeout=1.0)
            self.port = self._owned
        else:
            self._owned = None
            self.port = link
        self.response_timeout = response_timeout
        self.ready_timeout = ready_timeout
        self.verdict_timeout = verdict_timeout
        self.chunk_timeout = chunk_timeout
        self.pacing = pacing

    def close(self) -> None:
        if self._owned is not None:
            try:
                self._owned.flush()  # the last ACK leaves before the port closes
            except PORT_ERRORS:
                pass
            self._owned.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(
        self, header: RequestHeader, p1: bytes = b"", p2: bytes = b"", p3: bytes = b""
    ) -> Response:
        """Send one request and return the response.

        Raises LinkError subclasses on link failure and FrameError when the
        response is not a well-formed message.
        """
        request = encode_message(Message(header.to_bytes(), (p1, p2, p3)))
        send_message(
            self.port,
            request,
            ready_timeout=self.ready_timeout,
            verdict_timeout=self.verdict_timeout,
            pacing=self.pacing,
        )
        data = receive_message(
            self.port, start_timeout=self.response_timeout, chunk_timeout=self.chunk_timeout
        )
        reply = decode_message(data)
        return Response(reply.header, reply.payloads[0], reply.payloads[1])

    def nul(self, now: datetime.datetime | None = None) -> Response:
        return self.exchange(
            RequestHeader(action=Action.NUL, system=System.NONE), nul_timestamp(now)
        )

    def sign_x509(
        self,
        root: int,
        profile: int,
        md: int,
        days: int,
        request_bytes: bytes,
        san: str | bytes,
        subject: str | bytes,
        spkac: bool | None = None,
    ) -> Response:
        if spkac is None:
            spkac = is_spkac(request_bytes)
        header = RequestHeader(
            action=Action.SIGN,
            system=System.X509,
            root=root,
            profile=profile,
            md=md,
            days=days,
            spkac=spkac,
        )
        return self.exchange(header, request_bytes, _text(san), _text(subject))

    def sign_openpgp(self, key_bytes: bytes, days: int = 366) -> Response:
        header = RequestHeader(action=Action.SIGN, system=System.OPENPGP, md=2, days=days)
        return self.exchange(header, key_bytes)

    def revoke(
        self, root: int, cert_pem: bytes, crl_path: Path | str, root_cert_path: Path | str
    ) -> Response:
        """Revoke ``cert_pem``; on success the CRL at ``crl_path`` is brought up to date.

        Raises CrlUpdateError when the answer cannot be applied or does not
        verify (the file is then unchanged), besides the ``exchange`` errors.
        """
        return self._crl_exchange(root, cert_pem, Path(crl_path), Path(root_cert_path))

    def refresh_crl(self, root: int, crl_path: Path | str, root_cert_path: Path | str) -> Response:
        """Ask for the current CRL of ``root`` (empty payload 1); errors as ``revoke``."""
        return self._crl_exchange(root, b"", Path(crl_path), Path(root_cert_path))

    def _crl_exchange(
        self, root: int, cert_pem: bytes, crl_path: Path, root_cert_path: Path
    ) -> Response:
        held = crl_path.read_bytes() if crl_path.exists() else b""
        header = RequestHeader(action=Action.REVOKE, system=System.X509, root=root, days=365)
        response = self.exchange(
            header, cert_pem, b"", hashlib.sha1(held).hexdigest().encode("ascii")
        )
        if response.ok:
            apply_crl_answer(response.payload1, held, crl_path, root_cert_path)
        return response


def apply_crl_answer(answer: bytes, held: bytes, crl_path: Path, root_cert_path: Path) -> bytes:
    """Turn the answer into the new DER CRL, verify it, replace the file; return the DER.

    ``answer`` is a whole PEM CRL or an xdelta 1.x patch from ``held``.
    Raises CrlUpdateError (file left as it was).
    """
    is_pem = answer.lstrip().startswith(PEM_CRL_MARKER)
    new = _pem_crl_to_der(answer) if is_pem else xdelta_patch(held, answer)
    verify_crl(new, root_cert_path)
    try:
        mode = crl_path.stat().st_mode & 0o7777 if crl_path.exists() else 0o644
        commit_file(crl_path.parent, crl_path.name, new, mode)
    except OSError as exc:
        raise CrlUpdateError(f"cannot replace {crl_path} ({exc.strerror})") from exc
    return new


def _pem_crl_to_der(pem: bytes) -> bytes:
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        log.info("the PEM CRL: %s", exc)
        raise CrlUpdateError("the PEM CRL received does not parse") from exc
    return crl.public_bytes(serialization.Encoding.DER)


def xdelta_patch(old: bytes, patch: bytes) -> bytes:
    """Apply an xdelta 1.x patch with the real tool: ``xdelta patch PATCH OLD NEW``."""
    with tempfile.TemporaryDirectory(prefix="signer-client-") as tmp:
        old_path, patch_path, new_path = (Path(tmp, name) for name in ("old", "patch", "new"))
        old_path.write_bytes(old)
        patch_path.write_bytes(patch)
        try:
            result = subprocess.run(
                ["xdelta", "patch", str(patch_path), str(old_path), str(new_path)],
                capture_output=True,
                timeout=XDELTA_TIMEOUT,
                check=False,
            )
        except OSError as exc:
            raise CrlUpdateError(f"cannot run xdelta ({exc.strerror})") from exc
        except subprocess.TimeoutExpired as exc:
            raise CrlUpdateError(f"xdelta did not finish within {XDELTA_TIMEOUT:g} s") from exc
        if result.returncode != 0 or not new_path.exists():
            log.info("xdelta: %s", result.stderr.decode("utf-8", "replace").strip())
            raise CrlUpdateError(
                f"xdelta could not apply the patch to the CRL held (exit {result.returncode})"
            )
        return new_path.read_bytes()


def verify_crl(der: bytes, root_cert_path: Path) -> None:
    """The CRL parses as DER, names the root as issuer and carries its signature."""
    try:
        crl = x509.load_der_x509_crl(der)
        root_bytes = root_cert_path.read_bytes()
        is_pem = b"-----BEGIN" in root_bytes
        root = (
            x509.load_pem_x509_certificate(root_bytes)
            if is_pem
            else x509.load_der_x509_certificate(root_bytes)
        )
    except (ValueError, OSError) as exc:
        log.info("the CRL or the root certificate: %s", exc)
        raise CrlUpdateError("the CRL received or the root certificate does not parse") from exc
    if crl.issuer != root.subject:
        raise CrlUpdateError("CRL issuer is not the root certificate's subject")
    key = root.public_key()
    if not isinstance(key, SIGNING_KEY_TYPES):
        raise CrlUpdateError("the root certificate holds no key that signs CRLs")
    if not crl.is_signature_valid(key):
        raise CrlUpdateError("CRL signature does not verify with the root certificate")

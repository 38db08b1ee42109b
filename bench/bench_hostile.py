"""Every parser of hostile input, at its largest size and at a typical one: linear time.

For each untrusted parser (link frames, spool records, PKCS#10, SPKAC,
subject, subjectAltName, OpenPGP packets) it times, in one run:

- a typical input (what the web host sends every day);
- hostile inputs at the parser's size limit, shaped after what costs each
  parser most (long runs of blanks, many escapes, many entries, many
  packets), and the same shapes at a fraction of that size.

It prints the median time of each, the ratio of the largest hostile input
to the typical one, and the growth ratio between the two hostile sizes next
to the size ratio: for a linear parser the two are about equal, for a
quadratic one the growth is the square of the size ratio.

Usage: python bench/bench_hostile.py [--repeat N]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from comm_handler.frames import (  # noqa: E402
    MAX_PAYLOAD_TOTAL,
    FrameReceiver,
    Message,
    decode_message,
    encode_message,
    make_frame,
)
from signer_core.openpgp.keyblock import summarise  # noqa: E402
from signer_core.openpgp.packets import MAX_INPUT  # noqa: E402
from signer_core.refusal import Refusal  # noqa: E402
from signer_core.x509.request import MAX_REQUEST_BYTES, parse_request  # noqa: E402
from signer_core.x509.san import MAX_SAN_BYTES, parse_san  # noqa: E402
from signer_core.x509.subject import MAX_SUBJECT_BYTES, parse_subject  # noqa: E402
from spool.record import (  # noqa: E402
    MAX_PAYLOAD,
    Request,
    SpoolFormatError,
    decode_request,
    encode_request,
)

HEADER = bytes([1, 1, 1, 0, 5, 8, 1, 109, 0])
ID = "01795898819128038868-be1a0e1af7c54478a0de33ad6b46d3df"
SMALL_SHARE = 4  # the smaller hostile size is the limit / 4: both out of the CPU caches


def timed(parse: Callable[[bytes], object], data: bytes, repeat: int) -> float:
    """Median seconds of ``parse(data)``; a refusal is a parser's normal answer."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            parse(data)
        except (Refusal, SpoolFormatError, ValueError):
            pass
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def receive_frame(frame: bytes) -> bytes:
    receiver = FrameReceiver()
    for pos in range(0, len(frame), 65536):
        receiver.feed(frame[pos : pos + 65536])
    return bytes(decode_message(receiver.message()).payloads[0])


def csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def frames(size: int) -> bytes:
    return make_frame(encode_message(Message(HEADER, (b"\x55" * size, b"", b""))))


def record(size: int) -> bytes:
    return encode_request(Request(ID, 0.0, HEADER, (b"\xaa" * size, b"", b""), True))


def pem_garbage(size: int) -> bytes:
    marker = b"-----BEGIN CERTIFICATE REQUEST-----\n"
    return (marker + b"A" * 60 + b"\n") * (size // (len(marker) + 61))


def spkac_blanks(size: int) -> bytes:
    return b"SPKAC=x" + b" " * (size - 8) + b"y"


def subject_escapes(size: int) -> bytes:
    return b"/CN=" + b"\\x41" * ((size - 4) // 4)


def san_labels(size: int) -> bytes:
    entry = b"DNS:" + b".".join([b"xn--bcher-kva"] * 11) + b".example"
    return b",".join([entry] * min(100, size // (len(entry) + 1)))


_ED25519_OID = bytes.fromhex("2b06010401da470f01")
PRIMARY = (
    b"\xc6\x33\x04\x5f\x00\x00\x00\x16\x09" + _ED25519_OID + b"\x01\x07\x40" + bytes(range(32))
)
USER_ID = b"\xcd\x15Alice <a@example.org>"


def _packet(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def openpgp_packets(size: int) -> bytes:
    # A key with a few signatures as large as the input allows: every byte walked.
    count = 8
    body = b"\x04\x13" + b"\x00" * ((size - len(PRIMARY) - len(USER_ID)) // count - 8)
    return PRIMARY + USER_ID + _packet(2, body) * count


def openpgp_armour(size: int) -> bytes:
    binary = openpgp_packets(int(size * 0.74) - 200)  # base64 with newlines: 4/3 * 77/76
    text = base64.encodebytes(binary)
    return (
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + text + b"-----END PGP PUBLIC KEY BLOCK-----\n"
    )


CASES: list[tuple[str, Callable[[bytes], object], bytes, Callable[[int], bytes], int]] = [
    ("frames", receive_frame, frames(2048), frames, MAX_PAYLOAD_TOTAL - len(HEADER) - 12),
    ("spool record", decode_request, record(2048), record, MAX_PAYLOAD),
    ("PKCS#10", lambda d: parse_request(d, False), b"", pem_garbage, MAX_REQUEST_BYTES),
    ("SPKAC", lambda d: parse_request(d, True), b"", spkac_blanks, MAX_REQUEST_BYTES),
    (
        "subject",
        parse_subject,
        b"/CN=www.example.org/emailAddress=admin@example.org",
        subject_escapes,
        MAX_SUBJECT_BYTES,
    ),
    ("SAN", parse_san, b"DNS:www.example.org,DNS:example.org", san_labels, MAX_SAN_BYTES),
    ("OpenPGP packets", summarise, PRIMARY + USER_ID, openpgp_packets, MAX_INPUT),
    ("OpenPGP armour", summarise, b"", openpgp_armour, MAX_INPUT),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per input (median)")
    args = parser.parse_args(argv)
    typical_csr = csr()
    print(
        f"{'parser':16} {'typical':>10} {'at limit':>10} {'limit/typ':>10}"
        f" {'size ratio':>10} {'growth':>8}"
    )
    typical_inputs = {
        "PKCS#10": typical_csr,
        "SPKAC": b"CN=x\nSPKAC=" + b"A" * 300,
        "OpenPGP armour": openpgp_armour(2048),
    }
    for name, parse, typical, hostile, limit in CASES:
        typical = typical or typical_inputs[name]
        t_typ = timed(parse, typical, args.repeat * 5)
        small, big = hostile(limit // SMALL_SHARE), hostile(limit)
        t_small, t_big = timed(parse, small, args.repeat), timed(parse, big, args.repeat)
        print(
            f"{name:16} {t_typ * 1e3:8.3f}ms {t_big * 1e3:8.2f}ms {t_big / t_typ:10.1f}"
            f" {len(big) / len(small):10.1f} {t_big / t_small:8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

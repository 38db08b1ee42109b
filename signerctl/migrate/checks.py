"""The import's certificate checks (file, index line, root signature), spread over the cores.

Trusted side tooling, run by an operator with signer-core stopped. What it
reads is the old CA's disk, trusted for nothing (``oldca`` reads and checks
each file). Each chunk of index entries is checked in a worker process
started fresh (``spawn``: nothing of the importer is inherited, its open
database and transaction included); the verdicts come back in the chunks'
order, so that the importer (``openssl_ca``) writes the database in one
process and in index order. A small index is checked in the importer's own
process: starting the workers would cost more than it saves.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from signer_core.x509.compat import not_after, not_before
from signerctl.migrate.index import IndexEntry
from signerctl.migrate.oldca import CERT_DIRS, check_certificate, load_certificate

CHUNK = 500  # index lines per task
PARALLEL_FROM = 256 * 1024  # bytes of index.txt: below this, no workers


@dataclass(frozen=True)
class Checked:
    """A certificate that agrees with its index line and is signed by the root."""

    der: bytes
    subject: str  # RFC 4514
    not_before: int
    not_after: int


# A line's verdict: the certificate, or every way it is wrong.
Verdict = Checked | list[str]
# A chunk of index lines in order: (line number, the entry to check or what is wrong with it).
Chunk = list[tuple[int, IndexEntry | str]]


def default_workers(index_bytes: int) -> int:
    """How many worker processes an index of this size is worth: all cores, or none."""
    return (os.cpu_count() or 1) if index_bytes >= PARALLEL_FROM else 1


def check_entries(ca_dir: Path, root_der: bytes, entries: list[IndexEntry]) -> list[Verdict]:
    """The verdict on each entry's certificate file, in order (run in a worker)."""
    root = x509.load_der_x509_certificate(root_der)
    return [_check(ca_dir, entry, root) for entry in entries]


def _check(ca_dir: Path, entry: IndexEntry, root: x509.Certificate) -> Verdict:
    try:
        cert = load_certificate(ca_dir, entry)
    except OSError as exc:
        return [f"unreadable certificate {entry.serial_hex}.pem: {exc.strerror}"]
    except (ValueError, UnsupportedAlgorithm) as exc:  # ours: oldca says what and where
        return [f"unreadable certificate {entry.serial_hex}.pem: {exc}"]
    if cert is None:
        return [f"certificate {entry.serial_hex}.pem is missing from {' and '.join(CERT_DIRS)}/"]
    wrong = check_certificate(cert, entry, root)
    if wrong:
        return wrong
    return Checked(
        cert.public_bytes(serialization.Encoding.DER),
        cert.subject.rfc4514_string(),
        int(not_before(cert).timestamp()),
        int(not_after(cert).timestamp()),
    )


def _entries(chunk: Chunk) -> list[IndexEntry]:
    return [item for _, item in chunk if isinstance(item, IndexEntry)]


def check_chunks(
    chunks: Iterable[Chunk], ca_dir: Path, root_cert: x509.Certificate, workers: int
) -> Iterator[tuple[Chunk, list[Verdict]]]:
    """Each chunk with the verdicts on its entries, in the chunks' order.

    With more than one worker, at most two chunks per worker are in flight,
    so memory stays bounded however long the index.
    """
    root_der = root_cert.public_bytes(serialization.Encoding.DER)
    if workers <= 1:
        for chunk in chunks:
            yield chunk, check_entries(ca_dir, root_der, _entries(chunk))
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: collections.deque[tuple[Chunk, Future[list[Verdict]]]] = collections.deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(check_entries, ca_dir, root_der, _entries(chunk))))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(cancel_futures=True)

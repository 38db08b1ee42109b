"""The old OpenSSL CA's serial counter, as imported: the SQL on ``openssl_state``.

Trusted side tooling's table in the CA database (defined in ``schema``);
the signer never reads it. ``signerctl import-openssl`` keeps the old CA's
``serial`` file here, and ``export-openssl`` writes the larger of it and the
highest serial issued plus one, so that an OpenSSL CA continued from an
export counts on from where the old one stood. It lives in the database,
not beside it, so that a backup carries it with the certificates it belongs
to.
"""

from __future__ import annotations

import sqlite3

from signer_core.store.cadb import serial_text


def remember_next_serial(conn: sqlite3.Connection, root: int, serial: int, at: int) -> None:
    """The old CA's next serial for this root; ``at`` changes only with the serial."""
    conn.execute(
        "INSERT INTO openssl_state VALUES (?, ?, ?) ON CONFLICT (root) DO UPDATE"
        " SET next_serial = excluded.next_serial, imported_at = excluded.imported_at"
        " WHERE next_serial != excluded.next_serial",
        (root, serial_text(serial), at),
    )


def next_serial(conn: sqlite3.Connection, root: int) -> int | None:
    row = conn.execute("SELECT next_serial FROM openssl_state WHERE root = ?", (root,)).fetchone()
    return None if row is None else int(row[0], 16)

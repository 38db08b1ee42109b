"""Which failures are the machine's storage failing, not the request's doing.

Trusted side; looks at exceptions only. A request met by such a fault (a
full disk, an I/O error, a database another process holds) is kept in the
spool and served again once storage allows (``signer_core.daemon``): it is
never refused for the machine's fault. Any other error stays the request's.
"""

from __future__ import annotations

import errno
import sqlite3

# SQLite's primary result codes for a fault of the storage, not of the request:
# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
_STORAGE_CODES = frozenset({5, 6, 8, 10, 13, 14})
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def storage_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's storage failing (a full disk...), not the request's doing.

    Such a request is kept and tried again once storage allows, never refused.
    """
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
        return code is None or code & 0xFF in _STORAGE_CODES
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS

"""The exit statuses of ``signer-client``, one list for all its commands (its man page has them)."""

EXIT_OK = 0
EXIT_REFUSED = 1  # the appliance refused the request
EXIT_USAGE = 2  # bad usage or an unreadable input file: nothing was sent
EXIT_LINK = 3  # the link failed
EXIT_UNUSABLE = 4  # an answer that could not be used (the CRL file is unchanged)
EXIT_ALARM = 5  # the audit log failed a check: the alarm is raised, its evidence kept

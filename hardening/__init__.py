"""Process hardening shared by both daemons: no core dumps, no ptrace, no new privileges."""

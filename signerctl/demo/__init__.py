"""The demo CA: a throwaway CA, both daemons under a supervisor, a null-modem pair."""

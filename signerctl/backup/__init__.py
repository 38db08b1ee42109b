"""Backup, restore and their commands (signerctl backup / restore)."""

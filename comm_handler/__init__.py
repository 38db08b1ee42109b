"""Untrusted side of the appliance: the v1 serial link, the comm daemon and the web-side client."""

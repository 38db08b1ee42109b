"""The web host's side of the link (untrusted, not on the appliance): the client library and signer-client."""

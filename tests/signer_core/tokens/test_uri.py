"""signer_core.tokens.uri: RFC 7512 URIs, what is taken and what is refused."""

from __future__ import annotations

import pytest

from signer_core.tokens.uri import MAX_URI, TokenURI, TokenURIError, parse_uri


def test_token_object_and_id():
    uri = parse_uri("pkcs11:token=Root%20CA;object=class%203;id=%01%a2;type=private")
    assert uri == TokenURI(token="Root CA", object="class 3", id=b"\x01\xa2")
    assert uri.token_fields() == {"label": "Root CA"}
    assert str(uri) == "pkcs11:token=Root CA;object=class 3;id=%01%a2"


def test_token_fields_narrow_the_slot():
    uri = parse_uri("pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM;serial=42;token=t;object=k")
    assert uri.token_fields() == {
        "label": "t",
        "manufacturerID": "SoftHSM",
        "model": "SoftHSM v2",
        "serialNumber": "42",
    }


@pytest.mark.parametrize(
    "text, words",
    [
        ("pkcs11:object=k", "names no token"),
        ("pkcs11:token=t", "names no key"),
        ("pkcs11:token=t;object=k?pin-value=1234", "query part"),
        ("pkcs11:token=t;object=k;object=l", "twice"),
        ("pkcs11:token=t;object=k;colour=red", "not one we take"),
        ("pkcs11:token=t;object=k;type=cert", "private key"),
        ("pkcs11:token=t;object=a b", "%-encoded"),
        ("pkcs11:token=t;object=%4", "broken %-escape"),
        ("pkcs11:token=t;object=%zz", "broken %-escape"),
        ("pkcs11:token=t;object=", "is empty"),
        ("pkcs11:token=t;object", "has no value"),
        ("pkcs11:token=" + "x" * 33 + ";object=k", "longer than 32 bytes"),
        ("pkcs11:token=t;id=" + "%00" * 129, "longer than 128 bytes"),
        ("pkcs11:token=%ff;object=k", "not UTF-8"),
        ("file:/etc/key.pem", "not a pkcs11: URI"),
        ("pkcs11:token=t;object=" + "k" * MAX_URI, f"longer than {MAX_URI} characters"),
    ],
)
def test_refused(text, words):
    with pytest.raises(TokenURIError, match=words):
        parse_uri(text)

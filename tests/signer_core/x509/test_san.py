"""signer_core.x509.san: subjectAltName payloads, examples and properties."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from hypothesis import example, given, settings
from hypothesis import strategies as st

from signer_core.refusal import Refusal
from signer_core.x509.san import MAX_SAN_BYTES, MAX_SAN_ENTRIES, parse_san
from tests.support.examples import examples

XMPP = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")


def xmpp(jid: str) -> x509.OtherName:
    raw = jid.encode()
    assert len(raw) < 128
    return x509.OtherName(XMPP, b"\x0c" + bytes([len(raw)]) + raw)


def test_every_kind():
    names = parse_san(
        b"DNS:example.org,DNS:*.example.org,email:a.b+c@example.org,"
        b"IP:192.0.2.7,IP:2001:db8::1,URI:https://example.org/x?y=1,"
        b"otherName:1.3.6.1.5.5.7.8.5;UTF8:j\xc3\xbcrgen@example.org,"
        b"dns:xn--bcher-kva.example"
    )
    assert names == [
        x509.DNSName("example.org"),
        x509.DNSName("*.example.org"),
        x509.RFC822Name("a.b+c@example.org"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.UniformResourceIdentifier("https://example.org/x?y=1"),
        xmpp("j\u00fcrgen@example.org"),
        x509.DNSName("xn--bcher-kva.example"),
    ]


def test_empty_payload_gives_no_names():
    assert parse_san(b"") == []


def test_long_xmpp_uses_long_der_length():
    jid = "a" * 200 + "@example.org"
    (name,) = parse_san(f"otherName:1.3.6.1.5.5.7.8.5;UTF8:{jid}".encode())
    assert name.value == b"\x0c\x81\xd4" + jid.encode()


@pytest.mark.parametrize(
    "payload,why",
    [
        (b"example.org", "unsupported type"),
        (b"DNS:a.org,", "unsupported type"),
        (b",DNS:a.org", "unsupported type"),
        (b"DNS:a.org,,DNS:b.org", "entry 2"),
        (b"dirName:foo", "unsupported"),
        (b"RID:1.2.3", "unsupported"),
        (b"otherName:1.2.3.4;UTF8:x", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;IA5:x.org", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;UTF8:a@b.org/res", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;UTF8:@b.org", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;UTF8:a<b@b.org", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;UTF8:a@b@b.org", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;UTF8:b_c.org", "invalid"),
        (b"DNS:a.org DNS:b.org", "forbidden"),
        (b"DNS:a.org\tx", "forbidden"),
        (b"DNS:a.org\r\nDNS:b", "forbidden"),
        (b"DNS:a\x00.org", "forbidden"),
        (b"DNS:a#.org", "forbidden"),
        (b'DNS:"a.org"', "forbidden"),
        (b"DNS:'a.org'", "forbidden"),
        (b"DNS:a\\x2c.org", "forbidden"),
        (b"DNS:a.org\x7f", "forbidden"),
        (b"DNS:a.org\xe2\x80\x8b", "forbidden"),
        (b"DNS:\xff.org", "UTF-8"),
        (b"DNS:org", "invalid"),
        (b"DNS:-a.org", "invalid"),
        (b"DNS:a-.org", "invalid"),
        (b"DNS:a..org", "invalid"),
        (b"DNS:a.org.", "invalid"),
        (b"DNS:a_b.org", "invalid"),
        (b"DNS:*.*.a.org", "invalid"),
        (b"DNS:a.*.org", "invalid"),
        (b"DNS:*a.org", "invalid"),
        (b"DNS:" + b"a" * 64 + b".org", "invalid"),
        (b"DNS:" + b"a." * 126 + b"org", "invalid"),
        (b"DNS:\xc3\xa4.org", "invalid"),
        (b"DNS:", "invalid"),
        (b"DNS:xn--p1ai-.example", "invalid"),
        (b"email:a", "invalid"),
        (b"email:a@b", "invalid"),
        (b"email:a@@b.org", "invalid"),
        (b"email:.a@b.org", "invalid"),
        (b"email:a..b@b.org", "invalid"),
        (b"email:\xc3\xa4@b.org", "invalid"),
        (b"email:" + b"a" * 65 + b"@b.org", "invalid"),
        (b"IP:1.2.3", "invalid"),
        (b"IP:1.2.3.256", "invalid"),
        (b"IP:10.0.0.0/8", "invalid"),
        (b"IP:example.org", "invalid"),
        (b"URI:example.org", "invalid"),
        (b"URI:http://\xc3\xa4.org/", "invalid"),
        (b"URI:http://a.org/" + b"x" * 1100, "invalid"),
        (b"DNS:a.org," * MAX_SAN_ENTRIES + b"DNS:b.org", "more than"),
        (b"URI:http://a.org/" + b"x" * MAX_SAN_BYTES, "longer than"),
    ],
)
def test_refusals(payload, why):
    with pytest.raises(Refusal) as exc:
        parse_san(payload)
    assert exc.value.code == "bad-san"
    assert why in exc.value.text


def test_refusal_names_the_entry():
    with pytest.raises(Refusal) as exc:
        parse_san(b"DNS:ok.example.org,DNS:also.ok.org,DNS:bad_one.org")
    assert "entry 3" in exc.value.text and "bad_one.org" in exc.value.text


def refusal(payload: bytes) -> Refusal:
    with pytest.raises(Refusal) as exc:
        parse_san(payload)
    return exc.value


@pytest.mark.parametrize(
    "payload",
    [
        b"DNS:10.0.0.1",
        b"DNS:192.0.2.300",
        b"DNS:1.2.3",
        b"DNS:www.example.123",
        b"DNS:0.0",
        b"DNS:*.10.0.0.1",
        b"DNS:::1",
        b"DNS:2001:db8::1",
        b"DNS:fe80::1%eth0",
        b"email:a@10.0.0.1",
        b"otherName:1.3.6.1.5.5.7.8.5;UTF8:a@10.0.0.1",
        b"otherName:1.3.6.1.5.5.7.8.5;UTF8:10.0.0.1",
    ],
)
def test_dns_name_is_never_an_ip_literal(payload):
    exc = refusal(b"DNS:ok.example.org," + payload)
    assert exc.code == "dns-ip-literal"
    assert exc.text.startswith("entry 2: ") and payload.split(b":", 1)[1][:20].decode() in exc.text


@pytest.mark.parametrize(
    "payload",
    [
        b"DNS:xn--a.example",
        b"DNS:XN--A.example",
        b"DNS:www.xn--a.example",
        b"DNS:*.xn--a.example",
        b"DNS:xn--53h.example",  # U+2615 HOT BEVERAGE: not PVALID in IDNA 2008
        b"DNS:xn--zz.example",  # not Punycode at all
        b"DNS:xn---bbk.example",  # non-canonical spelling of xn--bbk: idna 3.3 decodes it
        b"email:a@xn--a.example",
        b"otherName:1.3.6.1.5.5.7.8.5;UTF8:a@xn--a.example",
    ],
)
def test_a_labels_must_be_valid_idna(payload):
    exc = refusal(payload)
    assert exc.code == "bad-idna"
    assert exc.text.startswith("entry 1: ") and "not valid IDNA" in exc.text
    assert "Codepoint" not in exc.text and "Punycode" not in exc.text  # ours, not idna's


@pytest.mark.parametrize(
    "payload,why",
    [
        (b"DNS:a*.example.org", "whole leftmost label"),
        (b"DNS:*a.example.org", "whole leftmost label"),
        (b"DNS:foo.*.example.org", "whole leftmost label"),
        (b"DNS:*.*.example.org", "whole leftmost label"),
        (b"DNS:*.example.*", "whole leftmost label"),
        (b"DNS:*.org", "two labels after it"),
        (b"DNS:*", "two labels after it"),
        (b"DNS:*.", "invalid"),
        (b"email:a@*.example.org", "invalid"),
        (b"otherName:1.3.6.1.5.5.7.8.5;UTF8:*.example.org", "invalid"),
    ],
)
def test_wildcard_only_as_whole_leftmost_label(payload, why):
    exc = refusal(payload)
    assert exc.code == "bad-san" and why in exc.text


@pytest.mark.parametrize(
    "payload",
    [b"IP:fe80::1%eth0", b"IP:fe80::1%1", b"IP:fe80::1%25eth0", b"IP:fe80::1%", b"IP:10.0.0.1%1"],
)
def test_ipv6_zone_id_refused_at_parse_time(payload):
    exc = refusal(payload)
    assert exc.code == "bad-san" and "zone ids are not allowed" in exc.text


@pytest.mark.parametrize(
    "payload,name",
    [
        (b"DNS:xn--bcher-kva.example", x509.DNSName("xn--bcher-kva.example")),
        (b"DNS:XN--BCHER-KVA.example", x509.DNSName("XN--BCHER-KVA.example")),
        (b"DNS:xn--e1afmkfd.xn--p1ai", x509.DNSName("xn--e1afmkfd.xn--p1ai")),
        (b"DNS:*.xn--bcher-kva.example", x509.DNSName("*.xn--bcher-kva.example")),
        (b"DNS:*.example.org", x509.DNSName("*.example.org")),
        (b"DNS:1.example.org", x509.DNSName("1.example.org")),
        (b"DNS:10.0.0.1.example", x509.DNSName("10.0.0.1.example")),
        (b"DNS:host.example.org1", x509.DNSName("host.example.org1")),
        (b"email:a@xn--bcher-kva.example", x509.RFC822Name("a@xn--bcher-kva.example")),
        (
            b"otherName:1.3.6.1.5.5.7.8.5;UTF8:a@xn--bcher-kva.example",
            xmpp("a@xn--bcher-kva.example"),
        ),
        (b"IP:fe80::1", x509.IPAddress(ipaddress.ip_address("fe80::1"))),
        (b"IP:10.0.0.1", x509.IPAddress(ipaddress.ip_address("10.0.0.1"))),
    ],
)
def test_names_the_rules_keep(payload, name):
    assert parse_san(payload) == [name]


# -- properties ---------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
A_LABELS = ["xn--bcher-kva", "xn--e1afmkfd", "xn--4gq", "xn--p1ai", "XN--ZCA"]
LABEL = st.one_of(  # inner hyphens too, but no "xn--" by chance: A-labels are valid ones
    st.text(ALNUM, min_size=1, max_size=12)
    .map(lambda x: x[0] + x[1:-1].replace("0", "-") + x[-1] if len(x) > 2 else x)
    .filter(lambda x: not x.startswith("xn--")),
    st.sampled_from(A_LABELS),
)
TLD = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=6)  # never all digits
DOMAIN = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, min_size=1, max_size=4), TLD
)
ATOM = st.text(ALNUM + "ABZ!$%&*+=?^_`{|}~-", min_size=1, max_size=12)
LOCAL = st.lists(ATOM, min_size=1, max_size=3).map(".".join).filter(lambda x: len(x) <= 64)
ENTRY = st.one_of(
    st.builds(
        lambda w, d: (f"DNS:{'*.' if w else ''}{d}", x509.DNSName(f"{'*.' if w else ''}{d}")),
        st.booleans(),
        DOMAIN,
    ),
    st.builds(lambda a, d: (f"email:{a}@{d}", x509.RFC822Name(f"{a}@{d}")), LOCAL, DOMAIN),
    st.ip_addresses().map(lambda ip: (f"IP:{ip}", x509.IPAddress(ip))),
    st.builds(
        lambda d, p: (f"URI:https://{d}/{p}", x509.UniformResourceIdentifier(f"https://{d}/{p}")),
        DOMAIN,
        st.text(ALNUM + "ABZ/?=&;.~-", max_size=30),
    ),
    st.builds(
        lambda u, d: (f"otherName:1.3.6.1.5.5.7.8.5;UTF8:{u}@{d}", xmpp(f"{u}@{d}")),
        st.text("abc\u00e4\u00df\u4e2d.-_", min_size=1, max_size=10),
        DOMAIN,
    ),
)
FRAGMENTS = [
    "DNS:",
    "email:",
    "IP:",
    "URI:",
    "otherName:",
    "1.3.6.1.5.5.7.8.5;UTF8:",
    ",",
    ":",
    "a",
    "example",
    ".",
    "org",
    "*",
    "-",
    "@",
    "1",
    "::",
    " ",
    "#",
    "\\",
    "\u00e4",
    "/",
    "xn--",
    "XN--",
    "bcher-kva",
    "53h",
    "10.0.0.1",
    "fe80::1",
    "%",
    "eth0",
    "*.",
]
CODES = {"bad-san", "dns-ip-literal", "bad-idna"}


@given(st.lists(ENTRY, min_size=1, max_size=6))
@settings(max_examples=examples(120), deadline=None)
def test_round_trip(entries):
    payload = ",".join(text for text, _ in entries).encode()
    assert parse_san(payload) == [name for _, name in entries]


@given(
    st.one_of(
        st.binary(max_size=400),
        st.text(max_size=MAX_SAN_BYTES).map(str.encode),
        st.lists(st.sampled_from(FRAGMENTS), max_size=MAX_SAN_BYTES // 4).map(
            lambda x: "".join(x).encode()
        ),
    )
)
@example(b",".join([b"DNS:" + b"xn--bcher-kva." * 10 + b"example"] * 100))  # near the limit
@example(b",".join([b"DNS:" + b"xn--" + b"9" * 58 + b"a.example"] * 100))
@settings(max_examples=examples(500), deadline=None)
def test_anything_gives_names_or_a_refusal(payload):
    """Up to and past the size limit: names or a Refusal of ours, nothing else
    (no ValueError from ipaddress, no IDNAError from idna)."""
    try:
        names = parse_san(payload)
    except Refusal as exc:
        assert exc.code in CODES
    else:
        assert all(isinstance(n, x509.GeneralName) for n in names)
        for name in names:
            if isinstance(name, x509.DNSName):
                assert not name.value.rsplit(".", 1)[-1].isdigit()
                assert "*" not in name.value[1:]
        if names:  # accepted names survive encoding in a real extension
            x509.SubjectAlternativeName(names)

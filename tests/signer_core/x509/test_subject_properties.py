"""signer_core.x509.subject, properties: any subject built from the accepted attributes
round-trips, any payload gives a name or a Refusal, and policy order is a stable sort."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from signer_core.refusal import Refusal
from signer_core.x509.subject import (
    MAX_SUBJECT_BYTES,
    parse_spkac_subject,
    parse_subject,
    policy_order,
)
from tests.support.examples import examples
from tests.support.x509 import (
    BOUNDS,
    LONG_NAMES,
    OIDS,
    POLICY,
    attrs,
)

# -- properties ---------------------------------------------------------------

SAFE = (
    "abcxyzABCXYZ0129 .,-_+=:;()&!?@%*~<>[]{}|^`$"
    "\u00e4\u00f6\u00fc\u00df\u00e9\u00a0\u0416\u4e2d\u00bd\U0001f600"
)
FRAGMENTS = [
    "/",
    "=",
    "CN",
    "O",
    "C",
    "OU",
    "emailAddress",
    "commonName",
    "\\x",
    "\\X",
    "\\",
    "41",
    "2f",
    "c3",
    "a4",
    "ff",
    "00",
    "0a",
    "#",
    "'",
    '"',
    " ",
    "DE",
    "a",
    "@",
    ".",
    "\u00e4",
    "\t",
    "\n",
    "N.",
]


def value_for(short):
    if short == "C":
        return st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)
    if short == "emailAddress":
        return st.builds(
            lambda a, b: f"{a}@{b}.example.org",
            st.text("abc.xyz019+_", min_size=1, max_size=10).filter(
                lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
            ),
            st.text("abcxyz019", min_size=1, max_size=10),
        )
    return st.text(SAFE, min_size=1, max_size=BOUNDS[short]).filter(
        lambda v: (
            v.strip() and v == v.strip(" ") and (short != "CN" or len(v.encode()) <= BOUNDS["CN"])
        )
    )


@st.composite
def subjects(draw):
    count = draw(st.integers(1, 6))
    out = []
    for _ in range(count):
        short = draw(st.sampled_from(sorted(OIDS)))
        label = draw(st.sampled_from([short, LONG_NAMES[short]]))
        out.append((short, label, draw(value_for(short))))
    return out


def escape(value: str, mask: list[bool]) -> bytes:
    out = b""
    for i, byte in enumerate(value.encode()):
        if byte >= 0x80 or mask[i % len(mask)]:
            out += (b"\\x%02x" if i % 2 else b"\\X%02X").replace(b"X", b"x", 1) % byte
        else:
            out += bytes([byte])
    return out


@given(subjects(), st.lists(st.booleans(), min_size=1, max_size=8))
@settings(max_examples=examples(200), deadline=None)
def test_round_trip(items, mask):
    payload = b"".join(
        b"/" + label.encode() + b"=" + escape(value, mask) for _, label, value in items
    )
    assume(len(payload) <= MAX_SUBJECT_BYTES)
    name = parse_subject(payload)
    assert attrs(name) == [(OIDS[short], value) for short, _, value in items]
    lines = [f"{i}.{label} = {value}".encode() for i, (_, label, value) in enumerate(items)]
    assert attrs(parse_spkac_subject(lines)) == attrs(name)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(lambda x: "".join(x).encode()),
    )
)
@settings(max_examples=examples(500), deadline=None)
def test_anything_gives_a_name_or_a_refusal(payload):
    try:
        name = parse_subject(payload)
    except Refusal as exc:
        assert exc.code == "bad-subject"
    else:
        assert len(name) >= 1
    try:
        parse_spkac_subject(payload.split(b"\n"))
    except Refusal as exc:
        assert exc.code == "bad-subject"


POSITION = {oid: i for i, oid in enumerate(POLICY)}


@given(subjects())
@settings(max_examples=examples(300), deadline=None)
def test_policy_order_is_a_stable_sort(items):
    payload = b"".join(
        b"/" + label.encode() + b"=" + escape(value, [False]) for _, label, value in items
    )
    assume(len(payload) <= MAX_SUBJECT_BYTES)
    before = attrs(parse_subject(payload))
    after = attrs(policy_order(parse_subject(payload)))
    assert sorted(after, key=repr) == sorted(before, key=repr)  # a permutation
    assert [POSITION[oid] for oid, _ in after] == sorted(POSITION[oid] for oid, _ in before)
    for oid in POLICY:  # stable
        assert [v for o, v in after if o == oid] == [v for o, v in before if o == oid]

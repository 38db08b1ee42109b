"""Where a hostile DER blob breaks, said in our words (``fault``).

Trusted side, hostile input; no policy, no crypto. The parsers of
requests, certificates and CRLs leave the decoding to cryptography and
asn1crypto, whose error texts are theirs (``ParseError { kind: ... }``) and
go to the log only. When a library refuses a blob, ``fault`` walks its
tag-length-value structure and names the first thing wrong and the byte
where it is: the sentence the refusal carries. The walk is bounded (depth,
element count) and reads nothing but the lengths.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

MAX_DEPTH = 32
MAX_ELEMENTS = 20_000
_TAG_NAMES = {
    0x02: "an INTEGER",
    0x03: "a BIT STRING",
    0x04: "an OCTET STRING",
    0x05: "a NULL",
    0x06: "an OBJECT IDENTIFIER",
    0x16: "an IA5String",
    0x30: "a SEQUENCE",
    0x31: "a SET",
    0xA0: "a [0] element",
}


@dataclasses.dataclass(frozen=True)
class Shape:
    """What an element must be: its tag, its name and, if checked, its children's shapes."""

    tag: int
    name: str
    children: tuple[Shape, ...] | None = None


CSR = Shape(
    0x30,
    "the request",
    (
        Shape(
            0x30,
            "certificationRequestInfo",
            (
                Shape(0x02, "the version"),
                Shape(0x30, "the subject"),
                Shape(0x30, "subjectPublicKeyInfo"),
                Shape(0xA0, "the attributes"),
            ),
        ),
        Shape(0x30, "the signature algorithm"),
        Shape(0x03, "the signature"),
    ),
)
SPKAC = Shape(
    0x30,
    "the SPKAC",
    (
        Shape(
            0x30,
            "publicKeyAndChallenge",
            (Shape(0x30, "subjectPublicKeyInfo"), Shape(0x16, "the challenge")),
        ),
        Shape(0x30, "the signature algorithm"),
        Shape(0x03, "the signature"),
    ),
)
CERTIFICATE = Shape(
    0x30,
    "the certificate",
    (
        Shape(0x30, "tbsCertificate"),
        Shape(0x30, "the signature algorithm"),
        Shape(0x03, "the signature"),
    ),
)
CRL = Shape(
    0x30,
    "the CRL",
    (
        Shape(0x30, "tbsCertList"),
        Shape(0x30, "the signature algorithm"),
        Shape(0x03, "the signature"),
    ),
)


@dataclasses.dataclass(frozen=True)
class _Element:
    offset: int
    tag: int
    end: int
    children: tuple[_Element, ...]


class _Fault(Exception):
    pass


def from_pem(data: bytes, labels: tuple[str, ...]) -> bytes:
    """The DER of the first PEM block labelled one of ``labels``.

    ValueError, in our words, if there is none or its body is not base64.
    """
    names = b"|".join(re.escape(label.encode()) for label in labels)
    match = re.search(
        rb"-----BEGIN (?:"
        + names
        + rb")-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (?:"
        + names
        + rb")-----",
        data,
    )
    if match is None:
        raise ValueError(f"no PEM {labels[0]} block")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the PEM {labels[0]} block is not base64") from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _tag_name(tag: int) -> str:
    return _TAG_NAMES.get(tag, f"tag 0x{tag:02x}")


def fault(data: bytes, shape: Shape) -> str:
    """The first structural fault of ``data`` as ``shape``, or what is left to say.

    Never raises; the text is a short sentence fragment with a byte offset,
    for a refusal such as ``payload 1 is not a PKCS#10 request: <fault>``.
    """
    if data and data[0] != shape.tag:
        return f"{shape.name} starts with {_tag_name(data[0])}, not {_tag_name(shape.tag)}"
    try:
        top = _Walker(data).element(0, len(data), 0)
        if top.end != len(data):
            extra = _count(len(data) - top.end, "byte")
            return f"{extra} after the end of {shape.name} at byte {top.end}"
        _check(top, shape)
    except _Fault as exc:
        return str(exc)
    return "its DER structure is sound, but a value inside it is not valid"


def _check(element: _Element, shape: Shape) -> None:
    if element.tag != shape.tag:
        raise _Fault(
            f"{shape.name} at byte {element.offset} is {_tag_name(element.tag)},"
            f" not {_tag_name(shape.tag)}"
        )
    if shape.children is None:
        return
    if len(element.children) != len(shape.children):
        raise _Fault(
            f"{shape.name} at byte {element.offset} has"
            f" {_count(len(element.children), 'element')}, not {len(shape.children)}"
        )
    for child, child_shape in zip(element.children, shape.children, strict=True):
        _check(child, child_shape)


class _Walker:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.count = 0

    def element(self, pos: int, limit: int, depth: int) -> _Element:
        data = self.data
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise _Fault(f"more than {MAX_ELEMENTS} DER elements")
        if depth > MAX_DEPTH:
            raise _Fault(f"DER nested more than {MAX_DEPTH} deep at byte {pos}")
        if pos >= limit:
            raise _Fault(f"DER ends at byte {pos}, where an element should start")
        offset, tag = pos, data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            raise _Fault(f"multi-byte tag at byte {offset}, which these structures never use")
        if pos >= limit:
            raise _Fault(f"DER ends inside a length at byte {pos}")
        first = data[pos]
        pos += 1
        if first == 0x80:
            raise _Fault(f"indefinite length at byte {pos - 1}, which DER forbids")
        if first & 0x80:
            count = first & 0x7F
            if count > 4:
                raise _Fault(f"a length of {count} bytes at byte {pos - 1}")
            if pos + count > limit:
                raise _Fault(f"DER ends inside a length at byte {pos - 1}")
            length = int.from_bytes(data[pos : pos + count], "big")
            if length < 0x80 or length >> (8 * (count - 1)) == 0:
                raise _Fault(f"a length not in its shortest form at byte {pos - 1}")
            pos += count
        else:
            length = first
        end = pos + length
        if end > limit:
            raise _Fault(
                f"the element at byte {offset} needs {_count(length, 'byte')},"
                f" only {limit - pos} remain"
            )
        children: list[_Element] = []
        if tag & 0x20:
            child_pos = pos
            while child_pos < end:
                child = self.element(child_pos, end, depth + 1)
                children.append(child)
                child_pos = child.end
        return _Element(offset, tag, end, tuple(children))

"""tlog.merkle against RFC 9162's published vectors and against the RFC's definitions.

The known answers are Certificate Transparency's reference vectors, as
transparency-dev/merkle keeps them in proof/verify_test.go (the eight leaves,
the roots of sizes 1 to 8, the inclusion and consistency proofs, and the
corruptions that must not verify). The property tests hold tlog.merkle's
iterative algorithms to a second implementation (tests/support/rfc9162.py),
written straight from the recursive definitions of RFC 9162 section 2.1 (MTH,
PATH, SUBPROOF), with its own hashing and verifiers that rebuild the roots by
the same recursions.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.examples import examples
from tests.support.rfc9162 import (
    Reference,
    path_length,
    ref_leaf,
    ref_verify_consistency,
    ref_verify_inclusion,
)
from tlog.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# CPU-bound examples; no deadline, as CI machines are slow and shared.
PROPS = settings(max_examples=examples(60), deadline=None)

# --- known answers: transparency-dev/merkle, proof/verify_test.go ---------------------
# (the vectors of Certificate Transparency's reference implementation)

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243")] + [
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def hs(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# (leaf number counted from 1, as the Go vectors do; tree size; proof)
INCLUSION = [
    (1, 1, []),
    (1, 8, hs(
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    )),
    (6, 8, hs(
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    )),
    (3, 3, hs("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (2, 5, hs(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    )),
]  # fmt: skip

CONSISTENCY = [
    (1, 1, []),
    (1, 8, hs(
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    )),
    (6, 8, hs(
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    )),
    (2, 5, hs(
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    )),
    (6, 7, hs(
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    )),
]  # fmt: skip

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
KAT = Reference(LEAVES)


def test_the_empty_tree_and_the_roots_of_sizes_1_to_8() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of(KAT.lookup(0), 0) == EMPTY_ROOT
    frontier = Frontier()
    for size, root in enumerate(ROOTS, 1):
        assert root_of(KAT.lookup(size), size) == root == KAT.mth(0, size)
        frontier.append(leaf_hash(LEAVES[size - 1]))
        assert frontier.root() == root


def bit_flipped(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    return [h if j != i else bytes([h[0] ^ bit]) + h[1:] for j, h in enumerate(proof)]


@pytest.mark.parametrize(("number", "size", "proof"), INCLUSION)
def test_inclusion_vectors(number: int, size: int, proof: list[bytes]) -> None:
    index, root, leaf = number - 1, ROOTS[size - 1], leaf_hash(LEAVES[number - 1])
    assert inclusion_proof(KAT.lookup(size), index, size) == proof
    assert verify_inclusion(leaf, index, size, proof, root) is True
    # verify_test.go's corruptInclusionProof: none of these may verify.
    probes = [
        (leaf, index - 1, size, proof, root),
        (leaf, index + 1, size, proof, root),
        (leaf, index ^ 2, size, proof, root),
        (leaf, index, size * 2, proof, root),
        (leaf, index, size // 2, proof, root),
        (b"WrongLeaf", index, size, proof, root),
        (leaf, index, size, proof, EMPTY_ROOT),
        (leaf, index, size, proof, SOME_HASH),
        (leaf, index, size, [*proof, b""], root),
        (leaf, index, size, [*proof, root], root),
        (leaf, index, size, [b"", *proof], root),
        (leaf, index, size, [root, *proof], root),
    ]
    probes += [(leaf, index, size, bit_flipped(proof, i, 8), root) for i in range(len(proof))]
    if proof:
        probes.append((leaf, index, size, proof[:-1], root))
    if len(proof) > 1:
        probes.append((leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
    assert [p for p in probes if verify_inclusion(*p)] == []


def test_inclusion_of_degenerate_trees() -> None:
    """verify_test.go's TestVerifyInclusion(SingleEntry): sizes 0 and 1, hashes of no length."""
    one = leaf_hash(b"data")
    assert verify_inclusion(one, 0, 1, [], one) is True
    assert not verify_inclusion(b"", 0, 1, [], one)
    assert not verify_inclusion(one, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], b"")
    for index, size in ((0, 0), (0, 1), (1, 0), (2, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], b"")
        assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(ValueError, match="leaf 0 is not in a tree of 0"):
        inclusion_proof(KAT.lookup(0), 0, 0)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert consistency_proof(KAT.lookup(new), old, new) == proof
    assert verify_consistency(old, new, r1, r2, proof) is True
    if not proof:
        return
    # verify_test.go's corruptConsistencyProof: none of these may verify.
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    probes += [(old, new, r1, r2, bit_flipped(proof, i, 16)) for i in range(len(proof))]
    assert [p for p in probes if verify_consistency(*p)] == []


# verify_test.go's TestVerifyConsistency table; its "don't care" roots are strings of
# other lengths, which tlog refuses outright, so 32-byte stand-ins keep each case's point.
CARE1, CARE2 = hashlib.sha256(b"don't care 1").digest(), hashlib.sha256(b"don't care 2").digest()
TRIVIAL_CONSISTENCY = [
    (0, 0, CARE1, CARE2, [], False),
    (1, 1, CARE1, CARE2, [], False),
    (0, 0, CARE1, CARE1, [], True),
    (0, 1, CARE1, CARE2, [], True),
    (1, 1, CARE2, CARE2, [], True),
    (1, 0, CARE1, CARE2, [], False),
    (2, 1, CARE1, CARE2, [], False),
    (1, 2, CARE1, CARE2, [], False),
    (0, 0, EMPTY_ROOT, CARE2, [], False),
    (1, 1, EMPTY_ROOT, CARE2, [], False),
    (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
]


@pytest.mark.parametrize(("old", "new", "r1", "r2", "proof", "good"), TRIVIAL_CONSISTENCY)
def test_consistency_of_trivial_sizes(
    old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes], good: bool
) -> None:
    assert verify_consistency(old, new, r1, r2, proof) is good
    assert ref_verify_consistency(old, new, r1, r2, proof) is good


def test_the_reference_gives_the_known_answers() -> None:
    """The second implementation is checked too, or agreeing with it would prove nothing."""
    assert [KAT.mth(0, n) for n in range(1, 9)] == ROOTS
    for number, size, proof in INCLUSION:
        assert KAT.path(number - 1, 0, size) == proof
        assert ref_verify_inclusion(
            leaf_hash(LEAVES[number - 1]), number - 1, size, proof, ROOTS[size - 1]
        )
    for old, new, proof in CONSISTENCY:
        assert KAT.proof(old, new) == proof
        assert ref_verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


# --- properties: tlog.merkle against the reference ------------------------------------


@st.composite
def trees(draw: st.DrawFn, max_size: int = 150) -> Reference:
    """A tree of distinct leaves: with two equal leaves, a proof for one is a proof for the other."""
    salt = draw(st.binary(max_size=6))
    return Reference([salt + str(i).encode() for i in range(draw(st.integers(1, max_size)))])


@PROPS
@given(trees(max_size=70))
def test_roots_and_the_frontier_match_mth_for_every_prefix(tree: Reference) -> None:
    frontier = Frontier()
    for size in range(len(tree.data) + 1):
        assert root_of(tree.lookup(size), size) == frontier.root() == tree.mth(0, size)
        assert Frontier(frontier.size, frontier.hashes).root() == frontier.root()
        if size < len(tree.data):
            frontier.append(ref_leaf(tree.data[size]))


def wrong_sizes(size: int) -> set[int]:
    return {0, 1, size - 1, size + 1, size * 2, size // 2, size + (size & -size)} - {size}


@PROPS
@given(trees(), st.data())
def test_inclusion_proofs_match_path_and_only_they_verify(
    tree: Reference, data: st.DataObject
) -> None:
    size = len(tree.data)
    index = data.draw(st.integers(0, size - 1))
    leaf, root = ref_leaf(tree.data[index]), tree.mth(0, size)
    calls: list[tuple[int, int]] = []
    proof = inclusion_proof(tree.lookup(size, calls), index, size)
    assert proof == tree.path(index, 0, size)
    assert len(calls) <= 2 * size.bit_length()  # O(log n) reads of the store
    assert verify_inclusion(leaf, index, size, proof, root) is True

    wrong = [bit_flipped(proof, i, 1 << data.draw(st.integers(0, 7))) for i in range(len(proof))]
    wrong += [proof[:-1], proof[1:], [*proof, root], [leaf, *proof]]
    for bad in (w for w in wrong if w != proof):  # a tree of one leaf has no proof to cut
        assert verify_inclusion(leaf, index, size, bad, root) is False
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index)) if size > 1 else -1
    for bad_index in (other, -1, size, size + index):
        assert verify_inclusion(leaf, bad_index, size, proof, root) is False
    assert verify_inclusion(leaf, index, size, proof, tree.mth(0, size - 1)) is False
    if size > 1:
        assert verify_inclusion(ref_leaf(tree.data[other]), index, size, proof, root) is False
    # Another size may give the same steps (leaf 0 of 3 and of 4: two rights); whether it
    # verifies is then the definitions' answer, and False whenever the proof's length differs.
    for bad_size in wrong_sizes(size):
        got = verify_inclusion(leaf, index, bad_size, proof, root)
        assert got is ref_verify_inclusion(leaf, index, bad_size, proof, root)
        if not 0 <= index < bad_size or path_length(index, bad_size) != len(proof):
            assert got is False


@PROPS
@given(trees(), st.data())
def test_consistency_proofs_match_subproof_and_only_they_verify(
    tree: Reference, data: st.DataObject
) -> None:
    new = len(tree.data)
    old = data.draw(st.integers(0, new) | st.integers(max(0, new - 9), new))  # near: other paths
    r1, r2 = tree.mth(0, old), tree.mth(0, new)
    calls: list[tuple[int, int]] = []
    proof = consistency_proof(tree.lookup(new, calls), old, new)
    assert proof == tree.proof(old, new)
    assert len(calls) <= 2 * new.bit_length()
    assert verify_consistency(old, new, r1, r2, proof) is True
    if old in (0, new):
        assert verify_consistency(old, new, r1, r2, [r1]) is False
        return

    wrong = [bit_flipped(proof, i, 1 << data.draw(st.integers(0, 7))) for i in range(len(proof))]
    wrong += [[], proof[:-1], proof[1:], [*proof, r2], [r1, *proof], [proof[0], *proof]]
    for bad in wrong:
        assert verify_consistency(old, new, r1, r2, bad) is False
    assert verify_consistency(old, new, r2, r1, proof) is False
    assert verify_consistency(old, new, tree.mth(0, old - 1), r2, proof) is False
    assert verify_consistency(old, new, r1, tree.mth(0, new - 1), proof) is False
    for bad_old in wrong_sizes(old) | {new + 1, -1}:
        got = verify_consistency(bad_old, new, r1, r2, proof)
        assert got is ref_verify_consistency(bad_old, new, r1, r2, proof)
    for bad_new in wrong_sizes(new) | {old - 1}:
        got = verify_consistency(old, bad_new, r1, r2, proof)
        assert got is ref_verify_consistency(old, bad_new, r1, r2, proof)


SMALL = Reference([str(i).encode() for i in range(64)])


def test_every_proof_of_the_small_trees() -> None:
    """All sizes up to 64: every shape of the last, uneven subtrees a proof climbs through."""
    for size in range(1, 65):
        lookup, root = SMALL.lookup(size), SMALL.mth(0, size)
        for index in range(size):
            proof = inclusion_proof(lookup, index, size)
            assert proof == SMALL.path(index, 0, size)
            assert verify_inclusion(ref_leaf(SMALL.data[index]), index, size, proof, root)
        for old in range(size + 1):
            proof = consistency_proof(lookup, old, size)
            assert proof == SMALL.proof(old, size)
            assert verify_consistency(old, size, SMALL.mth(0, old), root, proof)


hashes = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))


@settings(max_examples=examples(300), deadline=None)
@given(
    st.integers(-3, 2**64),
    st.integers(-3, 2**64),
    st.lists(hashes, max_size=8),
    hashes,
    hashes,
)
def test_any_input_is_an_answer_never_an_exception(
    a: int, b: int, proof: list[bytes], h1: bytes, h2: bytes
) -> None:
    """Whatever the other side sends, the checks answer as the definitions do."""
    assert verify_inclusion(h1, a, b, proof, h2) is (
        len(h1) == len(h2) == 32 and all(len(p) == 32 for p in proof)
        and ref_verify_inclusion(h1, a, b, proof, h2)
    )  # fmt: skip
    assert verify_consistency(a, b, h1, h2, proof) is (
        len(h1) == len(h2) == 32 and all(len(p) == 32 for p in proof)
        and ref_verify_consistency(a, b, h1, h2, proof)
    )  # fmt: skip

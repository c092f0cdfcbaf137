"""RFC 9162 Merkle math: published test vectors, a from-scratch reference, and tampering.

The vectors are the RFC 6962 reference test data used by certificate-transparency and
transparency-dev/merkle (8 leaves: "", 00, 10, 2021, 3031, 40414243, 5051525354555657,
606162636465666768696a6b6c6d6e6f); only the values are carried over.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.core import merkle
from hotline.errors import ErrorCode, HotlineError, InputError, VerificationError, WireError

LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAF_HASHES = [merkle.leaf_hash(d) for d in LEAVES]

# Roots of the trees of the first n leaves, n = 0..8.
ROOTS = [
    bytes.fromhex(x)
    for x in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
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

# The hash of every perfect subtree of the 8-leaf tree: NODES[level][index].
NODES = [
    [
        bytes.fromhex(x)
        for x in (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        )
    ],
    [
        bytes.fromhex(x)
        for x in (
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        )
    ],
    [
        bytes.fromhex(x)
        for x in (
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        )
    ],
    [bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]


def _h(*xs: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


# (leaf index, tree size, published audit path)
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        2,
        _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
    ),
    (
        1,
        2,
        _h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    ),
    (
        2,
        3,
        _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    ),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

# (old size, new size, published consistency proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- A from-scratch reference: level by level, an odd last node moves up unchanged -------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        cur = levels[-1]
        nxt = [
            hashlib.sha256(b"\x01" + cur[i] + cur[i + 1]).digest()
            for i in range(0, len(cur) - 1, 2)
        ]
        if len(cur) % 2:
            nxt.append(cur[-1])
        levels.append(nxt)
    return levels


def ref_root(leaf_hashes: list[bytes]) -> bytes:
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    return ref_levels(leaf_hashes)[-1][0]


def ref_path(leaf_hashes: list[bytes], index: int) -> list[bytes]:
    path = []
    for level in ref_levels(leaf_hashes)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return path


def leaves_of(n: int) -> list[bytes]:
    return [ref_leaf(i.to_bytes(4, "big")) for i in range(n)]


def subtree_hash(leaf_hashes: list[bytes], node: merkle.Subtree) -> bytes:
    level, index = node
    return ref_root(leaf_hashes[index << level : (index + 1) << level])


def from_subtrees(leaf_hashes: list[bytes], layout: list[list[merkle.Subtree]]) -> list[bytes]:
    return [merkle.fold_subtrees([subtree_hash(leaf_hashes, n) for n in el]) for el in layout]


def flip(h: bytes, bit: int = 3) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


# --- Published vectors --------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert ROOTS[0] == merkle.EMPTY_ROOT
    assert merkle.root_from_leaf_hashes([]) == ROOTS[0]
    assert merkle.merkle_root([]) == ROOTS[0]


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    assert merkle.merkle_root(LEAVES[:size]) == ROOTS[size]
    assert merkle.root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size]
    frontier = [subtree_hash(LEAF_HASHES, n) for n in merkle.range_subtrees(0, size)]
    assert merkle.fold_subtrees(frontier) == ROOTS[size]


def test_published_node_hashes() -> None:
    for level, row in enumerate(NODES):
        for index, expected in enumerate(row):
            assert subtree_hash(LEAF_HASHES, (level, index)) == expected
    appended = merkle.append_leaves(0, [], LEAF_HASHES)
    for level, index, h in appended.nodes:
        assert NODES[level][index] == h
    assert len(appended.nodes) == 15


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_published_inclusion_proofs(index: int, size: int, path: list[bytes]) -> None:
    assert merkle.inclusion_proof(LEAF_HASHES[:size], index) == path
    layout = merkle.inclusion_proof_subtrees(index, size)
    assert from_subtrees(LEAF_HASHES, layout) == path
    assert merkle.inclusion_proof_length(index, size) == len(path)
    merkle.verify_inclusion(
        leaf_hash=LEAF_HASHES[index], index=index, size=size, proof=path, root=ROOTS[size]
    )


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_published_consistency_proofs(old: int, new: int, proof: list[bytes]) -> None:
    assert merkle.consistency_proof(LEAF_HASHES[:new], old) == proof
    layout = merkle.consistency_proof_subtrees(old, new)
    assert from_subtrees(LEAF_HASHES, layout) == proof
    assert merkle.consistency_proof_length(old, new) == len(proof)
    merkle.verify_consistency(
        old_size=old, new_size=new, old_root=ROOTS[old], new_root=ROOTS[new], proof=proof
    )


def inclusion_probes(
    index: int, size: int, path: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    probes = [
        ("index - 1", index - 1, size, path, root, leaf),
        ("index + 1", index + 1, size, path, root, leaf),
        ("index ^ 2", index ^ 2, size, path, root, leaf),
        ("size * 2", index, size * 2, path, root, leaf),
        ("size / 2", index, size // 2, path, root, leaf),
        ("wrong leaf", index, size, path, root, SOME_HASH),
        ("empty root", index, size, path, merkle.EMPTY_ROOT, leaf),
        ("random root", index, size, path, SOME_HASH, leaf),
        ("trailing root", index, size, [*path, root], root, leaf),
        ("preceding root", index, size, [root, *path], root, leaf),
    ]
    for i in range(len(path)):
        wrong = list(path)
        wrong[i] = flip(wrong[i])
        probes.append((f"flipped proof[{i}]", index, size, wrong, root, leaf))
    if path:
        probes.append(("removed component", index, size, path[:-1], root, leaf))
    if len(path) > 1:
        probes.append(
            ("inserted component", index, size, [path[0], SOME_HASH, *path[1:]], root, leaf)
        )
    return probes


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_tampered_published_inclusion_proofs_fail(index: int, size: int, path: list[bytes]) -> None:
    for desc, i, n, p, root, leaf in inclusion_probes(
        index, size, path, ROOTS[size], LEAF_HASHES[index]
    ):
        with pytest.raises(HotlineError) as caught:
            merkle.verify_inclusion(leaf_hash=leaf, index=i, size=n, proof=p, root=root)
        assert isinstance(caught.value, VerificationError | InputError), desc


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS[1:])
def test_tampered_published_consistency_proofs_fail(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        ("old - 1", old - 1, new, r1, r2, proof),
        ("old + 1", old + 1, new, r1, r2, proof),
        ("old ^ 2", old ^ 2, new, r1, r2, proof),
        ("new * 2", old, new * 2, r1, r2, proof),
        ("new / 2", old, new // 2, r1, r2, proof),
        ("wrong old root", old, new, SOME_HASH, r2, proof),
        ("wrong new root", old, new, r1, SOME_HASH, proof),
        ("swapped roots", old, new, r2, r1, proof),
        ("empty proof", old, new, r1, r2, []),
        ("trailing old root", old, new, r1, r2, [*proof, r1]),
        ("trailing new root", old, new, r1, r2, [*proof, r2]),
        ("preceding old root", old, new, r1, r2, [r1, *proof]),
        ("preceding new root", old, new, r1, r2, [r2, *proof]),
        ("preceding proof[0]", old, new, r1, r2, [proof[0], *proof]),
        ("truncated", old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i], 4)
        probes.append((f"flipped proof[{i}]", old, new, r1, r2, wrong))
    for desc, o, n, a, b, p in probes:
        with pytest.raises(HotlineError) as caught:
            merkle.verify_consistency(old_size=o, new_size=n, old_root=a, new_root=b, proof=p)
        assert isinstance(caught.value, VerificationError | InputError), desc


# --- Edge cases and precise errors --------------------------------------------------------------


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    h = merkle.leaf_hash(b"data")
    merkle.verify_inclusion(leaf_hash=h, index=0, size=1, proof=[], root=h)
    with pytest.raises(VerificationError) as caught:
        merkle.verify_inclusion(leaf_hash=h, index=0, size=1, proof=[], root=SOME_HASH)
    assert caught.value.code is ErrorCode.BAD_PROOF


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (8, 8)])
def test_inclusion_outside_the_tree_is_a_bad_proof(index: int, size: int) -> None:
    with pytest.raises(VerificationError) as caught:
        merkle.verify_inclusion(
            leaf_hash=SOME_HASH, index=index, size=size, proof=[], root=merkle.EMPTY_ROOT
        )
    assert caught.value.code is ErrorCode.BAD_PROOF


def test_consistency_edge_cases() -> None:
    empty = merkle.EMPTY_ROOT
    # Anything is consistent with the empty tree; equal sizes need equal roots.
    merkle.verify_consistency(old_size=0, new_size=0, old_root=empty, new_root=empty, proof=[])
    merkle.verify_consistency(old_size=0, new_size=5, old_root=empty, new_root=ROOTS[5], proof=[])
    merkle.verify_consistency(
        old_size=3, new_size=3, old_root=ROOTS[3], new_root=ROOTS[3], proof=[]
    )
    bad = [
        (0, 0, SOME_HASH, empty, []),  # not the empty tree's root
        (0, 0, empty, SOME_HASH, []),
        (0, 1, empty, ROOTS[1], [empty]),  # a proof where none belongs
        (1, 1, ROOTS[1], ROOTS[2], []),  # two roots for one size
        (1, 1, ROOTS[1], ROOTS[1], [empty]),
        (2, 1, ROOTS[2], ROOTS[1], []),  # time travel
        (1, 2, ROOTS[1], ROOTS[2], []),  # missing proof
    ]
    for old, new, r1, r2, proof in bad:
        with pytest.raises(VerificationError) as caught:
            merkle.verify_consistency(
                old_size=old, new_size=new, old_root=r1, new_root=r2, proof=proof
            )
        assert caught.value.code is ErrorCode.BAD_PROOF


def test_malformed_proofs_are_wire_errors() -> None:
    path = INCLUSION_VECTORS[-1][2]
    for wrong in ([*path[:2], path[2][:31]], [*path[:2], path[2] + b"\x00"], [b"", *path]):
        with pytest.raises(WireError) as caught:
            merkle.verify_inclusion(
                leaf_hash=LEAF_HASHES[5], index=5, size=8, proof=wrong, root=ROOTS[8]
            )
        assert caught.value.code is ErrorCode.MALFORMED
    with pytest.raises(WireError) as too_long:
        merkle.verify_consistency(
            old_size=3, new_size=8, old_root=ROOTS[3], new_root=ROOTS[8], proof=[SOME_HASH] * 65
        )
    assert too_long.value.code is ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "call",
    [
        lambda: merkle.verify_inclusion(
            leaf_hash=SOME_HASH, index=-1, size=8, proof=[], root=ROOTS[8]
        ),
        lambda: merkle.verify_inclusion(
            leaf_hash=SOME_HASH, index=True, size=8, proof=[], root=ROOTS[8]
        ),
        lambda: merkle.verify_inclusion(
            leaf_hash=b"short", index=0, size=1, proof=[], root=ROOTS[1]
        ),
        lambda: merkle.verify_inclusion(
            leaf_hash=SOME_HASH, index=0, size=1, proof=[], root=ROOTS[1][:-1]
        ),
        lambda: merkle.verify_inclusion(
            leaf_hash=SOME_HASH,
            index=0,
            size=2,
            proof=SOME_HASH,  # type: ignore[arg-type]
            root=ROOTS[2],
        ),
        lambda: merkle.verify_consistency(
            old_size=1, new_size=2**63, old_root=ROOTS[1], new_root=ROOTS[2], proof=[]
        ),
        lambda: merkle.inclusion_proof(LEAF_HASHES, 8),
        lambda: merkle.consistency_proof(LEAF_HASHES[:4], 5),
        lambda: merkle.root_from_leaf_hashes([b"x"]),
        lambda: merkle.split_point(1),
        lambda: merkle.range_subtrees(1, 3),
        lambda: merkle.range_subtrees(4, 4),
        lambda: merkle.append_leaves(3, [SOME_HASH], []),
        lambda: merkle.inclusion_proof_subtrees(3, 3),
        lambda: merkle.consistency_proof_subtrees(4, 3),
    ],
)
def test_bad_arguments_are_input_errors(call: object) -> None:
    assert callable(call)
    with pytest.raises(InputError):
        call()


def test_byte_form_of_proofs() -> None:
    path = INCLUSION_VECTORS[-1][2]
    data = merkle.encode_proof(path)
    assert data == b"".join(path)
    assert merkle.decode_proof(data) == path
    assert merkle.decode_proof(b"") == []
    with pytest.raises(WireError) as partial:
        merkle.decode_proof(data[:-1])
    assert partial.value.code is ErrorCode.MALFORMED
    with pytest.raises(WireError) as too_long:
        merkle.decode_proof(bytes(32 * 65))
    assert too_long.value.code is ErrorCode.TOO_LARGE
    assert len(merkle.decode_proof(bytes(32 * 64))) == 64


def test_limits_cover_the_largest_tree() -> None:
    big = merkle.MAX_TREE_SIZE
    assert merkle.inclusion_proof_length(big - 1, big) <= merkle.MAX_PROOF_HASHES
    assert merkle.inclusion_proof_length(0, big) <= merkle.MAX_PROOF_HASHES
    assert merkle.consistency_proof_length(big - 2, big) <= merkle.MAX_PROOF_HASHES
    assert merkle.consistency_proof_length(3, big) <= merkle.MAX_PROOF_HASHES
    assert len(merkle.range_subtrees(0, big)) == 63


def test_public_surface() -> None:
    for name in merkle.__all__:
        assert hasattr(merkle, name), name


# --- Properties against the from-scratch reference ---------------------------------------------

sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=150, deadline=None)
@given(sizes)
def test_roots_match_reference(n: int) -> None:
    hashes = leaves_of(n)
    expected = ref_root(hashes)
    assert merkle.root_from_leaf_hashes(hashes) == expected
    assert merkle.fold_subtrees([subtree_hash(hashes, s) for s in merkle.range_subtrees(0, n)]) == (
        expected
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=12))
def test_append_leaves_matches_reference(batches: list[int]) -> None:
    hashes: list[bytes] = []
    frontier: list[bytes] = []
    seen: dict[tuple[int, int], bytes] = {}
    for count in batches:
        new = leaves_of(len(hashes) + count)[len(hashes) :]
        appended = merkle.append_leaves(len(hashes), frontier, new)
        hashes.extend(new)
        frontier = appended.frontier
        assert appended.size == len(hashes)
        assert appended.root == ref_root(hashes)
        for level, index, h in appended.nodes:
            assert (level, index) not in seen
            seen[(level, index)] = h
            assert subtree_hash(hashes, (level, index)) == h
    # Every perfect subtree of the final tree was made exactly once.
    n = len(hashes)
    expected = {(lv, i) for lv in range(n.bit_length()) for i in range(n >> lv)}
    assert set(seen) == expected


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return n, draw(st.integers(min_value=0, max_value=n - 1))


@settings(max_examples=200, deadline=None)
@given(tree_and_index())
def test_inclusion_proofs_match_reference_and_verify(case: tuple[int, int]) -> None:
    n, index = case
    hashes = leaves_of(n)
    root = ref_root(hashes)
    path = merkle.inclusion_proof(hashes, index)
    assert path == ref_path(hashes, index)
    assert from_subtrees(hashes, merkle.inclusion_proof_subtrees(index, n)) == path
    assert len(path) == merkle.inclusion_proof_length(index, n)
    merkle.verify_inclusion(leaf_hash=hashes[index], index=index, size=n, proof=path, root=root)
    for desc, i, size, p, r, leaf in inclusion_probes(index, n, path, root, hashes[index]):
        genuine = (
            0 <= i < size <= n
            and hashes[i] == leaf
            and ref_root(hashes[:size]) == r
            and ref_path(hashes[:size], i) == p
        )
        if genuine:
            continue
        with pytest.raises((VerificationError, InputError)):
            merkle.verify_inclusion(leaf_hash=leaf, index=i, size=size, proof=p, root=r)
            pytest.fail(desc)


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(sizes)
    return draw(st.integers(min_value=0, max_value=new)), new


@settings(max_examples=200, deadline=None)
@given(two_sizes(), st.data())
def test_consistency_proofs_verify_and_resist_tampering(
    case: tuple[int, int], data: st.DataObject
) -> None:
    old, new = case
    hashes = leaves_of(new)
    r1, r2 = ref_root(hashes[:old]), ref_root(hashes)
    proof = merkle.consistency_proof(hashes, old)
    assert from_subtrees(hashes, merkle.consistency_proof_subtrees(old, new)) == proof
    assert len(proof) == merkle.consistency_proof_length(old, new)
    merkle.verify_consistency(old_size=old, new_size=new, old_root=r1, new_root=r2, proof=proof)
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=7))
        wrong = list(proof)
        wrong[i] = flip(wrong[i], bit)
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                old_size=old, new_size=new, old_root=r1, new_root=r2, proof=wrong
            )
    # A different old root or new root never verifies.
    with pytest.raises(VerificationError):
        merkle.verify_consistency(
            old_size=old, new_size=new, old_root=flip(r1), new_root=r2, proof=proof
        )
    if old != 0:  # anything is consistent with the empty tree
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                old_size=old, new_size=new, old_root=r1, new_root=flip(r2), proof=proof
            )
    other_new = data.draw(st.integers(min_value=max(old, 1), max_value=new + 5))
    # (A proof does not commit to the tree size: sizes with the same proof shape accept the same
    # proof, see test_a_proof_does_not_bind_the_tree_size. Other shapes must fail.)
    if old != 0 and merkle.consistency_proof_length(old, other_new) != len(proof):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                old_size=old, new_size=other_new, old_root=r1, new_root=r2, proof=proof
            )


def test_a_proof_does_not_bind_the_tree_size() -> None:
    """RFC 9162 roots do not commit to the tree size: trees of 33 and 34 leaves give proofs of the
    same shape, so the proof from 1 to 33 also "verifies" from 1 to 34 against the root of 33.
    The size must come from a signed tree head that signs size and root together.
    """
    hashes = leaves_of(33)
    proof = merkle.consistency_proof(hashes, 1)
    root33 = ref_root(hashes)
    for new_size in (33, 34):
        merkle.verify_consistency(
            old_size=1, new_size=new_size, old_root=hashes[0], new_root=root33, proof=proof
        )


def _accepts(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        merkle.verify_inclusion(leaf_hash=leaf, index=index, size=size, proof=proof, root=root)
    except HotlineError:
        return False
    return True


@settings(max_examples=120, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_inclusion_checker_accepts_exactly_what_verify_inclusion_accepts(
    size: int, data: st.DataObject
) -> None:
    """One checker over a stream of honest and damaged proofs (the damaged ones often sharing
    the top of an accepted path, where its memory would wrongly shortcut if it were inexact)
    gives, proof by proof, the verdict of the plain RFC 9162 verifier."""
    hashes = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    root = merkle.root_from_leaf_hashes(hashes)
    checker = merkle.InclusionChecker(size=size, root=root)
    for _ in range(data.draw(st.integers(min_value=1, max_value=30))):
        index = data.draw(st.integers(min_value=0, max_value=size - 1))
        proof = merkle.inclusion_proof(hashes, index)
        leaf = hashes[index]
        damage = data.draw(st.sampled_from(["none", "none", "byte", "leaf", "index", "cut", "add"]))
        if damage == "byte" and proof:
            at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
            proof[at] = bytes([proof[at][0] ^ 1]) + proof[at][1:]
        elif damage == "leaf":
            leaf = hashes[(index + 1) % size]
        elif damage == "index":
            index = data.draw(st.integers(min_value=0, max_value=size))
        elif damage == "cut" and proof:
            proof = proof[1:]
        elif damage == "add":
            proof = [*proof, hashes[0]]
        expected = _accepts(leaf, index, size, proof, root)
        try:
            checker.check(leaf, index, merkle.encode_proof(proof))
            verdict = True
        except VerificationError as e:
            assert e.code == ErrorCode.BAD_PROOF
            verdict = False
        assert verdict == expected, (damage, index, size)


def test_inclusion_checker_refuses_malformed_proofs() -> None:
    root = merkle.root_from_leaf_hashes(LEAF_HASHES)
    checker = merkle.InclusionChecker(size=8, root=root)
    with pytest.raises(WireError):
        checker.check(LEAF_HASHES[0], 0, b"\x00" * 33)
    with pytest.raises(WireError):
        checker.check(LEAF_HASHES[0], 0, b"\x00" * 32 * 65)
    with pytest.raises(InputError):
        checker.check(b"short", 0, b"")
    with pytest.raises(InputError):
        merkle.InclusionChecker(size=8, root=b"short")

"""The Merkle tree is RFC 6962's: the CT reference roots and proofs, and every proof of every small tree verifies."""

from __future__ import annotations

import pytest

from soundtrail.provenance.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    root_from_level,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference leaves and the root of each prefix (transparency-dev/merkle test data).
REFERENCE_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
REFERENCE_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
REFERENCE_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
REFERENCE_CONSISTENCY = {
    (2, 8): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}


def rfc_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 writes it, recursively: the oracle for the bottom-up tree."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = largest_power_of_two_below(len(leaves))
    return node_hash(rfc_root(leaves[:k]), rfc_root(leaves[k:]))


def hashes(n: int) -> list[bytes]:
    return [leaf_hash(index.to_bytes(4, "big")) for index in range(n)]


def test_reference_roots_and_proofs() -> None:
    tree = MerkleTree([leaf_hash(data) for data in REFERENCE_LEAVES])
    assert tree.root(0) == EMPTY_ROOT == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert [tree.root(size).hex() for size in range(1, 9)] == REFERENCE_ROOTS
    for (index, size), path in REFERENCE_INCLUSION.items():
        assert [node.hex() for node in tree.inclusion_path(index, size)] == path
        assert verify_inclusion(tree.leaf(index), index, size, tree.inclusion_path(index, size), tree.root(size))
    for (old, new), path in REFERENCE_CONSISTENCY.items():
        assert [node.hex() for node in tree.consistency_path(old, new)] == path
        assert verify_consistency(old, new, tree.root(old), tree.root(new), tree.consistency_path(old, new))


def test_every_prefix_root_and_subtree_equals_the_recursive_definition() -> None:
    leaves = hashes(70)
    tree = MerkleTree(leaves)
    for size in range(71):
        assert tree.root(size) == rfc_root(leaves[:size])
    assert root_from_level(leaves) == tree.root()
    for width in (1, 4, 16):
        blocks = [tree.subtree(start, min(start + width, 70)) for start in range(0, 70, width)]
        assert root_from_level(blocks) == tree.root(), "block hashes rebuild the root"


def test_every_inclusion_proof_verifies_and_nothing_else_does() -> None:
    tree = MerkleTree(hashes(37))
    for size in range(1, 38):
        root = tree.root(size)
        for index in range(size):
            path = tree.inclusion_path(index, size)
            assert verify_inclusion(tree.leaf(index), index, size, path, root)
            assert not verify_inclusion(leaf_hash(b"forged"), index, size, path, root)
            assert not verify_inclusion(tree.leaf(index), index, size, path, tree.root(size - 1))
            if size > 1:
                assert not verify_inclusion(tree.leaf(index), (index + 1) % size, size, path, root)
                assert not verify_inclusion(tree.leaf(index), index, size, path[:-1], root)
                bent = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
                assert not verify_inclusion(tree.leaf(index), index, size, bent, root)


def test_every_consistency_proof_verifies_and_a_rewritten_prefix_does_not() -> None:
    leaves = hashes(33)
    tree = MerkleTree(leaves)
    for new in range(34):
        for old in range(new + 1):
            path = tree.consistency_path(old, new)
            assert verify_consistency(old, new, tree.root(old), tree.root(new), path), (old, new)
            if 0 < old < new:
                rewritten = MerkleTree([leaf_hash(b"rewritten"), *leaves[1:new]])
                assert not verify_consistency(old, new, tree.root(old), rewritten.root(new),
                                              rewritten.consistency_path(old, new))
                assert not verify_consistency(old, new, tree.root(old), tree.root(new), path[:-1])
                assert not verify_consistency(new, old, tree.root(new), tree.root(old), path)
    assert not verify_consistency(3, 3, tree.root(3), tree.root(4), [])
    assert not verify_consistency(0, 5, leaf_hash(b"x"), tree.root(5), [])


def test_sizes_outside_the_tree_are_errors() -> None:
    tree = MerkleTree(hashes(5))
    with pytest.raises(ValueError, match="no prefix of 6"):
        tree.root(6)
    with pytest.raises(ValueError, match="leaf 5 is not in a tree of 5"):
        tree.inclusion_path(5)
    with pytest.raises(ValueError, match="cannot extend"):
        tree.consistency_path(4, 3)

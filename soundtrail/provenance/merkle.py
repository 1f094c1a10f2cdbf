"""Merkle trees as Certificate Transparency defines them (RFC 6962 section 2.1, RFC 9162 section 2.1).

The hashes, so that any CT library can check what soundtrail proves::

    leaf        SHA-256(0x00 || data)
    node        SHA-256(0x01 || left || right)
    MTH(D[n])   node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two smaller than n
    MTH({})     SHA-256("")

The 0x00 / 0x01 prefixes keep a leaf from ever being passed off as an inner node (a second
preimage), and the split rule fixes one tree shape per size, so two parties with the same
leaves always agree on the root.

:class:`MerkleTree` keeps every node, built bottom up: level 0 holds the leaf hashes, each level
above hashes neighbouring pairs, and an unpaired last node moves up unchanged::

    level 3                      root = node(n0123, n45)
    level 2          n0123                        n45      <- moved up
    level 1     n01          n23          n45              <- node(l4, l5)
    level 0   l0    l1     l2    l3     l4    l5

That is the RFC's tree (both put the largest power of two on the left): the node at level k,
index j is MTH of leaves [j * 2^k, min((j + 1) * 2^k, size)). Keeping the nodes makes the root
of any earlier size, an audit path or a consistency proof a few look-ups rather than a rehash of
the whole log, and one tree over today's ledger answers for every earlier checkpoint.

The verifiers are RFC 9162's algorithms (2.1.3.2 inclusion, 2.1.4.2 consistency), which need
nothing but the hashes: they are what an auditor runs without the ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The RFC's split point k for n > 1: the largest power of two strictly smaller than n."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_level(nodes: Sequence[bytes]) -> bytes:
    """The root above one level of nodes (each a subtree of equal width, the last one possibly narrower)."""
    level = list(nodes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        above = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            above.append(level[-1])
        level = above
    return level[0]


class MerkleTree:
    """Every node of the RFC 6962 tree over ``leaf_hashes`` (already hashed with :func:`leaf_hash`)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(self._levels[-1]) > 1:
            below = self._levels[-1]
            above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                above.append(below[-1])
            self._levels.append(above)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        size = self._check_size(size)
        return self.subtree(0, size) if size else EMPTY_ROOT

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for 0 <= start < end <= size: a stored node, or the RFC recursion down to stored ones.

        Every range the RFC's proofs name starts at a multiple of its own width rounded up to a power of two, so
        it is either a stored node or splits into one stored node and a smaller range of the same kind.
        """
        if not 0 <= start < end <= self.size:
            raise ValueError(f"no subtree [{start}, {end}) in a tree of {self.size} leaves")
        width = end - start
        level = (width - 1).bit_length()
        span = 1 << level
        if start % span == 0 and min(start + span, self.size) == end:
            return self._levels[level][start >> level]
        split = largest_power_of_two_below(width)
        return node_hash(self.subtree(start, start + split), self.subtree(start + split, end))

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 6962 2.1.1: the sibling hashes from the leaf up to the root."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            split = start + largest_power_of_two_below(end - start)
            if index < split:
                path.append(self.subtree(split, end))
                end = split
            else:
                path.append(self.subtree(start, split))
                start = split
        return path[::-1]

    def consistency_path(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:size]) of RFC 6962 2.1.2; empty when there is nothing to prove (0 or equal sizes)."""
        size = self._check_size(size)
        if not 0 <= old_size <= size:
            raise ValueError(f"a tree of {size} leaves cannot extend one of {old_size}")
        if old_size in (0, size):
            return []
        return self._subproof(old_size, 0, size, complete=True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:end], b) of RFC 6962 2.1.2, with ``complete`` for b."""
        if m == end - start:
            return [] if complete else [self.subtree(start, end)]
        split = largest_power_of_two_below(end - start)
        if m <= split:
            return self._subproof(m, start, start + split, complete) + [self.subtree(start + split, end)]
        return self._subproof(m - split, start + split, end, False) + [self.subtree(start, start + split)]

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"a tree of {self.size} leaves has no prefix of {size}")
        return size


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``path`` take ``leaf`` at ``index`` to ``root`` of a tree of ``size`` leaves?"""
    if not 0 <= index < size:
        return False
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       path: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: is the tree (``new_size``, ``new_root``) the tree (``old_size``, ``old_root``) extended?

    The empty tree is a prefix of every tree, and a tree of the same size is consistent only with itself;
    both need an empty path, as the RFC's generator gives.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    nodes = [old_root, *path] if old_size & (old_size - 1) == 0 else list(path)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = nodes[0]
    for node in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first = node_hash(node, first)
            second = node_hash(node, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and first == old_root and second == new_root

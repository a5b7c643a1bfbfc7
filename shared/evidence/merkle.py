"""Merkle trees as RFC 9162 (Certificate Transparency 2.0) section 2.1 defines them.

A leaf's hash is ``SHA-256(0x00 || data)`` and a node's ``SHA-256(0x01 || left || right)``;
the prefixes keep a leaf from ever passing for a node (second-preimage attacks). The tree
over ``n`` leaves splits at ``k``, the largest power of two smaller than ``n``, so a tree only
grows to the right and an old tree head is provably a prefix of a new one (a consistency
proof), and one leaf is provably in a tree (an inclusion proof).

This module knows nothing about Rekey: ``MerkleTree`` holds leaf hashes and answers
``root``, ``inclusion_proof`` and ``consistency_proof`` for any size it has seen; the
``verify_*`` functions are the RFC's verification algorithms (section 2.1.3.2, 2.1.4.2) and
need only hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
# Perfect subtrees at least this wide are kept once computed: they never change as the tree
# grows, so a new head costs about log2(n) hashes plus the leaves added since the last one.
_CACHED_WIDTH = 256


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def compact_nodes(size: int) -> list[tuple[int, int]]:
    """(start, width) of the perfect subtrees that make up ``D[0:size]``, left to right: one per
    bit of ``size``, widest first (the tree's "compact range" or right edge)."""
    nodes, start = [], 0
    for bit in range(size.bit_length() - 1, -1, -1):
        if size >> bit & 1:
            nodes.append((start, 1 << bit))
            start += 1 << bit
    return nodes


def root_of_compact_range(hashes: Sequence[bytes]) -> bytes:
    """MTH of a tree from its compact range: the nodes folded from the right."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for node in reversed(hashes[:-1]):
        root = node_hash(node, root)
    return root


class MerkleTree:
    """The leaf hashes of a growing log, with roots and proofs for any size up to its own.

    A tree may start from a **compact range** (:meth:`from_compact_range`): the hashes of the
    perfect subtrees that make up its first ``base`` leaves, instead of the leaves. That is all
    RFC 9162 needs to grow it: the root at ``base`` and at any later size, and consistency proofs
    from ``base`` (or later) to any later size. Inclusion proofs and roots for leaves before
    ``base`` are not available from it.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._base = 0
        self._known: dict[tuple[int, int], bytes] = {}  # the compact range's nodes
        self._leaves: list[bytes] = list(leaves)  # leaves from ``_base`` on
        self._perfect: dict[tuple[int, int], bytes] = {}

    @classmethod
    def from_compact_range(cls, size: int, hashes: Sequence[bytes]) -> MerkleTree:
        nodes = compact_nodes(size)
        if len(nodes) != len(hashes):
            raise ValueError(f"a tree of {size} leaves has {len(nodes)} nodes in its compact "
                             f"range, not {len(hashes)}")
        tree = cls()
        tree._base = size
        tree._known = dict(zip(nodes, hashes, strict=True))
        return tree

    def compact_range(self, size: int | None = None) -> list[bytes]:
        """The compact range of ``D[0:size]`` (the whole tree when None)."""
        size = len(self) if size is None else size
        self._check_size(size)
        return [self._mth(start, width) for start, width in compact_nodes(size)]

    @property
    def base(self) -> int:
        """How many leaves the tree knows only through its compact range."""
        return self._base

    def __len__(self) -> int:
        return self._base + len(self._leaves)

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash (``leaf_hash(data)``), not the data itself."""
        self._leaves.append(leaf)

    def leaf(self, index: int) -> bytes:
        if index < self._base:
            raise ValueError(f"leaf {index} is inside the compact range this tree started from")
        return self._leaves[index - self._base]

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]); the whole tree when size is None."""
        size = len(self) if size is None else size
        self._check_size(size)
        return self._mth(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1."""
        size = len(self) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        return self._path(index, 0, size)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second]) of RFC 9162 section 2.1.4.1 (0 < first <= second)."""
        second = len(self) if second is None else second
        self._check_size(second)
        if not 0 < first <= second:
            raise ValueError(f"no consistency proof from {first} to {second}")
        return self._subproof(first, 0, second, True)

    # --- the RFC's recursive definitions over D[start:start+n] -----------------------------
    def _mth(self, start: int, n: int) -> bytes:
        known = self._known.get((start, n))
        if known is not None:
            return known
        if n == 1:
            return self.leaf(start)
        perfect = n & (n - 1) == 0 and n >= _CACHED_WIDTH
        if perfect and (start, n) in self._perfect:
            return self._perfect[(start, n)]
        k = split(n)
        value = node_hash(self._mth(start, k), self._mth(start + k, n - k))
        if perfect:
            self._perfect[(start, n)] = value
        return value

    def _path(self, m: int, start: int, n: int) -> list[bytes]:
        if n == 1:
            return []
        k = split(n)
        if m < k:
            return [*self._path(m, start, k), self._mth(start + k, n - k)]
        return [*self._path(m - k, start + k, n - k), self._mth(start, k)]

    def _subproof(self, m: int, start: int, n: int, whole: bool) -> list[bytes]:
        if m == n:
            return [] if whole else [self._mth(start, n)]
        k = split(n)
        if m <= k:
            return [*self._subproof(m, start, k, whole), self._mth(start + k, n - k)]
        return [*self._subproof(m - k, start + k, n - k, False), self._mth(start, k)]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self):
            raise ValueError(f"a tree of {size} leaves is beyond the {len(self)} known")


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes."""
    return MerkleTree(leaves).root()


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while fn and not fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: is ``leaf`` (a leaf hash) at ``index`` in the tree ``root``?"""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree ``first_root`` of ``first`` leaves a prefix of
    ``second_root`` of ``second``? Equal sizes need equal roots and no proof; the empty tree
    is a prefix of every tree."""
    if first == second:
        return first_root == second_root and not proof
    if first == 0:
        return first_root == EMPTY_ROOT and not proof
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0

"""The Merkle tree is RFC 9162's: checked against the RFC's definitions written out literally,
against the published Certificate Transparency test vectors, and by the verification
algorithms accepting every honest proof and refusing every altered one."""

from __future__ import annotations

import hashlib

import pytest

from shared.evidence.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    root_of_compact_range,
    verify_consistency,
    verify_inclusion,
)

# The inputs and roots of the Certificate Transparency reference test data (RFC 6962 trees,
# the same algorithm RFC 9162 section 2.1 keeps).
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


# --- RFC 9162 section 2.1.1, 2.1.3.1 and 2.1.4.1, written as the RFC writes them -------------
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k])]


def rfc_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [rfc_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*rfc_subproof(m, d[:k], b), rfc_mth(d[k:])]
    return [*rfc_subproof(m - k, d[k:], False), rfc_mth(d[:k])]


def data(n: int) -> list[bytes]:
    return [f"row {i}".encode() for i in range(n)]


def tree(d: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in d)


def test_the_roots_are_the_certificate_transparency_test_vectors() -> None:
    t = tree(CT_LEAVES)
    assert [t.root(n).hex() for n in range(1, 9)] == CT_ROOTS
    assert t.root(0) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", [*range(0, 34), 255, 256, 257, 600])
def test_the_root_is_the_rfcs_merkle_tree_hash(n: int) -> None:
    assert tree(data(n)).root() == rfc_mth(data(n))


def test_a_grown_tree_still_knows_its_old_roots() -> None:
    t = tree(data(700))
    assert [t.root(n) for n in (1, 255, 256, 513, 700)] == [
        rfc_mth(data(n)) for n in (1, 255, 256, 513, 700)]


@pytest.mark.parametrize("n", range(1, 20))
def test_every_inclusion_proof_is_the_rfcs_path_and_verifies(n: int) -> None:
    d, t = data(n), tree(data(n))
    for m in range(n):
        proof = t.inclusion_proof(m)
        assert proof == rfc_path(m, d)
        assert verify_inclusion(leaf_hash(d[m]), m, n, proof, t.root())


@pytest.mark.parametrize("n", range(2, 20))
def test_every_consistency_proof_is_the_rfcs_proof_and_verifies(n: int) -> None:
    d, t = data(n), tree(data(n))
    for m in range(1, n):
        proof = t.consistency_proof(m, n)
        assert proof == rfc_subproof(m, d, True)
        assert verify_consistency(m, n, t.root(m), t.root(n), proof), (m, n)


def test_an_altered_leaf_fails_its_inclusion_proof() -> None:
    t = tree(data(11))
    proof = t.inclusion_proof(6)
    assert not verify_inclusion(leaf_hash(b"forged"), 6, 11, proof, t.root())
    assert not verify_inclusion(leaf_hash(data(11)[6]), 5, 11, proof, t.root())
    assert not verify_inclusion(leaf_hash(data(11)[6]), 6, 11, proof[:-1], t.root())
    assert not verify_inclusion(leaf_hash(data(11)[6]), 11, 11, proof, t.root())


def test_a_rewritten_history_fails_the_consistency_proof() -> None:
    honest, rewritten = tree(data(13)), tree([*data(4), b"changed", *data(13)[5:]])
    old_root = honest.root(7)
    assert not verify_consistency(7, 13, old_root, rewritten.root(), rewritten.consistency_proof(7))
    assert not verify_consistency(7, 13, old_root, honest.root(), [])
    assert not verify_consistency(13, 7, honest.root(), old_root, honest.consistency_proof(7))
    proof = honest.consistency_proof(7)
    proof[1] = leaf_hash(b"x")
    assert not verify_consistency(7, 13, old_root, honest.root(), proof)


def test_equal_and_empty_trees_are_consistent_only_with_themselves() -> None:
    t = tree(data(5))
    assert verify_consistency(5, 5, t.root(), t.root(), [])
    assert not verify_consistency(5, 5, t.root(), t.root(4), [])
    assert verify_consistency(0, 5, EMPTY_ROOT, t.root(), [])


def test_a_leaf_is_never_a_node() -> None:
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(left + right) != tree([b"a", b"b"]).root()


def test_proofs_beyond_the_tree_are_refused() -> None:
    t = tree(data(3))
    with pytest.raises(ValueError, match="beyond"):
        t.root(4)
    with pytest.raises(ValueError, match="not in a tree"):
        t.inclusion_proof(3)
    with pytest.raises(ValueError, match="no consistency proof"):
        t.consistency_proof(0, 3)


# --- growing a tree from its compact range (a service's restart: shared.evidence.heads) -------
@pytest.mark.parametrize("base", [1, 2, 3, 5, 7, 8, 13, 16, 31])
@pytest.mark.parametrize("more", [0, 1, 2, 6, 17])
def test_a_tree_grown_from_its_compact_range_has_the_roots_and_proofs_of_the_whole_tree(
    base: int, more: int,
) -> None:
    d = [f"leaf {i}".encode() for i in range(base + more)]
    whole = tree(d)
    restarted = MerkleTree.from_compact_range(base, tree(d[:base]).compact_range())
    for x in d[base:]:
        restarted.append(leaf_hash(x))
    assert len(restarted) == base + more
    assert root_of_compact_range(restarted.compact_range(base)) == whole.root(base)
    for size in range(base, base + more + 1):
        assert restarted.root(size) == whole.root(size)
        assert restarted.compact_range(size) == whole.compact_range(size)
        assert restarted.consistency_proof(base, size) == whole.consistency_proof(base, size)


def test_a_tree_from_a_compact_range_refuses_what_needs_the_leaves_before_it() -> None:
    d = [bytes([i]) for i in range(7)]
    restarted = MerkleTree.from_compact_range(7, tree(d).compact_range())
    with pytest.raises(ValueError, match="compact range"):
        restarted.inclusion_proof(2)
    with pytest.raises(ValueError, match="compact range"):
        restarted.root(3)
    with pytest.raises(ValueError, match="3 nodes"):
        MerkleTree.from_compact_range(7, [b"x"])


def test_the_last_head_of_a_heads_file_is_read_from_its_end(tmp_path) -> None:
    from datetime import UTC, datetime

    from shared.evidence.heads import HeadRecord, TreeHead, append_record, last_record

    path = tmp_path / "svc.jsonl"
    assert last_record(path) is None

    def record(size: int, rows: int) -> HeadRecord:
        head = TreeHead(service="svc", tree_size=size, root_hash="00" * 32,
                        timestamp=datetime(2026, 1, 1, tzinfo=UTC), key="k")
        return HeadRecord(head=head, previous_size=0, previous_root="", consistency=[],
                          rows=[(i, "a", 1, "ff" * 32) for i in range(rows)], last_id=size)

    append_record(path, record(1, 1))
    append_record(path, record(5000, 5000))  # a line far longer than one read from the end
    assert last_record(path) == record(5000, 5000)
    with path.open("a") as out:
        out.write('{"head": trunc')  # a write cut short: the last good line
    assert last_record(path) == record(5000, 5000)

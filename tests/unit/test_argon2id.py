"""argon2id on kept memory: the same hashes as argon2-cffi's, a bounded number of kept blocks,
wiped between operations and given back when unused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError

from services.credentials.argon2id import Argon2id, KeptMemory

SMALL = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}  # 1 MiB: quick, same code


@pytest.fixture
def hasher() -> Argon2id:
    return Argon2id(**SMALL, keep=2)


def test_its_hashes_verify_with_argon2_cffi_and_argon2_cffis_verify_with_it(hasher):
    library = PasswordHasher(**SMALL)
    assert library.verify(hasher.hash("correct horse battery"), "correct horse battery")
    assert hasher.verify(library.hash("correct horse battery"), "correct horse battery")
    assert hasher.hash("same").startswith("$argon2id$v=19$m=1024,t=1,p=1$")


def test_a_wrong_password_does_not_verify(hasher):
    stored = hasher.hash("correct horse battery")
    assert not hasher.verify(stored, "correct horse batterY")
    assert not hasher.verify(stored, "")


def test_two_hashes_of_one_password_differ_by_their_salt(hasher):
    assert hasher.hash("one password") != hasher.hash("one password")


def test_a_hash_with_other_parameters_verifies_on_a_block_mapped_for_it_alone(hasher):
    other = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=2).hash("older settings")
    assert hasher.verify(other, "older settings")
    assert not hasher.verify(other, "newer settings")
    assert hasher.memory.mapped <= 2  # the 2 MiB block was not kept


@pytest.mark.parametrize("stored", [
    "", "not a hash", "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ",
    "$argon2id$v=19$m=1024,t=1,p=1$!!!!$aGFzaGhhc2hoYXNoaGFzaA",
    "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",
    "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",  # m too small
])
def test_what_is_not_an_argon2id_hash_is_refused_as_invalid(hasher, stored):
    with pytest.raises(InvalidHashError):
        hasher.verify(stored, "anything")


def test_side_by_side_operations_each_get_their_own_block_and_at_most_keep_stay(hasher):
    stored = {f"password {i}": hasher.hash(f"password {i}") for i in range(8)}
    with ThreadPoolExecutor(6) as pool:
        right = list(pool.map(lambda item: hasher.verify(item[1], item[0]),
                              list(stored.items()) * 3))
        wrong = list(pool.map(lambda item: hasher.verify(item[1], item[0] + "!"),
                              list(stored.items()) * 3))
    assert all(right) and not any(wrong)
    assert hasher.memory.mapped <= 2


def test_a_kept_block_holds_nothing_of_the_last_operation(hasher):
    hasher.verify(hasher.hash("a password to forget"), "a password to forget")
    kept = hasher.memory.kept_blocks()
    assert kept and all(block.count(0) == len(block) for block in kept)


def test_kept_blocks_are_given_back_once_unused_for_the_idle_time():
    now = [1000.0]
    memory = KeptMemory(1024 * 1024, keep=2, idle=30.0, clock=lambda: now[0])
    hasher = Argon2id(**SMALL, memory=memory)
    hasher.hash("keeps a block")
    assert memory.mapped == 1
    now[0] += 29.0
    memory.give_back_idle()
    assert memory.mapped == 1, "used 29 s ago: still kept"
    now[0] += 1.0
    memory.give_back_idle()
    assert memory.mapped == 0
    assert hasher.verify(hasher.hash("maps one again"), "maps one again")
    assert memory.mapped == 1


def test_where_the_allocator_callbacks_are_refused_it_hashes_on_argon2s_own_memory(
    monkeypatch, caplog
):
    def refused(*_: object, **__: object) -> KeptMemory:
        raise MemoryError("Cannot allocate write+execute memory for ffi.callback()")

    monkeypatch.setattr("services.credentials.argon2id.KeptMemory", refused)
    hasher = Argon2id(**SMALL)

    assert hasher.memory is None
    assert "allocator callbacks are refused" in caplog.text
    assert PasswordHasher(**SMALL).verify(hasher.hash("still works"), "still works")
    assert hasher.verify(PasswordHasher(**SMALL).hash("still works"), "still works")
    assert not hasher.verify(hasher.hash("still works"), "still work")

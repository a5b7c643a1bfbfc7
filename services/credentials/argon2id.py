"""argon2id whose working memory is kept between operations, and given back when unused.

An argon2id operation (OWASP: m=19 MiB) fills a 19 MiB block. Through argon2-cffi's
``PasswordHasher`` that block comes from malloc: either glibc keeps it in a per-thread arena
(about 19 MiB for every worker thread that ever hashed: the credentials process reached 200 MB
under load), or, with a low mmap threshold, it is mapped afresh for every operation and each of
its 4,865 pages faulted in (7 ms of system time on a 15 ms operation, measured:
docs/benchmarks.md). Here the block comes from argon2's own allocator callbacks: at most
``keep`` blocks (one per argon2id slot, so one per core) are kept mapped between operations,
and given back to the system once none has been used for ``idle`` seconds.

argon2 wipes a block before it hands it back (``clear_internal_memory``), so a kept block holds
no password-derived bytes between operations (tested). The hashes are the PHC strings
argon2-cffi makes and reads, both ways (tested); a hash whose parameters are not this hasher's
still verifies, on a block of its own size mapped for that operation only. On a host that
refuses libffi's closures (the callbacks), argon2 allocates its own memory, as argon2-cffi does.
"""

from __future__ import annotations

import base64
import hmac
import logging
import mmap
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from argon2 import DEFAULT_HASH_LENGTH, DEFAULT_RANDOM_SALT_LENGTH, Type, extract_parameters
from argon2.exceptions import HashingError, InvalidHashError
from argon2.low_level import ARGON2_VERSION, error_to_str, ffi, lib

log = logging.getLogger(__name__)

# argon2-cffi's defaults, so stored hashes keep their shape
HASH_LEN, SALT_LEN = DEFAULT_HASH_LENGTH, DEFAULT_RANDOM_SALT_LENGTH


class KeptMemory:
    """argon2's allocator: blocks of ``size`` bytes kept for the next operation (at most
    ``keep`` of them), other sizes mapped for one operation. ``give_back_idle`` unmaps the kept
    blocks once none has been lent for ``idle`` seconds; a daemon thread calls it."""

    def __init__(self, size: int, keep: int, idle: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.keep, self.idle, self.clock = size, keep, idle, clock
        self._kept: list[mmap.mmap] = []
        self._lent: dict[int, tuple[mmap.mmap, Any]] = {}  # address -> (block, its cffi buffer)
        self._last_used = clock()
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._never = threading.Event()  # the keeper's timer
        self.allocate = ffi.callback("int(uint8_t **, size_t)", self._allocate)
        self.free = ffi.callback("void(uint8_t *, size_t)", self._free)

    @property
    def mapped(self) -> int:
        """Blocks mapped now, lent or kept."""
        with self._lock:
            return len(self._kept) + len(self._lent)

    def kept_blocks(self) -> list[bytes]:
        """The kept blocks' bytes (for tests: what an operation left in them)."""
        with self._lock:
            return [bytes(block) for block in self._kept]

    def give_back_idle(self) -> None:
        with self._lock:
            if self._lent or self.clock() - self._last_used < self.idle:
                return
            kept, self._kept = self._kept, []
        for block in kept:
            block.close()

    def _allocate(self, memory: Any, size: int) -> int:
        try:
            with self._lock:
                reuse = size == self.size and bool(self._kept)
                block = self._kept.pop() if reuse else None
            block = block or mmap.mmap(-1, size)
            buffer = ffi.from_buffer(block)
            with self._lock:
                self._lent[int(ffi.cast("uintptr_t", buffer))] = (block, buffer)
            self._start_keeper()
        except Exception:  # raised inside a C callback: argon2 reports it as an error instead
            return lib.ARGON2_MEMORY_ALLOCATION_ERROR
        memory[0] = ffi.cast("uint8_t *", buffer)
        return 0

    def _free(self, memory: Any, size: int) -> None:
        with self._lock:
            block, buffer = self._lent.pop(int(ffi.cast("uintptr_t", memory)))
            ffi.release(buffer)  # the block's export ends here, so it can be unmapped
            self._last_used = self.clock()
            keep = size == self.size and len(self._kept) < self.keep
            if keep:
                self._kept.append(block)
        if not keep:
            block.close()

    def _start_keeper(self) -> None:
        if self._keeper is None:
            with self._lock:
                if self._keeper is None:
                    self._keeper = threading.Thread(target=self._keep_watch, daemon=True,
                                                    name="argon2id-memory")
                    self._keeper.start()

    def _keep_watch(self) -> None:
        while True:
            self._never.wait(self.idle / 2)
            self.give_back_idle()


class Argon2id:
    """Hash and verify argon2id PHC strings, on :class:`KeptMemory`."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int, keep: int = 1,
                 memory: KeptMemory | None = None) -> None:
        self.time_cost, self.memory_cost, self.parallelism = time_cost, memory_cost, parallelism
        if memory is None:
            try:
                memory = KeptMemory(memory_cost * 1024, keep)
            except MemoryError:  # a host that refuses libffi's closures (no W+X memory)
                log.warning("argon2id: allocator callbacks are refused on this host, so each "
                            "operation allocates its own working memory (none is kept)")
        self.memory = memory

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(SALT_LEN)
        digest = self._raw(password.encode(), salt, self.time_cost, self.memory_cost,
                           self.parallelism, HASH_LEN, ARGON2_VERSION)
        return (f"$argon2id$v={ARGON2_VERSION}$m={self.memory_cost},t={self.time_cost},"
                f"p={self.parallelism}${_b64(salt)}${_b64(digest)}")

    def verify(self, encoded: str, password: str) -> bool:
        """Whether ``password`` is the one ``encoded`` holds; InvalidHashError when ``encoded``
        is not an argon2id hash."""
        params = extract_parameters(encoded)
        if params.type is not Type.ID:
            raise InvalidHashError("not an argon2id hash")
        salt, expected = (_unb64(part) for part in encoded.rsplit("$", 2)[1:])
        try:
            digest = self._raw(password.encode(), salt, params.time_cost, params.memory_cost,
                               params.parallelism, len(expected), params.version)
        except HashingError as error:  # parameters argon2 refuses: no hash it could have made
            raise InvalidHashError(str(error)) from error
        return hmac.compare_digest(digest, expected)

    def _raw(self, password: bytes, salt: bytes, time_cost: int, memory_cost: int,
             parallelism: int, hash_len: int, version: int) -> bytes:
        out = ffi.new("uint8_t[]", hash_len)
        pwd, salted = ffi.new("uint8_t[]", password), ffi.new("uint8_t[]", salt)
        context = ffi.new("argon2_context *", {
            "out": out, "outlen": hash_len, "pwd": pwd, "pwdlen": len(password),
            "salt": salted, "saltlen": len(salt), "secret": ffi.NULL, "secretlen": 0,
            "ad": ffi.NULL, "adlen": 0, "t_cost": time_cost, "m_cost": memory_cost,
            "lanes": parallelism, "threads": parallelism, "version": version,
            "allocate_cbk": self.memory.allocate if self.memory else ffi.NULL,
            "free_cbk": self.memory.free if self.memory else ffi.NULL,
            "flags": lib.ARGON2_DEFAULT_FLAGS,
        })
        result = lib.argon2_ctx(context, Type.ID.value)
        if result != lib.ARGON2_OK:
            raise HashingError(error_to_str(result))
        return bytes(ffi.buffer(out, hash_len))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as error:
        raise InvalidHashError("malformed argon2id hash") from error

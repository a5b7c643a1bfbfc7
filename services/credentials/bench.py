"""`rekey bench passwords`: argon2id hash and verify times, sign-ins per second per core."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from services.credentials.passwords import HASHER, check_new_password, hash_password, verify_password


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str


def run_password_bench(rounds: int = 20) -> list[Figure]:
    password = "seven purple otters juggle quietly"  # noqa: S105 - a benchmark input
    hashes, verifies, checks = [], [], []
    stored = hash_password(password)
    for _ in range(rounds):
        start = time.perf_counter()
        hash_password(password)
        hashes.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_password(stored, password)
        verifies.append(time.perf_counter() - start)
        start = time.perf_counter()
        check_new_password(password, username="bench.user")
        checks.append(time.perf_counter() - start)
    verify = statistics.median(verifies)
    return [
        Figure(f"argon2id hash (m={HASHER.memory_cost // 1024} MiB, t={HASHER.time_cost}, "
               f"p={HASHER.parallelism}), median", statistics.median(hashes) * 1000, "ms"),
        Figure("argon2id verify, median", verify * 1000, "ms"),
        Figure("sign-ins per second per core (one verify each)", 1 / verify, "/s"),
        Figure(f"sign-ins per second on this machine ({os.cpu_count()} cores, upper bound)",
               (os.cpu_count() or 1) / verify, "/s"),
        Figure("new-password rules incl. blocklist lookup, median",
               statistics.median(checks) * 1000, "ms"),
    ]

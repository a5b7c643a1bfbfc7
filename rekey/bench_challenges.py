"""``rekey bench challenges``: how long verifying a challenge takes, as a person waits for it.

Figures only. The verification service runs in-process on a real nats-server and a real
store; each sample is one request/reply round trip measured at the client: a TOTP code
(``verify_code``) or a signed number-matching approval from the reference authenticator
(``device_respond``). Each sample uses its own user, so replay protection never refuses one.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp

from rekey.authenticator import Authenticator
from rekey.natsd import EmbeddedNats
from rekey.ports import free_port
from shared.bus.stream import connect
from shared.client import RekeyClient
from shared.runtime import ServiceRuntime
from shared.settings import Settings, new_key
from shared.tokens import issue_token


@dataclass
class Latency:
    store: str
    method: str
    samples: list[float]

    @property
    def count(self) -> int:
        return len(self.samples)

    def _pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def p99(self) -> float:
        return self._pct(0.99)

    @property
    def max(self) -> float:
        return max(self.samples) * 1000


async def run_challenge_bench(stores: list[str], count: int) -> list[Latency]:
    figures: list[Latency] = []
    for store in stores:
        figures += await _bench_store(store, count)
    return figures


async def _bench_store(store: str, count: int) -> list[Latency]:
    from services.verification import bootstrap

    with tempfile.TemporaryDirectory(prefix="rekey-bench-challenges-") as tmp:
        folder = Path(tmp)
        nats = EmbeddedNats(port=free_port(), store_dir=folder / "nats")
        nats.start()
        database = None
        values: dict[str, Any] = {
            "nats_url": nats.url, "data_dir": folder / "data", "store": store,
            "vault_key": new_key(), "token_key": new_key(), "cipher_key": new_key(),
            "log_level": "WARNING",
        }
        if store == "postgres":
            database = _create_database()
            values["postgres_db"] = database
        settings = Settings(**values)
        runtime = ServiceRuntime(bootstrap.build(settings), settings)
        await runtime.start()
        nc = await connect(settings.nats_url, "rekey-bench")
        client = RekeyClient(nc)
        try:
            await client.call("verification", "health")
            totp_samples, push_samples = [], []
            for _ in range(count):
                user = f"bench.{secrets.token_hex(4)}@masspasrr.org"
                token = issue_token(settings.token_key_bytes, user, "password")
                registration = await client.call("verification", "start_app_registration",
                                                 username=user, token=token)
                seed = parse_qs(urlparse(registration["otpauth_uri"]).query)["secret"][0]
                code = pyotp.TOTP(seed).now()
                started = time.perf_counter()
                await client.call("verification", "verify_code", username=user, token=token,
                                  method_id=registration["method_id"], code=code)
                totp_samples.append(time.perf_counter() - started)

                user = f"bench.{secrets.token_hex(4)}@masspasrr.org"
                token = issue_token(settings.token_key_bytes, user, "password")
                registration = await client.call("verification", "start_app_registration",
                                                 username=user, token=token)
                phone = Authenticator(folder / f"{user}.json", client)
                account = await phone.activate(registration["otpauth_uri"])
                shown = await client.call("verification", "start_push", username=user, token=token)
                answer = phone.response(account, shown["challenge_id"], "approve", shown["number"])
                started = time.perf_counter()
                await phone.send(answer)
                push_samples.append(time.perf_counter() - started)
            return [Latency(store, "totp code", totp_samples),
                    Latency(store, "push approval", push_samples)]
        finally:
            await nc.close()
            await runtime.stop()
            nats.stop()
            if database:
                _drop_database(database)


def _create_database() -> str:
    import psycopg
    from psycopg import sql

    name = f"rekey_bench_{secrets.token_hex(4)}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def _drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

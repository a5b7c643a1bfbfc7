"""``rekey bench challenges``: how long verifying a challenge takes, as a person waits for it.

Figures only. The verification service runs in-process on a real nats-server and a real
store; each sample is one request/reply round trip measured at the client: a TOTP code
(``verify_code``) or a signed number-matching approval from the reference authenticator
(``device_respond``). Each sample uses its own user, so replay protection never refuses one.
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyotp

from rekey.authenticator.app import Authenticator
from rekey.stack.buskeys import BusKeys
from rekey.stack.inprocess import InProcessServices, scratch_database, scratch_settings
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from services.verification import totp
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.tokens import all_issuers, issue_token


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
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="rekey-bench-challenges-")))
        database = None
        if store == "postgres":
            database = stack.enter_context(scratch_database("rekey_bench"))
        nats = stack.enter_context(EmbeddedNats(port=free_port(), store_dir=folder / "nats",
                                                 keys=BusKeys.create(folder / "bus")))
        settings = scratch_settings(folder / "data", nats, store,
                                    database, log_level="WARNING")
        services = InProcessServices(settings)
        await services.start("verification")
        nc = await connect(settings, "operator", name="rekey-bench")
        client = RekeyClient(nc)
        try:
            await client.call("verification", "health")
            totp_samples, push_samples = [], []
            for _ in range(count):
                user = f"bench.{secrets.token_hex(4)}@masspasrr.org"
                token = issue_token(all_issuers(settings), user, "password")
                registration = await client.call("verification", "start_app_registration",
                                                 username=user, token=token)
                seed = totp.parse_uri(registration["otpauth_uri"]).secret
                code = pyotp.TOTP(seed).now()
                started = time.perf_counter()
                await client.call("verification", "verify_code", username=user, token=token,
                                  method_id=registration["method_id"], code=code)
                totp_samples.append(time.perf_counter() - started)

                user = f"bench.{secrets.token_hex(4)}@masspasrr.org"
                token = issue_token(all_issuers(settings), user, "password")
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
            await services.stop_all()

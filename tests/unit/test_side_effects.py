"""The shared side-effect path: an intent is sent at most once, however it arrives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.effects import SideEffects


@dataclass(frozen=True)
class Mail:
    intent_id: str


class Outbox:
    """Stands in for an application: open intents, and what was recorded and sent."""

    def __init__(self, *open_intents: str) -> None:
        self.open = set(open_intents)
        self.sent: list[str] = []
        self.recorded: list[tuple[str, str | None]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, mail: Mail) -> str | None:
        await self.gate.wait()
        self.sent.append(mail.intent_id)
        return None

    def record(self, mail: Mail, failure: str | None) -> None:
        self.open.discard(mail.intent_id)
        self.recorded.append((mail.intent_id, failure))

    def pending(self, mail: Mail) -> bool:
        return mail.intent_id in self.open

    def effects(self) -> SideEffects[Mail, str | None]:
        return SideEffects("mail", self.send, self.record, pending=self.pending)


async def test_a_sweep_racing_a_fresh_intent_sends_it_once():
    outbox = Outbox("i-1")
    effects = outbox.effects()
    outbox.gate.clear()  # the fresh send is still talking to the mail server...
    effects.later(Mail("i-1"))  # no loop bound yet: left for the sweep
    await effects.sweep(lambda: [Mail("i-1")])()
    effects.later(Mail("i-1"))  # ...when the same intent arrives fresh
    await asyncio.sleep(0)
    outbox.gate.set()
    await effects.drain()
    assert outbox.sent == ["i-1"]
    assert outbox.recorded == [("i-1", None)]


async def test_a_stale_sweep_list_sends_nothing_already_recorded():
    outbox = Outbox("i-1")
    effects = outbox.effects()
    assert await effects.now(Mail("i-1")) is None
    await effects.sweep(lambda: [Mail("i-1")])()  # listed before the fresh send recorded
    await effects.drain()
    assert outbox.sent == ["i-1"]


async def test_an_intent_handed_over_twice_by_redelivery_is_sent_once():
    outbox = Outbox("i-1", "i-2")
    effects = outbox.effects()
    results = await asyncio.gather(*(effects.now(Mail(i)) for i in ("i-1", "i-1", "i-2")))
    assert results == [None, None, None]
    assert sorted(outbox.sent) == ["i-1", "i-2"]
    assert sorted(outbox.recorded) == [("i-1", None), ("i-2", None)]


async def test_the_outcome_is_recorded_and_returned():
    recorded = []

    async def fail(mail: Mail) -> str:
        return "mail server refused"

    effects = SideEffects("mail", fail, lambda m, why: recorded.append((m.intent_id, why)))
    assert await effects.now(Mail("i-9")) == "mail server refused"
    assert recorded == [("i-9", "mail server refused")]


async def test_stopping_cancels_what_is_still_sending_and_records_nothing():
    outbox = Outbox("i-1")
    outbox.gate.clear()  # the mail server never answers
    effects = outbox.effects()
    stopping = asyncio.Event()
    running = asyncio.create_task(effects.run(stopping))
    await asyncio.sleep(0)
    effects.later(Mail("i-1"))
    await asyncio.sleep(0.01)
    stopping.set()
    await asyncio.wait_for(running, 2)
    outbox.open.add("i-2")
    outbox.gate.set()
    effects.later(Mail("i-2"))  # recorded while stopping
    await asyncio.sleep(0.01)
    assert outbox.sent == [] and outbox.recorded == []
    assert outbox.open == {"i-1", "i-2"}  # the next start-up sweep sends them

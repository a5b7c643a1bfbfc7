"""A start-up sweep finds the intents a crash left open only on aggregates that had one of
their ``intent_openers`` events since its checkpoint (``shared.sweeps``): an intent event
missing from that list would never be sent after a crash. Every ``...Intended`` event of an
aggregate that is swept must be listed."""

from __future__ import annotations

import pytest

from services.credentials.domain import Account
from services.ticketing.domain import Ticket


@pytest.mark.parametrize("aggregate", [Account, Ticket], ids=lambda cls: cls.__name__)
def test_every_intent_event_of_a_swept_aggregate_opens_a_sweep(aggregate: type) -> None:
    intents = {name for name, value in vars(aggregate).items()
               if isinstance(value, type) and name.endswith("Intended")}
    assert intents, "the aggregate names its intent events ...Intended"
    openers = {cls.__name__ for cls in aggregate.intent_openers()}
    assert intents <= openers, f"not in {aggregate.__name__}.intent_openers(): {intents - openers}"

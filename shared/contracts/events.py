"""The registry of every public event body, by its past-tense name.

Each service's bodies live in a module of their own (``shared.contracts.<service>``).
"""

from __future__ import annotations

from types import ModuleType

from shared.contracts import consent, credentials, ticketing, verification
from shared.contracts.base import EventBody


def _bodies(*modules: ModuleType) -> dict[str, type[EventBody]]:
    found: dict[str, type[EventBody]] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, EventBody) and value is not EventBody:
                if value.__name__ in found:
                    raise RuntimeError(f"two public events are named {value.__name__}")
                found[value.__name__] = value
    return found


CONTRACTS: dict[str, type[EventBody]] = _bodies(ticketing, credentials, verification, consent)
# Which service publishes which events: (service, event name) for every public contract.
PUBLISHED: tuple[tuple[str, str], ...] = tuple(
    (module.__name__.rsplit(".", 1)[-1], name)
    for module in (ticketing, credentials, verification, consent)
    for name in _bodies(module)
)


def contract_for(name: str) -> type[EventBody] | None:
    return CONTRACTS.get(name)

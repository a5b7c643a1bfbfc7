"""Public event contracts: what services publish on the bus and what auditors read.

Stored event classes inside a service are private; each maps to one of these models by name.
A model's fields are the whole public face of an event, so a secret can only leak if someone
adds a field for it here.
"""

from shared.contracts.base import EventBody
from shared.contracts.envelope import EventEnvelope, subject_for
from shared.contracts.events import CONTRACTS, contract_for

__all__ = ["CONTRACTS", "EventBody", "EventEnvelope", "contract_for", "subject_for"]

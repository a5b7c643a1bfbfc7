"""Identity proofs and the points policy that says when a reset may be approved.

A proof is something the system runs and records (a call-back to the phone on file, a code
mailed to the address on file, the manager's signed link, a push to a method the user still
has) or, weakest, an ID check an agent
attests. Each kind is worth points (``REKEY_PROOF_POINTS``); an ordinary account needs
``REKEY_PROOF_POINTS_ORDINARY``, a privileged one ``REKEY_PROOF_POINTS_PRIVILEGED``. A kind in
``REKEY_PROOF_NEVER_ALONE`` counts only beside a proof of another kind, and a kind counts once
however often it succeeds. A typed address on a form is not a proof at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.errors import NotAllowed

CALL_BACK = "call_back"
EMAIL_CODE = "email_code"
MANAGER_APPROVAL = "manager_approval"
ID_CHECK = "id_check"
METHOD_CHALLENGE = "method_challenge"

# The words people read for each kind (the console shows them as they are).
PROOF_LABELS = {
    CALL_BACK: "Call-back to the phone on file (the person presses #)",
    EMAIL_CODE: "Code mailed to the address on file (the person reads it back)",
    MANAGER_APPROVAL: "Approval by the manager on file (signed link by mail)",
    METHOD_CHALLENGE: ("Push to the user's surviving authenticator app (the person types the number "
                       "the agent reads)"),
    ID_CHECK: "Photo ID checked in person (attested by an agent)",
}
# Kinds the system runs (started, then succeeded or failed); id_check is attested at once.
SYSTEM_RUN = (CALL_BACK, EMAIL_CODE, MANAGER_APPROVAL, METHOD_CHALLENGE)
ADDRESS_MATCH_LABEL = "The address typed matches the one on file: this proves nothing alone"
ADDRESS_OTHER_LABEL = "The address typed is not the one on file"


class PolicyNotMet(NotAllowed):
    """Not enough proof of the person's identity has been recorded to approve."""


def _pairs(text: str, setting: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        kind, _, value = item.partition("=")
        kind = kind.strip()
        if kind not in PROOF_LABELS or not value.strip().isdigit():
            raise ValueError(f"{setting}: {item!r} is not kind=points with a kind of "
                             f"{', '.join(PROOF_LABELS)}")
        points[kind] = int(value)
    return points


def _kinds(text: str, setting: str) -> frozenset[str]:
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    if unknown := sorted(kinds - set(PROOF_LABELS)):
        raise ValueError(f"{setting}: unknown proof kinds {unknown}")
    return kinds


@dataclass(frozen=True)
class ProofPolicy:
    points: dict[str, int] = field(default_factory=lambda: {
        CALL_BACK: 2, MANAGER_APPROVAL: 2, METHOD_CHALLENGE: 2, EMAIL_CODE: 1, ID_CHECK: 1,
    })
    ordinary: int = 2
    privileged: int = 3
    never_alone: frozenset[str] = frozenset({EMAIL_CODE, ID_CHECK})

    @classmethod
    def from_settings(cls, settings: object) -> ProofPolicy:
        """A wrong setting stops the service at start, not an agent at approval."""
        return cls(
            points=_pairs(settings.proof_points, "REKEY_PROOF_POINTS"),  # type: ignore[attr-defined]
            ordinary=settings.proof_points_ordinary,  # type: ignore[attr-defined]
            privileged=settings.proof_points_privileged,  # type: ignore[attr-defined]
            never_alone=_kinds(settings.proof_never_alone, "REKEY_PROOF_NEVER_ALONE"),  # type: ignore[attr-defined]
        )

    def needed(self, privileged: bool) -> int:
        return self.privileged if privileged else self.ordinary

    def counted(self, succeeded: Iterable[str]) -> dict[str, int]:
        """The points each succeeded kind counts for: once per kind, never-alone kinds only
        beside a proof of another kind."""
        kinds = set(succeeded)
        return {
            kind: self.points.get(kind, 0) for kind in sorted(kinds)
            if kind not in self.never_alone or len(kinds) > 1
        }

    def score(self, succeeded: Iterable[str]) -> int:
        return sum(self.counted(succeeded).values())

    def is_met(self, succeeded: Iterable[str], privileged: bool) -> bool:
        return self.score(succeeded) >= self.needed(privileged)

    def check_met(self, succeeded: Iterable[str], privileged: bool) -> None:
        kinds = set(succeeded)
        score, needed = self.score(kinds), self.needed(privileged)
        if score >= needed:
            return
        missing = needed - score
        offers = [f"{PROOF_LABELS[k].split(' (')[0].lower()} ({self.points[k]})"
                  for k in PROOF_LABELS if k not in kinds and self.points.get(k)]
        account = "a privileged account" if privileged else "this account"
        alone = ""
        if kinds and not self.counted(kinds):
            alone = f" {PROOF_LABELS[next(iter(kinds))].split(' (')[0]} never counts alone."
        raise PolicyNotMet(
            f"Not enough proof of identity yet: {score} of the {needed} points {account} needs. "
            f"Needs {missing} more point{'s' if missing > 1 else ''}, from: {'; '.join(offers)}."
            f"{alone}"
        )

    def describe(self, succeeded: Iterable[str], privileged: bool) -> dict[str, object]:
        """What a screen shows of the policy for one ticket."""
        kinds = set(succeeded)
        return {
            "points": self.score(kinds),
            "needed": self.needed(privileged),
            "met": self.is_met(kinds, privileged),
            "kinds": [
                {"kind": k, "label": PROOF_LABELS[k], "points": self.points.get(k, 0),
                 "never_alone": k in self.never_alone, "done": k in kinds}
                for k in PROOF_LABELS if self.points.get(k, 0)
            ],
        }

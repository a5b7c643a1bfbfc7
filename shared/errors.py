"""Domain errors: each carries a stable code that crosses the bus, and a message for people."""

from __future__ import annotations

from typing import Any

# Stable code -> the class a client raises for it (filled as the classes below are declared).
ERRORS_BY_CODE: dict[str, type[RekeyError]] = {}


class RekeyError(Exception):
    """A rule refused a request. The message is safe to show to the person who asked.

    A kind of refusal is declared with its stable code, ``class Locked(RekeyError,
    code="locked")``, which also lets a client turn that code back into the class.
    """

    code = "refused"

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code:
            cls.code = code
            ERRORS_BY_CODE[code] = cls

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


ERRORS_BY_CODE[RekeyError.code] = RekeyError


class NotFound(RekeyError, code="not_found"): ...


class InvalidRequest(RekeyError, code="invalid_request"): ...


class NotAllowed(RekeyError, code="not_allowed"): ...


class Conflict(RekeyError, code="conflict"): ...


class AuthenticationFailed(RekeyError, code="authentication_failed"): ...


class Expired(RekeyError, code="expired"): ...


class Locked(RekeyError, code="locked"): ...


class Unavailable(RekeyError, code="unavailable"): ...


class IntegrityFailed(RekeyError, code="integrity_failed"):
    """A stored row the request needs failed its place binding or could not be read."""


class DataErased(RekeyError, code="erased"):
    """The user's data was erased (their data key destroyed): nothing can be done for them."""


class CallerUnverified(RekeyError, code="caller_unverified"):
    """A request its caller's bus key did not sign (shared.bus.callers): nothing was done."""


class RateLimited(RekeyError, code="rate_limited"):
    """Too many requests of one kind in a short time; the message says when to try again."""


def error_from_dict(data: dict[str, str]) -> RekeyError:
    cls = ERRORS_BY_CODE.get(data.get("code", ""), RekeyError)
    return cls(data.get("message", "refused"), data.get("code"))


class DeadlineExceeded(Unavailable, code="deadline_exceeded"):
    """The caller stopped waiting before the work started: nothing was done."""

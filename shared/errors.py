"""Domain errors: each carries a stable code that crosses the bus, and a message for people."""

from __future__ import annotations


class RekeyError(Exception):
    """A rule refused a request. The message is safe to show to the person who asked."""

    code = "refused"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class NotFound(RekeyError):
    code = "not_found"


class InvalidRequest(RekeyError):
    code = "invalid_request"


class NotAllowed(RekeyError):
    code = "not_allowed"


class Conflict(RekeyError):
    code = "conflict"


class AuthenticationFailed(RekeyError):
    code = "authentication_failed"


class Expired(RekeyError):
    code = "expired"


class Locked(RekeyError):
    code = "locked"


class Unavailable(RekeyError):
    code = "unavailable"


class RateLimited(RekeyError):
    """Too many requests of one kind in a short time; the message says when to try again."""

    code = "rate_limited"


ERRORS_BY_CODE: dict[str, type[RekeyError]] = {
    cls.code: cls
    for cls in (
        RekeyError,
        NotFound,
        InvalidRequest,
        NotAllowed,
        Conflict,
        AuthenticationFailed,
        Expired,
        Locked,
        Unavailable,
        RateLimited,
    )
}


def error_from_dict(data: dict[str, str]) -> RekeyError:
    cls = ERRORS_BY_CODE.get(data.get("code", ""), RekeyError)
    return cls(data.get("message", "refused"), data.get("code"))

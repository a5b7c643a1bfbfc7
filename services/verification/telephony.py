"""Texts and calls through the real ``twilio`` SDK, to Twilio or a Twilio-compatible server.

``REKEY_TWILIO_API_URL`` points the SDK at ``rekey twilio-sim`` (or any compatible server): the
SDK builds its usual ``https://api.twilio.com/...`` URLs and this module's HTTP client swaps the
origin, so every request the SDK makes is the one it would make to Twilio.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from twilio.base.exceptions import TwilioException, TwilioRestException

from shared.metrics import TEXTS_FAILED, TEXTS_SENT
from shared.settings import Settings

log = logging.getLogger(__name__)
# The SDK logs request and response bodies at INFO; a text's body holds a code.
_sdk_log = logging.getLogger("rekey.twilio.sdk")
_sdk_log.setLevel(logging.WARNING)
TWILIO_ORIGIN = re.compile(r"^https://[a-z0-9.-]*twilio\.com")


def sdk_client(sid: str, token: str, api_url: str | None) -> Any:
    """The SDK's client with its own HTTP client, sending to ``api_url`` instead of
    api.twilio.com when given. Made with the first text or call: the SDK's REST client and
    ``requests`` are about 5 MB that a process never texting does not need."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    class RedirectingHttpClient(TwilioHttpClient):
        def __init__(self, origin: str, timeout: float = 10.0) -> None:
            super().__init__(timeout=timeout, logger=_sdk_log)
            self.api_url = origin.rstrip("/")

        def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
            return super().request(method, TWILIO_ORIGIN.sub(self.api_url, url), *args, **kwargs)

    http = (RedirectingHttpClient(api_url) if api_url
            else TwilioHttpClient(timeout=10, logger=_sdk_log))
    return Client(sid, token, http_client=http)


@dataclass(frozen=True)
class Outgoing:
    """A text or call to place. It holds the code in memory only, between issuing and sending."""

    username: str
    challenge_id: str
    method_id: str
    channel: str  # "sms" or "call"
    to: str
    masked_to: str
    body: str | None = None  # the text, or the TwiML read out
    url: str | None = None  # the voice webhook (press-# mode)
    status_callback: str | None = None

    @property
    def intent_id(self) -> str:
        return self.challenge_id

    def __repr__(self) -> str:  # never print the code or the number
        return f"Outgoing({self.channel}, challenge={self.challenge_id}, to={self.masked_to})"


@dataclass(frozen=True)
class Sent:
    sid: str  # the provider's id of the message or call


@dataclass(frozen=True)
class NotSent:
    """Why a text or call did not go out: ``reason`` is recorded, ``message`` told to the person."""

    reason: str
    message: str


NOT_CONFIGURED = NotSent(
    "Texts and calls are not configured here (REKEY_TWILIO_AUTH_TOKEN)",
    "Texts and calls are not configured here (REKEY_TWILIO_AUTH_TOKEN).",
)


def unreachable(reason: str) -> NotSent:
    return NotSent(reason, f"We could not reach your phone: {reason}. Try again or choose another method.")


class Telephony:
    def __init__(self, settings: Settings, attempts: int = 3, first_delay: float = 0.3) -> None:
        token = settings.twilio_auth_token.get_secret_value()
        self._credentials = (settings.twilio_account_sid, token)
        self._api_url = settings.twilio_api_url or None
        self._client: Any = None
        self.from_number = settings.twilio_from_number
        self.attempts = attempts
        self.first_delay = first_delay

    def send(self, outgoing: Outgoing) -> Sent | NotSent:
        """Send once per attempt, with backoff; the provider's SID, or why it did not go out."""
        if not self._credentials[1]:
            return NOT_CONFIGURED
        delay = self.first_delay
        last = "not attempted"
        for attempt in range(1, self.attempts + 1):
            try:
                sent = Sent(self._send_once(outgoing))
                TEXTS_SENT.labels(channel=outgoing.channel).inc()
                return sent
            except TwilioRestException as exc:
                last = f"provider error {exc.status}/{exc.code}"
                if exc.status and 400 <= exc.status < 500 and exc.status != 429:
                    break  # the request itself is refused: retrying changes nothing
            except (TwilioException, OSError) as exc:
                last = f"provider unreachable ({type(exc).__name__})"
            log.warning("%r failed (attempt %s): %s", outgoing, attempt, last)
            if attempt < self.attempts:
                time.sleep(delay)
                delay *= 2
        TEXTS_FAILED.labels(channel=outgoing.channel).inc()
        return unreachable(last)

    @property
    def client(self) -> Any:
        if self._client is None:
            sid, token = self._credentials
            self._client = sdk_client(sid, token, self._api_url)
        return self._client

    def _send_once(self, outgoing: Outgoing) -> str:
        if outgoing.channel == "sms":
            message = self.client.messages.create(
                to=outgoing.to, from_=self.from_number, body=outgoing.body,
                status_callback=outgoing.status_callback,
            )
            return str(message.sid)
        if outgoing.url:
            call = self.client.calls.create(
                to=outgoing.to, from_=self.from_number, url=outgoing.url, method="POST",
                status_callback=outgoing.status_callback, status_callback_method="POST",
            )
        else:
            call = self.client.calls.create(
                to=outgoing.to, from_=self.from_number, twiml=outgoing.body,
                status_callback=outgoing.status_callback, status_callback_method="POST",
            )
        return str(call.sid)

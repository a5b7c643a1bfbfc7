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
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from shared.errors import Unavailable
from shared.settings import Settings

log = logging.getLogger(__name__)
# The SDK logs request and response bodies at INFO; a text's body holds a code.
_sdk_log = logging.getLogger("rekey.twilio.sdk")
_sdk_log.setLevel(logging.WARNING)
TWILIO_ORIGIN = re.compile(r"^https://[a-z0-9.-]*twilio\.com")


class RedirectingHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sending to another origin than api.twilio.com."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout, logger=_sdk_log)
        self.api_url = api_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        return super().request(method, TWILIO_ORIGIN.sub(self.api_url, url), *args, **kwargs)


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

    def __repr__(self) -> str:  # never print the code or the number
        return f"Outgoing({self.channel}, challenge={self.challenge_id}, to={self.masked_to})"


class Telephony:
    def __init__(self, settings: Settings, attempts: int = 3, first_delay: float = 0.3) -> None:
        token = settings.twilio_auth_token.get_secret_value()
        http = (
            RedirectingHttpClient(settings.twilio_api_url)
            if settings.twilio_api_url
            else TwilioHttpClient(timeout=10, logger=_sdk_log)
        )
        self._credentials = (settings.twilio_account_sid, token)
        self._http = http
        self._client: Client | None = None
        self.from_number = settings.twilio_from_number
        self.attempts = attempts
        self.first_delay = first_delay

    def send(self, outgoing: Outgoing) -> str:
        """Send once per attempt, with backoff; the provider's SID, or Unavailable."""
        delay = self.first_delay
        last = "not attempted"
        for attempt in range(1, self.attempts + 1):
            try:
                return self._send_once(outgoing)
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
        raise Unavailable(f"We could not reach your phone: {last}. Try again or choose another method.")

    @property
    def client(self) -> Client:
        if self._client is None:
            sid, token = self._credentials
            if not token:
                raise Unavailable("Texts and calls are not configured here (REKEY_TWILIO_AUTH_TOKEN).")
            self._client = Client(sid, token, http_client=self._http)
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

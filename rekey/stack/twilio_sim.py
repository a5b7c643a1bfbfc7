"""``rekey twilio-sim``: a local Twilio-compatible server for the Messages and Calls endpoints.

The real ``twilio`` SDK talks to it unchanged (only the origin differs). It checks the SDK's
Basic auth, answers with Twilio's JSON resources, keeps every text and call as a JSON file a
person or a test can read, and "answers" a call: it fetches the call's TwiML (or takes the
inline TwiML), writes down what the call says, presses a key for a ``<Gather>`` by posting
``Digits`` to its action URL, then posts the status callback, each request signed with
``X-Twilio-Signature`` exactly as Twilio signs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator
from yarl import URL

from rekey.stack.startable import Startable

log = logging.getLogger(__name__)
API = "/2010-04-01/Accounts/{account}"


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(json.dumps(record, indent=2))
    os.replace(temporary, path)


class TwilioSim(Startable):
    """The server, on its own thread and loop; ``url`` is what ``REKEY_TWILIO_API_URL`` takes."""

    def __init__(
        self,
        folder: Path | str,
        *,
        account_sid: str,
        auth_token: str,
        host: str = "127.0.0.1",
        port: int = 8089,
        keypress: str | None = "#",
        answer_delay: float = 0.1,
    ) -> None:
        self.folder = Path(folder)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        # What the "person" presses: "#" by default; "" answers and listens but presses nothing
        # (the call stays in progress); None lets the phone ring out (no-answer).
        self.keypress = keypress
        self.answer_delay = answer_delay
        self.validator = RequestValidator(auth_token)
        self.callbacks: list[dict[str, Any]] = []  # every webhook it made, with the answer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="twilio-sim", daemon=True)
        self._thread.start()
        ready.wait(15)
        if failure:
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._thread = None

    async def _start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        app = web.Application()
        base = API.format(account="{account}")
        app.router.add_post(base + "/Messages.json", self._create_message)
        app.router.add_get(base + "/Messages/{sid}.json", self._fetch_message)
        app.router.add_post(base + "/Calls.json", self._create_call)
        app.router.add_get(base + "/Calls/{sid}.json", self._fetch_call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("Twilio sim on %s, keeping texts and calls in %s", self.url, self.folder)

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the REST API ------------------------------------------------------------------------
    def _refused(self, request: web.Request) -> web.Response | None:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization", "") != f"Basic {expected}" or (
            request.match_info["account"] != self.account_sid
        ):
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "more_info": "", "status": 401},
                status=401,
            )
        return None

    @staticmethod
    def _bad(code: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "status": 400}, status=400)

    def _resource(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "account_sid": self.account_sid, "api_version": "2010-04-01",
                "uri": f"{API.format(account=self.account_sid)}/{kind}/{record['sid']}.json"}

    async def _create_message(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not form.get("To"):
            return self._bad(21604, "A 'To' phone number is required.")
        if not form.get("From"):
            return self._bad(21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return self._bad(21602, "Message body is required.")
        now = format_datetime(datetime.now(UTC))
        record = {"sid": _sid("SM"), "to": form["To"], "from": form["From"], "body": form["Body"],
                  "status": "queued", "direction": "outbound-api", "date_created": now,
                  "date_updated": now, "num_segments": "1"}
        _write(self._path("messages", record["sid"]), record)
        if form.get("StatusCallback"):
            self._later(self._message_delivered(record, form["StatusCallback"]))
        return web.json_response(self._resource("Messages", record), status=201)

    async def _fetch_message(self, request: web.Request) -> web.Response:
        return self._fetch(request, "messages", "Messages")

    async def _fetch_call(self, request: web.Request) -> web.Response:
        return self._fetch(request, "calls", "Calls")

    def _fetch(self, request: web.Request, folder: str, kind: str) -> web.Response:
        refused = self._refused(request)
        if refused:
            return refused
        for path in Path(self.folder, folder).glob(f"*-{request.match_info['sid']}.json"):
            return web.json_response(self._resource(kind, json.loads(path.read_text())))
        return web.json_response({"code": 20404, "message": "Not found", "status": 404}, status=404)

    async def _create_call(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused:
            return refused
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not form.get("To") or not form.get("From"):
            return self._bad(21201, "'To' and 'From' are required.")
        if not form.get("Url") and not form.get("Twiml"):
            return self._bad(21205, "Either 'Url' or 'Twiml' is required.")
        now = format_datetime(datetime.now(UTC))
        record = {"sid": _sid("CA"), "to": form["To"], "from": form["From"], "status": "queued",
                  "direction": "outbound-api", "date_created": now, "date_updated": now,
                  "url": form.get("Url"), "spoken": [], "pressed": None}
        _write(self._path("calls", record["sid"]), record)
        self._later(self._answer(record, form))
        return web.json_response(self._resource("Calls", record), status=201)

    def _path(self, folder: str, sid: str) -> Path:
        existing = list(Path(self.folder, folder).glob(f"*-{sid}.json"))
        if existing:
            return existing[0]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        return self.folder / folder / f"{stamp}-{sid}.json"

    def _later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what Twilio does after the API call ---------------------------------------------------
    async def post_signed(self, url: str, params: dict[str, str]) -> tuple[int, str]:
        signature = self.validator.compute_signature(url, params)
        async with aiohttp.ClientSession() as session, session.post(
            URL(url, encoded=True),  # the URL exactly as signed
            data=params,
            headers={"X-Twilio-Signature": signature},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            text = await response.text()
        self.callbacks.append({"url": url, "params": params, "status": response.status})
        return response.status, text

    async def _message_delivered(self, record: dict[str, Any], callback: str) -> None:
        await asyncio.sleep(self.answer_delay)
        record["status"] = "delivered"
        _write(self._path("messages", record["sid"]), record)
        params = {"AccountSid": self.account_sid, "MessageSid": record["sid"],
                  "MessageStatus": "delivered", "To": record["to"], "From": record["from"],
                  "ApiVersion": "2010-04-01"}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.post_signed(callback, params)

    async def _answer(self, record: dict[str, Any], form: dict[str, str]) -> None:
        await asyncio.sleep(self.answer_delay)
        params = {"AccountSid": self.account_sid, "CallSid": record["sid"], "From": record["from"],
                  "To": record["to"], "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
        status = "completed"
        try:
            if self.keypress is None:
                status = "no-answer"
            else:
                record["status"] = "in-progress"
                _write(self._path("calls", record["sid"]), record)
                twiml = form.get("Twiml")
                if not twiml:
                    code, twiml = await self.post_signed(form["Url"], {**params, "CallStatus": "in-progress"})
                    if code != 200:
                        status = "failed"
                        twiml = ""
                if twiml:
                    await self._follow(record, twiml, {**params, "CallStatus": "in-progress"})
                if self.keypress == "":
                    return  # still on the line
        except (aiohttp.ClientError, TimeoutError, ET.ParseError) as exc:
            log.warning("call %s failed: %s", record["sid"], exc)
            status = "failed"
        record["status"] = status
        _write(self._path("calls", record["sid"]), record)
        if form.get("StatusCallback"):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.post_signed(form["StatusCallback"], {**params, "CallStatus": status})

    async def _follow(self, record: dict[str, Any], twiml: str, params: dict[str, str]) -> None:
        """Play TwiML: write down every <Say>, press the key for a <Gather>, follow its action."""
        for _ in range(5):  # a few documents deep at most
            root = ET.fromstring(twiml)  # noqa: S314 - TwiML from our own webhook
            action = None
            for verb in root:
                if verb.tag == "Say":
                    record["spoken"].append((verb.text or "").strip())
                elif verb.tag == "Gather":
                    for inner in verb:
                        if inner.tag == "Say":
                            record["spoken"].append((inner.text or "").strip())
                    action = verb.get("action")
                    break
                elif verb.tag == "Hangup":
                    break
            _write(self._path("calls", record["sid"]), record)
            if action is None or not self.keypress:
                return
            record["pressed"] = self.keypress
            code, twiml = await self.post_signed(action, {**params, "Digits": self.keypress})
            if code != 200:
                return


def main(folder: Path, host: str, port: int, account_sid: str, auth_token: str) -> None:
    import signal

    sim = TwilioSim(folder, account_sid=account_sid, auth_token=auth_token, host=host, port=port)
    sim.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            pass
    finally:
        sim.stop()


# --- the local stack (`rekey up`, `rekey demo --embedded`, the end-to-end tests) ----------------
def prepare_verification(values: dict[str, str]) -> None:
    """Fill in, once, what the stack's verification side needs: the sim's token and ports."""
    from rekey.stack.ports import free_port

    values.setdefault("REKEY_TWILIO_AUTH_TOKEN", secrets.token_hex(16))
    values.setdefault("REKEY_WEBHOOK_PORT", str(free_port()))
    if "REKEY_TWILIO_API_URL" not in values:
        port = values.setdefault("REKEY_TWILIO_SIM_PORT", str(free_port()))
        values["REKEY_TWILIO_API_URL"] = f"http://127.0.0.1:{port}"


def twilio_sim_for(settings: Any, data_dir: Path) -> TwilioSim | None:
    """The sim the stack runs, unless the services are pointed at a real Twilio."""
    url = settings.twilio_api_url
    token = settings.twilio_auth_token.get_secret_value()
    if not url or not token or not url.startswith("http://127.0.0.1:"):
        return None
    return TwilioSim(data_dir / "twilio", account_sid=settings.twilio_account_sid, auth_token=token,
                     port=int(url.rsplit(":", 1)[1]))

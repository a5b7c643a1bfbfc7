"""Anyone on the path to the mail server: the temporary password travels only over TLS.

``REKEY_SMTP_TLS`` defaults to ``starttls`` (certificate and host name checked, never a fall
back to plain text); ``none`` is accepted only for a loopback mail host, `rekey up`'s sink."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rekey.stack.environment import prepare_environment
from shared.caught import list_mails
from shared.mailer import Mailer, PlainMailRefused, check_mail_transport
from shared.settings import Settings
from tests.integration.conftest import System, connected

pytestmark = pytest.mark.security
SMTP_SECRET = "smtp-password-never-printed"


@pytest.mark.parametrize("host", ["mail.example.org", "10.0.0.25", "0.0.0.0", "",
                                  "localhost.example.org", "127.0.0.1.nip.io"])
def test_plain_text_mail_to_a_host_beyond_this_machine_is_refused(host: str) -> None:
    with pytest.raises(PlainMailRefused, match="REKEY_SMTP_TLS=none"):
        check_mail_transport(Settings(smtp_host=host, smtp_tls="none"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_plain_text_mail_to_a_loopback_sink_is_allowed(host: str) -> None:
    check_mail_transport(Settings(smtp_host=host, smtp_tls="none"))


async def test_a_mailing_service_configured_for_plain_text_to_a_relay_does_not_start(
    nats_server, mail_sink, settings_factory, store,
) -> None:
    settings = settings_factory(nats_server, store=store.name, postgres_db=store.postgres_db,
                                smtp_port=mail_sink.port, smtp_host="relay.example.org",
                                smtp_tls="none")
    async with connected(System(settings, nats_server, mail_sink)) as system:
        for service in ("ticketing", "credentials"):
            with pytest.raises(PlainMailRefused, match=r"relay\.example\.org"):
                await system.start(service)
        assert system.runtimes == {}
    assert list_mails(mail_sink.folder) == []


def test_rekey_serve_refuses_plain_text_to_a_relay_once_naming_the_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "REKEY_DATA_DIR": str(tmp_path), "REKEY_NATS_URL": "tls://127.0.0.1:1",
           "REKEY_SMTP_HOST": "10.0.0.25", "REKEY_SMTP_TLS": "none",
           "REKEY_SMTP_PASSWORD": SMTP_SECRET}

    done = subprocess.run([sys.executable, "-m", "rekey", "serve", "credentials"], env=env,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert output.count("refusing to send mail in clear to '10.0.0.25'") == 1, output
    assert SMTP_SECRET not in output
    assert not list(tmp_path.glob("*.sqlite"))


async def test_by_default_mail_is_never_sent_in_clear(settings_factory, mail_sink) -> None:
    settings_factory("nats://127.0.0.1:1")  # clears any REKEY_* from the environment
    settings = Settings(smtp_port=mail_sink.port, mail_attempts=1)
    assert settings.smtp_tls == "starttls"
    mailer = Mailer(settings)

    error = await mailer.send_with_retries(mailer.message("jane@example.org", "hello", "body"))

    assert error is not None  # the sink offers no STARTTLS: nothing goes in clear
    assert list_mails(mail_sink.folder) == []


def test_rekey_up_sends_in_clear_only_to_its_own_loopback_sink(tmp_path, monkeypatch) -> None:
    for variable in ("REKEY_SMTP_HOST", "REKEY_SMTP_TLS"):
        monkeypatch.delenv(variable, raising=False)
    own = prepare_environment(tmp_path / "own")
    assert (own["REKEY_SMTP_HOST"], own["REKEY_SMTP_TLS"]) == ("127.0.0.1", "none")
    monkeypatch.setenv("REKEY_SMTP_HOST", "relay.example.org")
    relay = prepare_environment(tmp_path / "relay")
    assert relay["REKEY_SMTP_TLS"] == "starttls"

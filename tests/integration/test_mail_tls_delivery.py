"""Secure email: TLS to a real aiosmtpd with a certificate made here, retries, nothing twice."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rekey.mailsink import list_mails
from rekey.ports import free_port
from shared.mailer import Mailer
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, start_all


def make_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and 127.0.0.1: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Collect:
    """aiosmtpd handler keeping each message and whether it came over TLS."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bool]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append((envelope.original_content, encrypted))
        return "250 OK"


def tls_server(mode: str, cert: Path, key: Path, port: int) -> tuple[Controller, Collect]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Collect()
    if mode == "implicit":
        controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=context)
    else:
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
        )
    controller.start()
    return controller, handler


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_mail_is_sent_over_tls_with_the_certificate_verified(tmp_path, settings_factory, mode):
    cert, key = make_certificate(tmp_path)
    port = free_port()
    controller, handler = tls_server(mode, cert, key, port)
    try:
        settings = settings_factory("nats://127.0.0.1:1", smtp_port=port, smtp_tls=mode,
                                    smtp_ca_file=str(cert), mail_attempts=1)
        mailer = Mailer(settings)
        error = await mailer.send_with_retries(mailer.message("jane@example.org", "hello", "body"))
        assert error is None
        [(content, over_tls)] = handler.messages
        assert over_tls
        assert b"Subject: [secure] hello" in content
    finally:
        controller.stop()


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_a_certificate_that_is_not_trusted_is_refused_and_nothing_is_sent(
    tmp_path, settings_factory, mode
):
    cert, key = make_certificate(tmp_path)
    other, _ = make_certificate(tmp_path, "someone-else")
    port = free_port()
    controller, handler = tls_server(mode, cert, key, port)
    try:
        settings = settings_factory("nats://127.0.0.1:1", smtp_port=port, smtp_tls=mode,
                                    smtp_ca_file=str(other), mail_attempts=2,
                                    mail_first_retry_seconds=0.01)
        mailer = Mailer(settings)
        error = await mailer.send_with_retries(mailer.message("jane@example.org", "hello", "body"))
        assert error is not None and "certificate" in error.lower()
        assert handler.messages == []
    finally:
        controller.stop()


async def test_a_starttls_setting_never_falls_back_to_plain_text(tmp_path, settings_factory, mail_sink):
    cert, _ = make_certificate(tmp_path)
    settings = settings_factory("nats://127.0.0.1:1", smtp_port=mail_sink.port, smtp_tls="starttls",
                                smtp_ca_file=str(cert), mail_attempts=1)
    mailer = Mailer(settings)
    error = await mailer.send_with_retries(mailer.message("jane@example.org", "hello", "body"))
    assert error is not None
    assert list_mails(mail_sink.folder) == []


def temporary_mails(system: System) -> list:
    return [m for m in list_mails(system.mail.folder)
            if USER_EMAIL in m.to and "temporary" in m.subject]


async def ticket_delivery(system: System, number: str) -> str | None:
    return (await system.call("ticketing", "show", ticket=number))["delivery"]


async def test_with_the_mail_server_down_the_ticket_shows_pending_and_the_mail_goes_once_it_is_back(
    system: System,
):
    system.settings.mail_attempts = 8
    system.settings.mail_first_retry_seconds = 0.3
    await start_all(system)
    await system.provision()
    system.mail.stop()
    number = await system.approved_ticket()

    async def pending():
        return await ticket_delivery(system, number) == "pending"

    await eventually(pending, what="the ticket to show the delivery as pending")
    await eventually(
        lambda: system.app("credentials").account_status(USER)["delivery_pending"], what="pending"
    )
    system.mail.start()

    async def sent():
        return await ticket_delivery(system, number) == "sent"

    await eventually(sent, timeout=60, what="the mail to go once the server is back")
    assert len(temporary_mails(system)) == 1
    names = system.event_names("credentials")
    assert names.count("PasswordIssued") == 1
    assert names.count("TemporaryPasswordSent") == 1
    assert "TemporaryPasswordDeliveryFailed" not in names
    # A restart of credentials finds nothing undelivered, so sends nothing again.
    await system.stop("credentials")
    await system.start("credentials")
    await system.call("credentials", "account", username=USER)
    assert len(temporary_mails(system)) == 1


async def test_after_the_retry_budget_delivery_failed_is_recorded_and_shown_on_the_ticket(
    system: System,
):
    system.settings.mail_attempts = 2
    system.settings.mail_first_retry_seconds = 0.05
    await start_all(system)
    await system.provision()
    system.mail.stop()
    number = await system.approved_ticket()

    async def failed():
        return await ticket_delivery(system, number) == "failed"

    await eventually(failed, timeout=30, what="DeliveryFailed on the ticket")
    names = system.event_names("credentials")
    assert names.count("TemporaryPasswordDeliveryFailed") == 1
    assert "TemporaryPasswordSent" not in names
    [failure] = [e for e in system.app("credentials").envelopes()
                 if e.name == "TemporaryPasswordDeliveryFailed"]
    assert USER_EMAIL not in str(failure.body)
    system.mail.start()

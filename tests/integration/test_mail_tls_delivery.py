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

from rekey.stack.ports import free_port
from shared.caught import list_mails
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
        self.peers: list[tuple[str, int]] = []  # the client's address of each message

    async def handle_DATA(self, server, session, envelope) -> str:
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append((envelope.original_content, encrypted))
        self.peers.append(session.peer)
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


async def test_mails_one_after_another_share_one_verified_tls_connection(tmp_path, settings_factory):
    cert, key = make_certificate(tmp_path)
    port = free_port()
    controller, handler = tls_server("starttls", cert, key, port)
    try:
        settings = settings_factory("nats://127.0.0.1:1", smtp_port=port, smtp_tls="starttls",
                                    smtp_ca_file=str(cert), mail_attempts=1)
        mailer = Mailer(settings)
        for n in range(3):
            assert await mailer.send_with_retries(mailer.message("jane@example.org", f"n{n}", "b")) is None
        mailer.close()
        assert [over_tls for _, over_tls in handler.messages] == [True, True, True]
        assert len(set(handler.peers)) == 1  # one connection: one handshake, not one a mail
    finally:
        controller.stop()


async def test_a_kept_connection_the_server_dropped_is_not_reused_and_the_next_mail_goes_once(
    settings_factory, mail_sink
):
    settings = settings_factory("nats://127.0.0.1:1", smtp_port=mail_sink.port, smtp_tls="none",
                                mail_attempts=2, mail_first_retry_seconds=0.01)
    mailer = Mailer(settings)
    assert await mailer.send_with_retries(mailer.message("jane@example.org", "first", "b")) is None
    mail_sink.stop()  # the kept connection goes with the server
    mail_sink.start()

    assert await mailer.send_with_retries(mailer.message("jane@example.org", "second", "b")) is None
    mailer.close()
    assert sorted(m.subject for m in list_mails(mail_sink.folder)) == ["[secure] first", "[secure] second"]


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


async def delivery_is(system: System, number: str, state: str) -> bool:
    return bool((await system.call("ticketing", "show", ticket=number))["delivery"] == state)


async def approved_while_the_mail_server_is_down(
    system: System, attempts: int, first_retry_seconds: float
) -> str:
    """A ticket approved with the mail server stopped, its delivery retried ``attempts`` times."""
    system.settings.mail_attempts = attempts
    system.settings.mail_first_retry_seconds = first_retry_seconds
    await start_all(system)
    await system.provision()
    ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username=USER, reason="new phone")
    number = str(ticket["ticket_number"])
    await system.prove_identity(number)  # the proof's code needs the mail server
    system.mail.stop()
    await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    return number


async def test_with_the_mail_server_down_the_ticket_shows_pending_and_the_mail_goes_once_it_is_back(
    system: System,
):
    number = await approved_while_the_mail_server_is_down(system, 8, 0.3)

    await eventually(lambda: delivery_is(system, number, "pending"),
                     what="the ticket to show the delivery as pending")
    await eventually(
        lambda: system.app("credentials").account_status(USER)["delivery_pending"], what="pending"
    )
    system.mail.start()
    await eventually(lambda: delivery_is(system, number, "sent"), timeout=60,
                     what="the mail to go once the server is back")
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
    number = await approved_while_the_mail_server_is_down(system, 2, 0.05)

    await eventually(lambda: delivery_is(system, number, "failed"), timeout=30,
                     what="DeliveryFailed on the ticket")
    names = system.event_names("credentials")
    assert names.count("TemporaryPasswordDeliveryFailed") == 1
    assert "TemporaryPasswordSent" not in names
    [failure] = [e for e in system.app("credentials").envelopes()
                 if e.name == "TemporaryPasswordDeliveryFailed"]
    assert USER_EMAIL not in str(failure.body)
    system.mail.start()

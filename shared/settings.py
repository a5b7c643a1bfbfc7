"""The one documented set of environment variables every Rekey process reads.

Every variable is prefixed ``REKEY_``; the README's configuration table is generated from
the field descriptions here, so this module is the reference.
"""

from __future__ import annotations

import base64
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("ticketing", "credentials", "verification", "consent")


class Settings(BaseSettings):
    """Runtime configuration; defaults are the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="REKEY_", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:14222", description="NATS server URL (JetStream on)")
    stream_replicas: int = Field(
        1, ge=1, le=5, description="Replicas of the REKEY_EVENTS stream (3 on a NATS cluster)"
    )
    data_dir: Path = Field(Path(".rekey"), description="Folder for SQLite stores, mail and keys")
    store: Literal["sqlite", "postgres"] = Field("sqlite", description="Event store backend")
    postgres_host: str = Field("127.0.0.1", description="PostgreSQL host")
    postgres_port: int = Field(5432, description="PostgreSQL port")
    postgres_db: str = Field("rekey", description="PostgreSQL database (one schema per service)")
    postgres_user: str = Field("postgres", description="PostgreSQL user")
    postgres_password: SecretStr = Field(SecretStr(""), description="PostgreSQL password")
    cipher_key: SecretStr = Field(
        SecretStr(""),
        description="Base64 AES key: encrypts stored event payloads (AES-GCM) when set",
    )
    vault_key: SecretStr = Field(
        SecretStr(""),
        description="Base64 AES-256 key for the secret vault (TOTP seeds); kept outside the stores",
    )
    token_key: SecretStr = Field(
        SecretStr(""),
        description="Key that signs the short-lived sign-in tokens passed between services",
    )
    smtp_host: str = Field("127.0.0.1", description="Outgoing mail server")
    smtp_port: int = Field(8025, description="Outgoing mail server port")
    smtp_username: str = Field("", description="Outgoing mail user (empty: no AUTH)")
    smtp_password: SecretStr = Field(SecretStr(""), description="Outgoing mail password")
    smtp_tls: Literal["none", "starttls", "implicit"] = Field(
        "none", description="TLS on the outgoing mail connection"
    )
    smtp_sender: str = Field("Rekey Help Desk <helpdesk@rekey.local>", description="From address")
    smtp_subject_tag: str = Field("[secure]", description="Subject tag an encryption gateway keys on")
    temp_password_hours: int = Field(24, description="Validity of a temporary password")
    portal_name: str = Field("PASRR Portal", description="Issuer name shown in authenticator apps")
    log_level: str = Field("INFO", description="Log level of every process")
    # --- ticketing and credentials
    smtp_ca_file: str = Field(
        "", description="CA bundle (PEM) the mail server's certificate is verified against; empty: system CAs"
    )
    mail_attempts: int = Field(5, ge=1, description="Sending attempts per mail before it is given up")
    mail_first_retry_seconds: float = Field(
        2.0, ge=0, description="Wait before the second attempt; doubles after each failure"
    )
    helpdesk_address: str = Field("helpdesk@rekey.local", description="Address the mail intake accepts")
    helpdesk_contact: str = Field(
        "the help desk at 508.855.8329 or helpdesk@rekey.local",
        description="Whom to call, as written in notification mails",
    )
    organisation_name: str = Field("MassPASRR", description="Organisation name (a banned password word)")
    portal_username_domain: str = Field(
        "masspasrr.org", description="Domain of portal usernames, to find one in an intake mail"
    )
    intake_host: str = Field("127.0.0.1", description="Interface of the ticketing mail intake")
    intake_port: int = Field(0, ge=0, description="Port of the ticketing mail intake (0: no intake)")
    intake_max_bytes: int = Field(64 * 1024, ge=1024, description="Largest mail the intake accepts")
    intake_quarantine_dir: str = Field(
        "", description="Folder for quarantined intake mail (empty: <data_dir>/quarantine)"
    )
    requests_per_sender: int = Field(5, ge=1, description="Reset requests per sender address per window")
    requests_per_account: int = Field(5, ge=1, description="Reset requests per account per window")
    request_window_seconds: int = Field(3600, ge=1, description="Window of the reset request limits")
    four_eyes: bool = Field(False, description="A second agent must approve before the reset happens")
    ticket_expiry_hours: float = Field(72.0, gt=0, description="Unhandled tickets expire after this")
    ticket_expiry_check_seconds: float = Field(60.0, gt=0, description="How often expiry is checked")
    mfa_always_required: bool = Field(
        False, description="Every sign-in needs MFA: new passwords may then be 8 characters, not 15"
    )
    signin_lock_after: int = Field(5, ge=1, description="Failed sign-ins in a row that lock an account")
    signin_lock_minutes: float = Field(15.0, gt=0, description="A lock ends by itself after this")
    signin_attempts_per_minute: int = Field(
        10, ge=1, description="Sign-in attempts per username per minute before throttling"
    )
    # --- portal
    portal_host: str = Field("127.0.0.1", description="Address the web portal listens on")
    portal_port: int = Field(8080, description="Port of the web portal")
    portal_dev_pages: bool = Field(
        False, description="Serve developer pages (caught mail) under /dev; `rekey up` sets it"
    )
    portal_idle_minutes: int = Field(15, description="A portal session ends after this idle time")
    portal_session_hours: int = Field(8, description="A portal session ends after this, at most")
    portal_sign_in_attempts: int = Field(
        10, description="Sign-in attempts allowed per minute, per client address and per username"
    )
    # --- end portal
    # --- verification
    push_number_digits: int = Field(
        2, ge=2, le=6, description="Digits of the push number to match (6 per NIST SP 800-63B-4)"
    )
    push_ttl_seconds: int = Field(120, ge=1, description="Life of a push challenge")
    push_max_wrong: int = Field(3, ge=1, description="Wrong numbers that kill a push challenge")
    method_lock_after: int = Field(5, ge=1, description="Consecutive failures that lock a method")
    phone_code_minutes: int = Field(10, ge=1, description="Validity of a code sent by text or call")
    call_mode: Literal["press_pound", "read_code"] = Field(
        "press_pound", description="Voice calls: press # to approve, or read out a code to type"
    )
    send_limit_per_user: int = Field(5, ge=1, description="Texts/calls per user per send window")
    send_limit_per_number: int = Field(3, ge=1, description="Texts/calls per phone number per window")
    send_window_minutes: int = Field(15, ge=1, description="The send rate limits' window")
    twilio_account_sid: str = Field(
        "AC00000000000000000000000000000000", description="Twilio account SID"
    )
    twilio_auth_token: SecretStr = Field(
        SecretStr(""), description="Twilio auth token (also checks webhook signatures)"
    )
    twilio_from_number: str = Field("+15005550006", description="Number texts and calls come from")
    twilio_api_url: str = Field(
        "", description="Base URL of a Twilio-compatible API (`rekey twilio-sim`); empty: real Twilio"
    )
    webhook_host: str = Field("127.0.0.1", description="Verification's Twilio webhook listener host")
    webhook_port: int = Field(
        0, description="Verification's Twilio webhook listener port (0: none; `rekey up` picks one)"
    )
    public_base_url: str = Field(
        "", description="Public base URL Twilio calls back (empty: http://webhook_host:webhook_port)"
    )
    twilio_sim_port: int = Field(8089, description="Port of the local Twilio-compatible server")

    @property
    def webhook_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.webhook_host}:{self.webhook_port}").rstrip("/")

    def store_env(self, service: str) -> dict[str, str]:
        """The ``eventsourcing`` environment for one service's own store."""
        env = {
            "SINGLE_ROW_TRACKING": "n",
            "ORIGINATOR_ID_TYPE": "uuid",
        }
        if self.store == "sqlite":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
            env["SQLITE_DBNAME"] = str(self.data_dir / f"{service}.sqlite")
            env["SQLITE_LOCK_TIMEOUT"] = "10"
        else:
            env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
            env["POSTGRES_DBNAME"] = self.postgres_db
            env["POSTGRES_HOST"] = self.postgres_host
            env["POSTGRES_PORT"] = str(self.postgres_port)
            env["POSTGRES_USER"] = self.postgres_user
            env["POSTGRES_PASSWORD"] = self.postgres_password.get_secret_value()
            env["POSTGRES_SCHEMA"] = service
        if self.cipher_key.get_secret_value():
            env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            env["CIPHER_KEY"] = self.cipher_key.get_secret_value()
        return env

    def postgres_conninfo(self, dbname: str | None = None) -> str:
        password = self.postgres_password.get_secret_value()
        parts = [
            f"host={self.postgres_host}",
            f"port={self.postgres_port}",
            f"user={self.postgres_user}",
            f"dbname={dbname or self.postgres_db}",
        ]
        if password:
            parts.append(f"password={password}")
        return " ".join(parts)

    @cached_property
    def vault_key_bytes(self) -> bytes:
        return _key_bytes(self.vault_key, "REKEY_VAULT_KEY")

    @cached_property
    def token_key_bytes(self) -> bytes:
        return _key_bytes(self.token_key, "REKEY_TOKEN_KEY")


def _key_bytes(value: SecretStr, name: str) -> bytes:
    raw = value.get_secret_value()
    if not raw:
        raise RuntimeError(f"{name} is not set: `rekey up` makes one, or set it yourself")
    key = base64.b64decode(raw)
    if len(key) not in (16, 24, 32):
        raise RuntimeError(f"{name} must be a base64 AES key of 16, 24 or 32 bytes")
    return key


def new_key() -> str:
    """A fresh random base64 AES-256 key, as the key variables expect."""
    return base64.b64encode(os.urandom(32)).decode()

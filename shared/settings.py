"""The one documented set of environment variables every Rekey process reads.

Every variable is prefixed ``REKEY_``; the README's configuration tables are generated from
the fields here (``rekey docs settings --write``), so this module is the reference.

Every secret setting (a ``SecretStr`` field: passwords, keys, tokens) can instead be given as
a file: ``REKEY_<NAME>_FILE`` names a file whose content is the value (one trailing newline
dropped), the convention of Docker and Compose secrets mounted in ``/run/secrets`` and of
Kubernetes Secret volumes. Setting both ``REKEY_<NAME>`` and ``REKEY_<NAME>_FILE`` is refused,
and so is a file that cannot be read, naming the variable: a typo never starts a process with
an empty key.
"""

from __future__ import annotations

import base64
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

SERVICES = ("ticketing", "credentials", "verification", "consent")  # they publish events
AUDIT = "audit"  # the audit service: consumes every service's events, publishes none
PROCESSES = (*SERVICES, AUDIT)  # every service process `rekey up` runs besides the portal


class Settings(BaseSettings):
    """Runtime configuration; defaults are the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="REKEY_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then ``REKEY_X``, then ``REKEY_X_FILE`` (never both)."""
        return (init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings,
                file_secret_settings)

    nats_url: str = Field(
        "tls://127.0.0.1:14222", description="NATS server URL (JetStream on; tls:// for TLS)"
    )
    nats_keys_dir: str = Field(
        "",
        description="Folder of this installation's bus NKEY seeds, `<identity>.nk` (0600); "
        "a process reads only its own identity's",
    )
    nats_ca_file: str = Field(
        "", description="CA (PEM) the NATS server's certificate is verified against; empty: system CAs"
    )
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
    postgres_pool_size: int = Field(
        2, ge=1, le=50, description="PostgreSQL connections a service keeps open (its store's pool)"
    )
    postgres_max_overflow: int = Field(
        8, ge=0, le=100, description="More connections a service's store opens while busy; a service "
        "uses at most pool size + overflow"
    )
    cipher_key: SecretStr = Field(
        SecretStr(""),
        description="Base64 AES key: encrypts stored event payloads (AES-GCM) when set",
    )
    unbound_rows: Literal["refuse", "accept"] = Field(
        "refuse",
        description="Stored events without a place binding (written before binding existed): "
        "`accept` only for such an older store; `rekey audit verify` lists them either way",
    )
    retention_years: float = Field(
        6.0, gt=0, description="How long the audit record is kept (HIPAA's six years): `rekey "
        "audit retention` reports the stored events and the users past it"
    )
    tree_head_seconds: float = Field(
        300.0, gt=0, description="How often each service signs and publishes its Merkle tree head"
    )
    tree_heads_dir: str = Field(
        "", description="Folder of the append-only signed tree head files, `<service>.jsonl` "
        "(0600); empty: <data_dir>/heads. Ship them elsewhere: they are the evidence"
    )
    vault_key: SecretStr = Field(
        SecretStr(""),
        description="Base64 AES-256 key for the secret vault (TOTP seeds); kept outside the stores",
    )
    token_key: SecretStr = Field(
        SecretStr(""),
        description="Key of the email address digests services compare addresses by",
    )
    smtp_host: str = Field("127.0.0.1", description="Outgoing mail server")
    smtp_port: int = Field(8025, description="Outgoing mail server port")
    smtp_username: str = Field("", description="Outgoing mail user (empty: no AUTH)")
    smtp_password: SecretStr = Field(SecretStr(""), description="Outgoing mail password")
    smtp_tls: Literal["none", "starttls", "implicit"] = Field(
        "starttls",
        description="TLS on the outgoing mail connection, certificate and name checked; `none` "
        "only to a loopback host (`rekey up`'s mail sink)",
    )
    smtp_sender: str = Field("Rekey Help Desk <helpdesk@rekey.local>", description="From address")
    smtp_subject_tag: str = Field("[secure]", description="Subject tag an encryption gateway keys on")
    temp_password_hours: int = Field(24, description="Validity of a temporary password")
    principal_minutes: float = Field(
        60.0, gt=0, description="Life of an agent's signed principal (console or CLI sign-in)"
    )
    agent_invitation_hours: float = Field(
        72.0, gt=0, description="An agent's invitation (password, second factor) ends after this"
    )
    webauthn_rp_id: str = Field(
        "", description="The passkey relying party id, a registrable domain of the portal's public "
        "URL (empty: that URL's host name, e.g. localhost)"
    )
    portal_name: str = Field("PASRR Portal", description="Issuer name shown in authenticator apps")
    log_level: str = Field("INFO", description="Log level of every process")
    log_format: Literal["json", "text"] = Field(
        "json", description="Log lines as one JSON object each (json) or as plain text (text)"
    )
    health_host: str = Field(
        "127.0.0.1", description="Address of the process's /livez, /readyz and /metrics listener"
    )
    health_port: int = Field(
        0, ge=0, description="Port of the process's /livez, /readyz and /metrics (0: none; "
        "`rekey up` gives each process one, listed in `.rekey/health.json`)",
    )
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
    intake_mime_max_depth: int = Field(
        10, ge=1, description="Multipart levels an intake mail may nest (deeper: quarantined)"
    )
    intake_mime_max_parts: int = Field(
        100, ge=1, description="MIME parts an intake mail may hold (more: quarantined)"
    )
    intake_mime_max_seconds: float = Field(
        0.25, gt=0, description="CPU seconds reading one intake mail may take (more: quarantined)"
    )
    intake_quarantine_max_mails: int = Field(
        1000, ge=1, description="Mails the quarantine folder holds at most (past it: 452)"
    )
    intake_quarantine_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Bytes the quarantine folder holds at most (past it: 452)"
    )
    intake_mails_per_window: int = Field(
        200, ge=1, description="Mails the intake accepts per window in all (over it: 451)"
    )
    intake_mails_per_domain: int = Field(
        50, ge=1, description="Mails the intake accepts per window from one sender domain (over it: 451)"
    )
    requests_per_sender: int = Field(5, ge=1, description="Reset requests per sender address per window")
    requests_per_account: int = Field(5, ge=1, description="Reset requests per account per window")
    request_window_seconds: int = Field(3600, ge=1, description="Window of the request and intake limits")
    four_eyes: Literal["privileged", "all", "off"] = Field(
        "privileged",
        description="Which resets need a second agent's approval: privileged accounts (agents and "
        "accounts flagged privileged), all, or off (true/false: all/off)",
    )
    cancel_window_minutes: float = Field(
        0.0, ge=0, description="An approved reset of an ordinary account takes effect after this; "
        "the user can cancel it from a mailed link until then (0: at once, no link)",
    )
    cancel_window_privileged_minutes: float = Field(
        60.0, ge=0, description="The same for privileged accounts (agents and accounts flagged "
        "privileged)",
    )
    portal_public_url: str = Field(
        "", description="The portal's address in links mailed to people (a reset's cancel link); "
        "empty: http://localhost:<portal port>",
    )
    ticket_expiry_hours: float = Field(72.0, gt=0, description="Unhandled tickets expire after this")
    ticket_expiry_check_seconds: float = Field(
        60.0, gt=0, description="How often expiry and the end of cancel windows are checked"
    )
    # --- identity proofs (docs/ticketing.md: the points policy)
    proof_points_ordinary: int = Field(
        2, ge=1, description="Proof points a reset of an ordinary account needs before approval"
    )
    proof_points_privileged: int = Field(
        3, ge=1, description="Proof points a reset of a privileged account (agents, accounts "
        "flagged privileged) needs before approval"
    )
    proof_points: str = Field(
        "call_back=2,manager_approval=2,method_challenge=2,email_code=1,id_check=1",
        description="Points each proof kind is worth (kind=points, comma-separated; a kind "
        "left out is worth 0)",
    )
    proof_never_alone: str = Field(
        "email_code,id_check",
        description="Proof kinds that count only beside a proof of another kind",
    )
    proof_code_minutes: int = Field(15, ge=1, description="Life of a code mailed for a proof")
    proof_code_attempts: int = Field(
        3, ge=1, description="Wrong codes typed for one mailed-code proof before it fails"
    )
    manager_link_hours: float = Field(
        24.0, gt=0, description="Life of the signed link mailed to a manager for their approval"
    )
    mfa_always_required: bool = Field(
        False, description="Every sign-in needs MFA: new passwords may then be 8 characters, not 15"
    )
    signin_delay_after: int = Field(
        5, ge=1, description="Failed sign-ins in a row for an account before each next attempt "
        "must wait (a delay, never a lock: the right password works once it has passed)"
    )
    signin_delay_first_seconds: float = Field(1.0, gt=0, description="The first wait (doubles per failure)")
    signin_delay_max_seconds: float = Field(60.0, gt=0, description="The longest wait between two sign-ins")
    signin_attempts_per_address: int = Field(
        30, ge=1, description="Sign-in attempts per client address per minute, whatever the "
        "username (the portal passes the address; CLI sign-ins have none)"
    )
    # --- post-reset detection (ticketing)
    detect_resets_per_address: int = Field(
        3, ge=2, description="Reset requests from one client address within the detection "
        "window that flag the request (`several_resets_from_one_address`)"
    )
    detect_window_hours: float = Field(
        24.0, gt=0, description="Window of the several-resets rule and how long after a reset "
        "a method registered from another network is flagged"
    )
    detect_second_method_minutes: float = Field(60.0, gt=0, description="Second method this soon: flagged")
    security_address: str = Field(
        "", description="Where flagged resets are mailed (empty: flags are only recorded and "
        "shown in the console)"
    )
    geoip_db: str = Field(
        "", description="Optional MaxMind country database (.mmdb, needs the `maxminddb` "
        "package): flags then name both countries; the rule itself compares networks"
    )
    # --- portal
    portal_host: str = Field("127.0.0.1", description="Address the web portal listens on")
    portal_port: int = Field(8080, description="Port of the web portal")
    portal_dev_pages: bool = Field(
        False,
        description="Serve developer pages (every caught mail, text and call, no sign-in) under "
        "/dev; refused unless the portal host is loopback; `rekey up --dev` sets it",
    )
    portal_idle_minutes: int = Field(15, description="A portal session ends after this idle time")
    portal_session_hours: int = Field(8, description="A portal session ends after this, at most")
    portal_sign_in_attempts: int = Field(
        10, description="Sign-in attempts allowed per minute per client address (a forms' "
        "limit; per account, credentials' delay applies)"
    )
    trusted_proxies: str = Field(
        "", description="Proxies (CIDRs, comma-separated) whose X-Forwarded-For the portal "
        "reads, right to left, to find the client's address; empty: the TCP peer is the client"
    )
    # --- end portal
    # --- verification
    push_number_digits: int = Field(
        2, ge=2, le=6, description="Digits of the push number to match (6 per NIST SP 800-63B-4)"
    )
    push_ttl_seconds: int = Field(120, ge=1, le=86400, description="Life of a push challenge")
    push_max_wrong: int = Field(3, ge=1, description="Wrong numbers that kill a push challenge")
    push_limit_per_user: int = Field(
        5, ge=1, description="Push requests per user per push window (against push bombing)"
    )
    push_limit_per_device: int = Field(5, ge=1, description="Push requests per device per push window")
    push_limit_window_minutes: int = Field(15, ge=1, description="The push rate limits' window")
    method_lock_after: int = Field(5, ge=1, description="Consecutive failures that lock a method")
    fresh_mfa_minutes: int = Field(
        10, ge=1, description="Security info: adding, removing a method or changing the default "
        "needs a sign-in method checked within this time (else the default method is asked again)"
    )
    phone_code_minutes: int = Field(10, ge=1, le=1440,
                                    description="Validity of a code sent by text or call")
    call_mode: Literal["press_pound", "read_code"] = Field(
        "press_pound", description="Voice calls: press # to approve, or read out a code to type"
    )
    send_limit_per_user: int = Field(
        10, ge=1, le=50, description="Texts/calls per user per send window (a setup, two resends and "
        "several sign-ins fit)")
    send_limit_per_number: int = Field(
        8, ge=1, le=50, description="Texts/calls per phone number per send window, whoever asks (a "
        "setup, two resends and several sign-ins fit)")
    send_window_minutes: int = Field(15, ge=1, le=1440, description="The send rate limits' window")
    phone_regions: str = Field(
        "", description="Regions (ISO codes, comma-separated) a phone may be in; empty: the whole "
        "phone country list"
    )
    phone_number_types: str = Field(
        "mobile,fixed_line,fixed_line_or_mobile",
        description="phonenumbers number types that get codes (premium-rate, shared-cost, "
        "satellite, pager, ... refused)",
    )
    twilio_account_sid: str = Field(
        "AC00000000000000000000000000000000", description="Twilio account SID"
    )
    twilio_auth_token: SecretStr = Field(
        SecretStr(""),
        description="Twilio auth token; checks webhook signatures: without it no webhook listener",
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

    @field_validator("four_eyes", mode="before")
    @classmethod
    def _four_eyes_booleans(cls, value: Any) -> Any:
        """The setting was a boolean: true means every reset, false none."""
        words = {"true": "all", "1": "all", "yes": "all", "false": "off", "0": "off", "no": "off"}
        if isinstance(value, bool):
            return "all" if value else "off"
        return words.get(str(value).strip().lower(), value)

    @property
    def portal_base_url(self) -> str:
        return (self.portal_public_url or f"http://localhost:{self.portal_port}").rstrip("/")

    @property
    def passkey_origin(self) -> str:
        """The origin browsers name in agents' passkey answers: the portal's public URL's."""
        url = urlparse(self.portal_base_url)
        return f"{url.scheme}://{url.netloc}"

    @property
    def passkey_rp_id(self) -> str:
        return self.webauthn_rp_id or (urlparse(self.portal_base_url).hostname or "localhost")

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
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
            env["SQLITE_DBNAME"] = str(self.data_dir / f"{service}.sqlite")
            env["SQLITE_LOCK_TIMEOUT"] = "10"
            # Several tracking records in one transaction: a consumer's batch (shared.recorders)
            env["PROCESS_RECORDER_TOPIC"] = "shared.recorders.sqlite:SQLiteBatchRecorder"
        else:
            env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
            env["POSTGRES_DBNAME"] = self.postgres_db
            env["POSTGRES_HOST"] = self.postgres_host
            env["POSTGRES_PORT"] = str(self.postgres_port)
            env["POSTGRES_USER"] = self.postgres_user
            env["POSTGRES_PASSWORD"] = self.postgres_password.get_secret_value()
            env["POSTGRES_SCHEMA"] = service
            env["POSTGRES_POOL_SIZE"] = str(self.postgres_pool_size)
            env["POSTGRES_MAX_OVERFLOW"] = str(self.postgres_max_overflow)
            env["PROCESS_RECORDER_TOPIC"] = "shared.recorders.postgres:PostgresBatchRecorder"
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


FILE_SUFFIX = "_FILE"


def secret_fields() -> list[str]:
    """The settings that may come from a file (``REKEY_<NAME>_FILE``): every secret one."""
    return [name for name, field in Settings.model_fields.items() if field.annotation is SecretStr]


class SecretFiles(PydanticBaseSettingsSource):
    """``REKEY_<NAME>_FILE``: the content of that file is the secret setting ``<name>``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[object, str, bool]:
        return None, field_name, False  # all the work is in __call__

    def __call__(self) -> dict[str, object]:
        environ = EnvSettingsSource(self.settings_cls, case_sensitive=False).env_vars
        values: dict[str, object] = {}
        for name, field in self.settings_cls.model_fields.items():
            if field.annotation is not SecretStr:
                continue
            variable = f"REKEY_{name.upper()}"
            path = environ.get(f"{variable}{FILE_SUFFIX}".lower())
            if not path:
                continue
            if environ.get(variable.lower()):
                raise ValueError(f"{variable} and {variable}{FILE_SUFFIX} are both set: set one")
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ValueError(
                    f"{variable}{FILE_SUFFIX}: cannot read {path} ({exc.strerror or exc})") from None
            values[name] = text.removesuffix("\n").removesuffix("\r")
        return values


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

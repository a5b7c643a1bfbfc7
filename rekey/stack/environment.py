"""The environment a local Rekey shares: keys made once and kept in ``<data dir>/rekey.env``,
and the settings every ``rekey`` command reads from it."""

from __future__ import annotations

import os
from pathlib import Path

from shared.files import keep_files_private, private_folder
from shared.hosts import is_loopback
from shared.settings import Settings, new_key

ENV_FILE = "rekey.env"
BUS_FOLDER = "bus"
KEY_VARIABLES = ("REKEY_VAULT_KEY", "REKEY_TOKEN_KEY", "REKEY_CIPHER_KEY")
# Where the stores are: every later command must read the same ones (the password too, since
# the file is 0600 in a 0700 folder, beside the keys that matter more).
STORE_VARIABLES = ("REKEY_STORE", "REKEY_POSTGRES_HOST", "REKEY_POSTGRES_PORT",
                   "REKEY_POSTGRES_DB", "REKEY_POSTGRES_USER", "REKEY_POSTGRES_PASSWORD")
# Decided at each start (`rekey up --dev`), never kept for the next one or for other commands.
PER_START = ("REKEY_PORTAL_DEV_PAGES",)


def load_env_file(data_dir: Path) -> dict[str, str]:
    path = data_dir / ENV_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    return values


def prepare_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment every process of the stack shares; keys are made once and kept.

    The keys file sits in the data folder with mode 0600: it is what an operator would put in
    a secret store. Losing it makes stored TOTP seeds and encrypted payloads unreadable. The
    folder is 0700, and this process and those it starts make files 0600 (umask 077).
    """
    # Here, not at the top: every service process reads its settings through this module
    # (settings_for) and needs neither the Twilio sim nor the bus's key maker.
    from rekey.stack.buskeys import BusKeys
    from rekey.stack.twilio_sim import prepare_verification

    keep_files_private()
    private_folder(data_dir)
    values = {k: v for k, v in load_env_file(data_dir).items() if k not in PER_START}
    for name in KEY_VARIABLES:
        if os.environ.get(name):  # an operator's own key wins, as in every other command
            values[name] = os.environ[name]
        values.setdefault(name, new_key())
    for name in STORE_VARIABLES:
        if os.environ.get(name):
            values[name] = os.environ[name]
    values.setdefault("REKEY_STORE", "sqlite")
    prepare_verification(values)  # --- verification: Twilio sim token and ports
    # --- mail: to the stack's own sink on loopback in clear; to a host of one's own, TLS
    values["REKEY_SMTP_HOST"] = os.environ.get("REKEY_SMTP_HOST", "127.0.0.1")
    values["REKEY_SMTP_TLS"] = os.environ.get(
        "REKEY_SMTP_TLS", "none" if is_loopback(values["REKEY_SMTP_HOST"]) else "starttls")
    keys = BusKeys.create(data_dir.resolve() / BUS_FOLDER)  # --- the bus: NKEYs, CA, TLS
    values["REKEY_NATS_KEYS_DIR"] = str(keys.folder)
    values["REKEY_NATS_CA_FILE"] = str(keys.ca_file)
    values.update(overrides)
    values["REKEY_DATA_DIR"] = str(data_dir.resolve())
    path = data_dir / ENV_FILE
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    path.chmod(0o600)
    return values


def up_environment(
    data_dir: Path, *, dev: bool = False, nats_port: int = 14222, smtp_port: int = 8025,
    intake_port: int = 2525,
) -> dict[str, str]:
    """What `rekey up` runs with. Developer pages only with ``dev``, and then on a loopback
    portal: :class:`DevPagesRefused` before anything is made otherwise."""
    from services.portal.dev import check_dev_pages

    portal_host = os.environ.get("REKEY_PORTAL_HOST", "127.0.0.1")
    if dev:
        check_dev_pages(Settings(portal_host=portal_host, portal_dev_pages=True))
    env = prepare_environment(
        data_dir,
        REKEY_NATS_URL=os.environ.get("REKEY_NATS_URL", f"tls://127.0.0.1:{nats_port}"),
        REKEY_SMTP_PORT=str(smtp_port),
        REKEY_INTAKE_PORT=os.environ.get("REKEY_INTAKE_PORT", str(intake_port)),
    )
    env["REKEY_PORTAL_DEV_PAGES"] = "true" if dev else "false"  # whatever the environment says
    env["REKEY_PORTAL_HOST"] = portal_host
    return env


def settings_for(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, plus the keys and URLs `rekey up` wrote for this folder."""
    folder = data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))
    for key, value in load_env_file(folder).items():
        os.environ.setdefault(key, value)
    os.environ["REKEY_DATA_DIR"] = str(folder)
    return Settings()

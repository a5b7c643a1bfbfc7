"""The non-bus secrets of a deployment, one file each: what ``rekey deploy secrets DIR`` makes.

Compose mounts each as a secret in ``/run/secrets`` and each process reads it through the
``REKEY_<NAME>_FILE`` convention (shared/settings.py); Kubernetes mounts the same files from a
Secret. Existing files are never replaced, so running it again only fills in what is missing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from shared.settings import PROCESSES, new_key

REKEY_UID, POSTGRES_UID = 10001, 999  # the Rekey image's user; the postgres image's


@dataclass(frozen=True)
class SecretFile:
    name: str
    setting: str  # the REKEY_ variable it fills in (as REKEY_<NAME>_FILE)
    make: str  # "key", "password" or "empty" (the operator puts in the provider's)
    readers: str  # who reads it: "rekey", "postgres" or "both"


def role_password(service: str) -> str:
    return f"postgres-{service}-password"


SECRET_FILES: tuple[SecretFile, ...] = (
    SecretFile("vault-key", "REKEY_VAULT_KEY", "key", "rekey"),
    SecretFile("token-key", "REKEY_TOKEN_KEY", "key", "rekey"),
    SecretFile("cipher-key", "REKEY_CIPHER_KEY", "key", "rekey"),
    SecretFile("postgres-password", "POSTGRES_PASSWORD", "password", "postgres"),
    *(SecretFile(role_password(s), "REKEY_POSTGRES_PASSWORD", "password", "both") for s in PROCESSES),
    SecretFile("smtp-password", "REKEY_SMTP_PASSWORD", "empty", "rekey"),
    SecretFile("twilio-auth-token", "REKEY_TWILIO_AUTH_TOKEN", "empty", "rekey"),
)


def make_secrets(folder: Path) -> tuple[list[str], list[str]]:
    """Make the missing files (0600, in a 0700 folder when it is new); (made, kept).

    Files that exist keep their owner and mode (the database roles' are 0640, see
    :func:`ownership_commands`)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    made, kept = [], []
    for secret in SECRET_FILES:
        path = folder / secret.name
        if path.exists():
            kept.append(secret.name)
            continue
        value = {"key": new_key, "password": lambda: secrets.token_urlsafe(24),
                 "empty": lambda: ""}[secret.make]()
        path.touch(mode=0o600)
        path.write_text(value + "\n" if value else "")
        made.append(secret.name)
    return made, kept


def ownership_commands(folder: str = "secrets") -> list[str]:
    """What gives each container's user its files (Compose mounts them as they are on the host)."""
    rekey = [s.name for s in SECRET_FILES if s.readers == "rekey"]
    postgres = [s.name for s in SECRET_FILES if s.readers == "postgres"]
    both = [s.name for s in SECRET_FILES if s.readers == "both"]
    return [
        f"chown {REKEY_UID} " + " ".join(f"{folder}/{n}" for n in rekey),
        f"chown {POSTGRES_UID} " + " ".join(f"{folder}/{n}" for n in postgres),
        f"chown {REKEY_UID}:{POSTGRES_UID} " + " ".join(f"{folder}/{n}" for n in both)
        + " && chmod 0640 " + " ".join(f"{folder}/{n}" for n in both),
    ]


KEYS = ("vault-key", "token-key", "cipher-key")
MAILERS = ("ticketing", "credentials")  # send mail: the SMTP password


def files_for(process: str) -> list[str]:
    """Every secret file one process's container mounts: its bus files (``rekey bus init``) and
    the keys and passwords it reads (``REKEY_<NAME>_FILE``), nothing more. Compose and the
    Kubernetes Secrets give each container exactly these (unit tests compare)."""
    from rekey.stack.busdeploy import container_files
    from shared.settings import AUDIT, SERVICES

    files = container_files(process)
    if process in SERVICES:
        files += [*KEYS, role_password(process)]
    elif process == AUDIT:  # its store is encrypted; it holds no vault and compares no addresses
        files += ["cipher-key", role_password(process)]
    if process in MAILERS:
        files.append("smtp-password")
    if process == "verification":
        files.append("twilio-auth-token")
    return files


def setting_files(process: str) -> dict[str, str]:
    """``REKEY_<NAME>_FILE`` -> the file's name, for the secrets among :func:`files_for`."""
    wanted = set(files_for(process))
    return {f"{s.setting}_FILE": s.name for s in SECRET_FILES
            if s.name in wanted and s.setting.startswith("REKEY_")}

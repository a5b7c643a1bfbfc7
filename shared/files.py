"""Files only their owner can read. The data folder holds the stores, the vault, mail with
temporary passwords, logs, quarantined mail and keys: folders 0700, files 0600, whatever the
umask of the shell that started Rekey."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """New files 0600 and folders 0700 in this process and in every process it starts."""
    os.umask(PRIVATE_UMASK)


def private_folder(path: Path) -> Path:
    """Make ``path`` (0700) if missing, and take group and others' access from an existing
    one and from what an older run left in it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for found in (path, *path.rglob("*")):
        if not found.is_symlink():
            mode = found.stat().st_mode & 0o7777
            if mode & PRIVATE_UMASK:
                found.chmod(mode & ~PRIVATE_UMASK)
    return path

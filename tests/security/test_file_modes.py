"""Another local account on the machine reads nothing Rekey keeps: the data folder is 0700 and
every file in it 0600 (stores, vault, caught mail, logs, quarantine, bus keys, rekey.env),
whatever the umask of the shell that started it."""

from __future__ import annotations

import asyncio
import io
import os
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from rich.console import Console

from rekey.demo.guide import run_demo
from shared.waiting import eventually
from tests.security.conftest import up_stack

pytestmark = pytest.mark.security
USER = "pat.smith@masspasrr.org"


def quarantine_junk(stack) -> None:
    junk = EmailMessage()
    junk["From"], junk["To"], junk["Subject"] = "x@example.org", stack.settings.helpdesk_address, "hi"
    junk.set_content("<p>nothing to file</p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", stack.intake_port, timeout=10) as smtp:
        smtp.send_message(junk)


def test_another_local_account_reads_nothing_in_the_data_folder_after_a_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "rekey"
    shell_umask = os.umask(0o022)  # what a usual shell hands over
    try:
        with up_stack(folder, monkeypatch) as stack:
            assert asyncio.run(run_demo(stack.settings, USER, Console(file=io.StringIO()))) == 0
            quarantine_junk(stack)
            asyncio.run(eventually(lambda: list((folder / "quarantine").glob("*")),
                                   what="the junk mail to be quarantined"))
    finally:
        os.umask(shell_umask)

    kept = [folder, *folder.rglob("*")]
    names = {p.name for p in kept}
    for expected in ("rekey.env", "credentials.sqlite", "verification-vault.sqlite",
                     "portal.log", "operator.nk", "mail", "quarantine", "nats"):
        assert expected in names, f"{expected} was not made: the check below would prove little"
    readable = [f"{oct(p.stat().st_mode & 0o777)} {p.relative_to(tmp_path)}"
                for p in kept if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert readable == []

"""Filling the intake's quarantine with junk: past its cap (mails or bytes) the intake refuses
mail it would quarantine with 452, so the sending server keeps it; nothing is stored or
recorded, and real requests still become tickets."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest

from tests.integration.conftest import USER_EMAIL, System, eventually
from tests.integration.test_intake_mail import WELL_FORMED, intake, mail, send

__all__ = ["intake"]


def junk(n: int, padding: int = 0) -> object:
    return mail(f"junk{n}@spam{n}.example", f"Lunch on Friday, number {n}?\n" + "x" * padding,
                subject="hi")


def kept_files(system: System) -> list[Path]:
    folder = Path(system.settings.data_dir) / "quarantine"
    return sorted(folder.iterdir()) if folder.is_dir() else []


async def refused_as_full(system: System, message: object) -> None:
    ticketing = system.app("ticketing")
    before, files = ticketing.max_notification_id(), kept_files(system)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(system, message)
    assert refused.value.code == 452 and "quarantine is full" in refused.value.message
    assert ticketing.max_notification_id() == before and kept_files(system) == files


async def test_junk_cannot_fill_the_quarantine_past_its_count(intake: System):
    intake.settings.intake_quarantine_max_mails = 3
    for n in range(3):
        await send(intake, junk(n))
    await eventually(lambda: len(intake.app("ticketing").quarantined()) == 3)
    for n in range(3, 10):
        await refused_as_full(intake, junk(n))
    assert len(intake.app("ticketing").quarantined()) == 3
    await send(intake, mail(USER_EMAIL, WELL_FORMED))  # a real request still makes a ticket
    assert len(intake.app("ticketing").list_tickets()) == 1


async def test_junk_cannot_fill_the_quarantine_past_its_bytes(intake: System):
    intake.settings.intake_quarantine_max_bytes = 12_000
    await send(intake, junk(0, padding=5000))
    await send(intake, junk(1, padding=5000))
    await refused_as_full(intake, junk(2, padding=5000))
    await send(intake, junk(3))  # a small one still fits
    assert len(intake.app("ticketing").quarantined()) == 3
    assert sum(p.stat().st_size for p in kept_files(intake)) <= 12_000

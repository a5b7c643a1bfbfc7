"""Developer pages show every temporary password and SMS code without sign-in: they are off
unless `rekey up --dev` asks for them, and refused on a portal other machines can reach."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rekey.cli.app import app as rekey_cli
from services.portal.app import create_app
from services.portal.dev import DevPagesRefused
from shared.settings import Settings
from tests.security.conftest import up_stack

pytestmark = pytest.mark.security
DEV_PAGES = ("/dev/mail", "/dev/phone")


def status_of(url: str) -> int:
    return httpx.get(url, timeout=5).status_code


def test_reading_caught_mail_from_a_default_rekey_up_finds_no_dev_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # even with the variable in the shell: only the --dev flag turns them on
    with up_stack(tmp_path / "rekey", monkeypatch, REKEY_PORTAL_DEV_PAGES="true") as stack:
        base = f"http://127.0.0.1:{stack.settings.portal_port}"
        assert status_of(f"{base}/healthz") == 200
        assert [status_of(base + path) for path in DEV_PAGES] == [404, 404]
        assert "REKEY_PORTAL_DEV_PAGES" not in (tmp_path / "rekey" / "rekey.env").read_text()


def test_dev_pages_on_a_portal_other_machines_reach_are_refused(tmp_path: Path) -> None:
    exposed = Settings(portal_dev_pages=True, portal_host="0.0.0.0", data_dir=tmp_path)
    with pytest.raises(DevPagesRefused, match=r"REKEY_PORTAL_HOST='0\.0\.0\.0'"):
        create_app(exposed)


def test_rekey_up_dev_on_a_public_address_refuses_before_making_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REKEY_PORTAL_HOST", "0.0.0.0")
    folder = tmp_path / "rekey"

    result = CliRunner().invoke(rekey_cli, ["up", "--dev", "--data-dir", str(folder)])

    assert result.exit_code == 2
    assert "REKEY_PORTAL_HOST='0.0.0.0'" in result.output
    assert not folder.exists()


def test_a_portal_with_dev_pages_on_a_public_address_does_not_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "REKEY_DATA_DIR": str(tmp_path), "REKEY_PORTAL_HOST": "0.0.0.0",
           "REKEY_PORTAL_DEV_PAGES": "true"}

    done = subprocess.run([sys.executable, "-m", "rekey", "serve", "portal"], env=env,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert done.stderr.count("refusing the developer pages") == 1, done.stderr

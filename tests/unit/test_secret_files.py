"""Every secret setting can come from a file (REKEY_<NAME>_FILE), as Compose and Kubernetes
secrets are mounted; a conflict or an unreadable file is refused, naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings, secret_fields
from tests.conftest import without_rekey_variables


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:

    without_rekey_variables(monkeypatch)


def test_the_secret_settings_are_the_passwords_keys_and_tokens():
    assert set(secret_fields()) == {"postgres_password", "cipher_key", "vault_key", "token_key",
                                    "smtp_password", "twilio_auth_token"}


@pytest.mark.parametrize("name", secret_fields())
def test_each_secret_setting_reads_its_file(name: str, tmp_path: Path, monkeypatch):
    secret = tmp_path / name
    secret.write_text(f"value of {name} \n")  # as `echo` writes it: the newline is not the value
    monkeypatch.setenv(f"REKEY_{name.upper()}_FILE", str(secret))
    assert getattr(Settings(), name).get_secret_value() == f"value of {name} "


def test_the_variable_itself_still_works_and_the_file_is_not_needed(monkeypatch):
    monkeypatch.setenv("REKEY_VAULT_KEY", "direct")
    assert Settings().vault_key.get_secret_value() == "direct"


def test_both_the_variable_and_its_file_are_refused(tmp_path: Path, monkeypatch):
    (tmp_path / "key").write_text("from the file")
    monkeypatch.setenv("REKEY_VAULT_KEY", "direct")
    monkeypatch.setenv("REKEY_VAULT_KEY_FILE", str(tmp_path / "key"))
    with pytest.raises(ValueError, match="REKEY_VAULT_KEY and REKEY_VAULT_KEY_FILE are both set"):
        Settings()


def test_a_missing_file_is_refused_naming_the_variable(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("REKEY_POSTGRES_PASSWORD_FILE", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"REKEY_POSTGRES_PASSWORD_FILE: cannot read .*nowhere"):
        Settings()


def test_a_setting_that_is_not_secret_has_no_file_variant(tmp_path: Path, monkeypatch):
    (tmp_path / "host").write_text("db.example")
    monkeypatch.setenv("REKEY_POSTGRES_HOST_FILE", str(tmp_path / "host"))
    assert Settings().postgres_host == "127.0.0.1"


def test_arguments_win_over_files(tmp_path: Path, monkeypatch):
    (tmp_path / "key").write_text("from the file")
    monkeypatch.setenv("REKEY_TOKEN_KEY_FILE", str(tmp_path / "key"))
    assert Settings(token_key="given").token_key.get_secret_value() == "given"

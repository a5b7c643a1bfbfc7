"""`rekey deploy secrets` makes each secret file once and never replaces one."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from rekey.deploy.secrets import SECRET_FILES, make_secrets, ownership_commands


def test_it_makes_every_file_private_keys_random_and_provider_secrets_empty(tmp_path: Path):
    made, kept = make_secrets(tmp_path / "secrets")
    assert sorted(made) == sorted(s.name for s in SECRET_FILES) and kept == []
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    for secret in SECRET_FILES:
        path = tmp_path / "secrets" / secret.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, secret.name
        value = path.read_text().strip()
        if secret.make == "key":
            assert len(base64.b64decode(value)) == 32
        elif secret.make == "password":
            assert len(value) >= 24
        else:
            assert value == ""
    make_secrets(tmp_path / "other")
    assert (tmp_path / "other" / "vault-key").read_text() != (tmp_path / "secrets" / "vault-key").read_text()


def test_a_second_run_keeps_every_file_its_content_and_its_mode(tmp_path: Path):
    folder = tmp_path / "secrets"
    make_secrets(folder)
    (folder / "smtp-password").write_text("the relay's")
    (folder / "postgres-ticketing-password").chmod(0o640)  # as the chown lines leave it
    before = {p.name: p.read_text() for p in folder.iterdir()}
    made, kept = make_secrets(folder)
    assert made == [] and sorted(kept) == sorted(before)
    assert {p.name: p.read_text() for p in folder.iterdir()} == before
    assert stat.S_IMODE((folder / "postgres-ticketing-password").stat().st_mode) == 0o640


def test_the_ownership_lines_give_each_file_to_whoever_reads_it():
    rekey, postgres, both = ownership_commands("s")
    assert rekey.startswith("chown 10001 ") and "s/vault-key" in rekey
    assert postgres == "chown 999 s/postgres-password"
    assert both.startswith("chown 10001:999 s/postgres-ticketing-password") and "chmod 0640" in both

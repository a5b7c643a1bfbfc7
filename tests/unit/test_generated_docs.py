"""The README's generated parts match the code they are generated from."""

from __future__ import annotations

from rekey.cli.docs import (
    ARCHITECTURE,
    README,
    current_architecture,
    current_readme,
    permissions_tables,
    settings_tables,
)
from shared.bus.identities import IDENTITIES, RPC_PREFIX
from shared.settings import Settings


def test_the_readme_configuration_tables_are_current():
    text = README.read_text()
    assert current_readme(text) == text, "run `rekey docs settings --write` and commit README.md"


def test_every_setting_has_a_row_with_its_variable_and_description():
    tables = settings_tables()
    for name, field in Settings.model_fields.items():
        assert f"| `REKEY_{name.upper()}` |" in tables
        assert field.description, f"{name} has no description for the README"


def test_the_architecture_permissions_tables_are_current():
    text = ARCHITECTURE.read_text()
    assert current_architecture(text) == text, "run `rekey docs permissions --write` and commit it"


def test_every_identity_and_every_subject_it_may_use_has_a_row():
    tables = permissions_tables()
    for name, ident in IDENTITIES.items():
        assert f"| `{name}` | {ident.description} |" in tables
        for subject in (*ident.publish, *ident.publish_deny, *ident.subscribe):
            if subject == f"{ident.inbox_prefix}.>":
                assert "| `_INBOX_<identity>.>` | - | each identity, its own |" in tables
                continue
            generic = ".".join("<service>" if part == name else part for part in subject.split("."))
            prefix, _, command = subject.rpartition(".")  # named endpoints share a row
            assert f"| `{generic}` |" in tables or f"| `{subject}` |" in tables or (
                subject.startswith(RPC_PREFIX) and f"| `{prefix}.` " in tables and f"`{command}`" in tables
            ), subject

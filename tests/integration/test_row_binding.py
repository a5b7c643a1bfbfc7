"""Stored rows bound to their place, and a store written before binding existed: its rows are
refused unless REKEY_UNBOUND_ROWS=accept, and `rekey audit verify` counts them either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.audit.evidence import verify_stores
from services.audit.history import application_classes
from services.credentials.application import CredentialsApplication
from services.credentials.domain import Account
from shared.binding import BOUND_MARK, RowNotInPlace
from shared.evidence.publishing import tree_heads_for
from tests.integration.conftest import USER, USER_EMAIL
from tests.security.insider import Insider


def register(app: CredentialsApplication) -> Account:
    account = Account(username=USER, email=USER_EMAIL, display_name="Jane Doe", role="user",
                      actor="operator")
    app.save(account)
    return account


def test_a_row_is_stored_bound_and_reads_back(nats_server, settings_factory, store) -> None:
    settings = settings_factory(nats_server, store=store.name, postgres_db=store.postgres_db)
    app = CredentialsApplication(settings)
    try:
        account = register(app)
        assert app.repository.get(account.id).username == USER
    finally:
        app.close()
    assert all(row.state.startswith(BOUND_MARK) for row in Insider(settings, "credentials").rows())


def test_rows_written_before_binding_are_refused_unless_accepted_and_verify_counts_them(
    nats_server, settings_factory, store,
) -> None:
    with_keys = settings_factory(nats_server, store=store.name, postgres_db=store.postgres_db)
    before_binding = with_keys.model_copy(update={"nats_keys_dir": ""})  # no evidence seed
    old = CredentialsApplication(before_binding)
    try:
        account = register(old)
    finally:
        old.close()

    refusing = CredentialsApplication(with_keys)
    try:
        with pytest.raises(RowNotInPlace, match="unbound"):
            refusing.repository.get(account.id)
    finally:
        refusing.close()
    accepting = CredentialsApplication(with_keys.model_copy(update={"unbound_rows": "accept"}))
    try:
        assert accepting.repository.get(account.id).username == USER
        heads = tree_heads_for(accepting)  # as its runtime does at start: the old rows signed
        assert heads is not None
        heads.next()
    finally:
        accepting.close()

    for cls in application_classes():  # the other services' stores, empty
        cls(with_keys).close()
    [credentials] = [r for r in verify_stores(with_keys, keys=Path(with_keys.nats_keys_dir))
                     if r.service == "credentials"]
    assert credentials.intact
    assert "1 rows are unbound (written before binding existed)" in " ".join(credentials.notes)

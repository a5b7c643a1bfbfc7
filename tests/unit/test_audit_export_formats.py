"""Exports an auditor's tools read: every public event becomes a valid OCSF 1.5.0 event of the
Authentication or Account Change class, CSV keeps every field, and a bundle that is not one is
refused as such."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import ocsf_emitter
import pytest
from ocsf_emitter import _models as ocsf

from services.audit.export import (
    ACCOUNT_CHANGE,
    AUTHENTICATION,
    CSV_COLUMNS,
    BundleRefused,
    Writer,
    to_ocsf,
    verify_bundle,
)
from shared.contracts.events import CONTRACTS

EVENT = {
    "envelope_version": 1, "event_id": "0b5c1a52-7a3f-5b2b-9c57-1f1c6e1a2f11", "schema_version": 1,
    "occurred_at": "2026-11-28T05:08:20.005000+00:00", "source": "credentials",
    "notification_id": 12, "subject": "pat.smith@masspasrr.org", "correlation_id": None,
    "causation_id": None, "actor": "pat.smith@masspasrr.org", "context": {"channel": "portal"},
    "body": {"reason": "changed at first sign-in"},
}


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_every_public_event_is_a_valid_ocsf_event_of_an_identity_class(name: str):
    record = to_ocsf({**EVENT, "name": name})

    model = {AUTHENTICATION: ocsf.Authentication, ACCOUNT_CHANGE: ocsf.AccountChange}[record["class_uid"]]
    ocsf_emitter.validate(model.model_validate(record))  # raises, naming the field, if invalid
    assert record["unmapped"]["rekey"]["name"] == name  # nothing lost in translation


def test_a_password_change_maps_to_account_change_password_change():
    record = to_ocsf({**EVENT, "name": "PasswordChanged"})
    assert (record["class_uid"], record["activity_id"], record["type_uid"]) == (3001, 3, 300103)
    assert record["time"] == 1795842500005
    assert (record["user"]["name"], record["metadata"]["uid"]) == (EVENT["subject"], EVENT["event_id"])


def test_csv_keeps_every_field_and_the_body_as_json():
    out = io.StringIO()
    Writer(out, "csv").write({**EVENT, "name": "PasswordChanged"})
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(row) == list(CSV_COLUMNS)
    assert json.loads(row["body"]) == EVENT["body"]
    assert json.loads(row["context"]) == {"channel": "portal"}


def test_a_file_that_is_not_a_bundle_is_refused_as_unusable(tmp_path: Path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(BundleRefused) as refused:
        verify_bundle(junk, frozenset())
    assert refused.value.kind == "unusable"

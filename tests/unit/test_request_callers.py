"""Which requests a service acts on: those its caller's bus key signed (shared.bus.callers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rekey.stack.buskeys import BusKeys, new_seed, public_key
from shared.bus.callers import CallerCheck, claimed_caller, request_material
from shared.bus.signing import NkeySigner
from shared.context import CHANNEL_HEADER, SESSION_HEADER, from_request
from shared.errors import CallerUnverified

SUBJECT = "rekey.rpc.ticketing.approve"
BODY = b'{"ticket": "HD-1"}'


@pytest.fixture
def keys(tmp_path: Path) -> BusKeys:
    return BusKeys.create(tmp_path / "bus", identities=("portal", "operator"))


def _signer(keys: BusKeys, identity: str) -> NkeySigner:
    return NkeySigner.from_seed(keys.seed(identity))


def signed_by(signer: NkeySigner, stated: dict[str, str] | None = None,
              subject: str = SUBJECT, body: bytes = BODY) -> dict[str, str]:
    """A request's headers as RekeyClient sends them: the context it states, and its signature."""
    return {**(stated or {}), **signer.headers(subject, request_material(body, stated))}


def test_the_caller_is_the_identity_whose_inbox_and_key_agree(keys: BusKeys) -> None:
    check = CallerCheck(keys.folder)
    headers = signed_by(_signer(keys, "portal"))
    assert check.caller(SUBJECT, BODY, "_INBOX_portal.abc.1", headers) == "portal"


@pytest.mark.parametrize("reply", [None, "", "reply.to.me", "_INBOX_.x", "_INBOX_portal/x.y"])
def test_a_request_that_names_no_callers_inbox_is_refused(keys: BusKeys, reply) -> None:
    headers = signed_by(_signer(keys, "portal"))
    with pytest.raises(CallerUnverified):
        CallerCheck(keys.folder).caller(SUBJECT, BODY, reply, headers)


def test_the_portals_key_cannot_speak_for_the_operator(keys: BusKeys) -> None:
    headers = signed_by(_signer(keys, "portal"))
    with pytest.raises(CallerUnverified, match="not operator's"):
        CallerCheck(keys.folder).caller(SUBJECT, BODY, "_INBOX_operator.x", headers)


def test_an_unsigned_request_is_refused(keys: BusKeys) -> None:
    with pytest.raises(CallerUnverified, match="not signed"):
        CallerCheck(keys.folder).caller(SUBJECT, BODY, "_INBOX_portal.x", {})


def test_a_signature_moved_to_another_subject_or_body_is_refused(keys: BusKeys) -> None:
    check = CallerCheck(keys.folder)
    headers = signed_by(_signer(keys, "operator"))
    with pytest.raises(CallerUnverified, match="does not match"):
        check.caller("rekey.rpc.ticketing.reject", BODY, "_INBOX_operator.x", headers)
    with pytest.raises(CallerUnverified, match="does not match"):
        check.caller(SUBJECT, b'{"ticket": "HD-2"}', "_INBOX_operator.x", headers)


def test_an_identity_without_a_public_key_here_cannot_call(keys: BusKeys) -> None:
    stranger = NkeySigner.from_seed(new_seed())
    with pytest.raises(CallerUnverified, match=r"no public key for stranger \(stranger.pub in"):
        CallerCheck(keys.folder).caller(SUBJECT, BODY, "_INBOX_stranger.x",
                                        signed_by(stranger))


def test_a_rotated_key_is_trusted_without_a_restart_and_the_retired_one_is_not(
    keys: BusKeys,
) -> None:
    check = CallerCheck(keys.folder)
    old = _signer(keys, "portal")
    assert check.caller(SUBJECT, BODY, "_INBOX_portal.x", signed_by(old)) == "portal"
    keys.rotate("portal")
    _touch_later(keys.public_file("portal"))
    new = _signer(keys, "portal")
    assert check.caller(SUBJECT, BODY, "_INBOX_portal.x", signed_by(new)) == "portal"
    assert check.caller(SUBJECT, BODY, "_INBOX_portal.x", signed_by(old)) == "portal"
    keys.retire("portal")
    _touch_later(keys.public_file("portal"))
    with pytest.raises(CallerUnverified):
        check.caller(SUBJECT, BODY, "_INBOX_portal.x", signed_by(old))
    assert public_key(keys.seed("portal")) in check.keys("portal")


def _touch_later(path: Path) -> None:
    """A file rewritten within the same clock tick keeps its mtime on some file systems."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_the_inbox_names_its_identity() -> None:
    assert claimed_caller("_INBOX_operator.Ab3.17") == "operator"
    assert claimed_caller("_INBOX_operator") == "operator"
    assert claimed_caller("_INBOX_") is None
    assert claimed_caller("elsewhere") is None


@pytest.mark.parametrize(("caller", "stated", "recorded"), [
    ("portal", "console", "console"),
    ("portal", "portal", "portal"),
    ("portal", "cli", "portal"),  # the portal cannot pass its requests off as the command line
    ("operator", "console", "cli"),  # nor the command line as the help-desk pages
    ("operator", None, "cli"),
    ("device", "portal", "app"),
    ("auditor", "mail", "cli"),
    ("inspector", "console", "console"),  # an identity outside the table (tests) states any
    ("inspector", "nonsense", "api"),
])
def test_a_caller_states_only_a_channel_its_identity_may_use(caller, stated, recorded) -> None:
    headers = {CHANNEL_HEADER: stated} if stated else {}
    assert from_request(caller, headers).channel == recorded


def test_a_signature_of_the_wrong_length_is_refused(keys: BusKeys) -> None:
    headers = {**signed_by(_signer(keys, "portal")), "Rekey-Signature": "c2hvcnQ="}
    with pytest.raises(CallerUnverified, match="does not match"):
        CallerCheck(keys.folder).caller(SUBJECT, BODY, "_INBOX_portal.x", headers)


def test_a_line_that_is_not_a_public_key_trusts_nobody_and_the_others_still_count(
    keys: BusKeys,
) -> None:
    path = keys.public_file("portal")
    path.write_text("not a key\n" + path.read_text())
    headers = signed_by(_signer(keys, "portal"))
    assert CallerCheck(keys.folder).caller(SUBJECT, BODY, "_INBOX_portal.x", headers) == "portal"


def test_a_context_header_changed_added_or_dropped_after_signing_is_refused(keys: BusKeys) -> None:
    """The channel and the session reference are recorded and read by the channel rules: the
    signature covers them, so none can be swapped in on the way."""
    check = CallerCheck(keys.folder)
    stated = {CHANNEL_HEADER: "portal", SESSION_HEADER: "a1b2"}
    headers = signed_by(_signer(keys, "portal"), stated)
    assert check.caller(SUBJECT, BODY, "_INBOX_portal.x", headers) == "portal"
    for changed in ({**headers, CHANNEL_HEADER: "console"}, {**headers, SESSION_HEADER: "ffff"},
                    {k: v for k, v in headers.items() if k != SESSION_HEADER}):
        with pytest.raises(CallerUnverified, match="does not match"):
            check.caller(SUBJECT, BODY, "_INBOX_portal.x", changed)
    unstated = signed_by(_signer(keys, "portal"))
    with pytest.raises(CallerUnverified, match="does not match"):
        check.caller(SUBJECT, BODY, "_INBOX_portal.x", {**unstated, CHANNEL_HEADER: "console"})

"""The portal's flow rules without a browser: where each stage belongs, the progress steps,
what a finished set-up leaves in the session, and the ways offered under "Sign in another way"."""

from __future__ import annotations

from typing import Any

import pytest

from services.portal.challenge import _ways
from services.portal.flow import next_page, progress, registered, typed_code
from services.portal.sessions import Challenge, Method, Registration, Session, SessionStore
from shared.clock import ManualClock


def session(**values: Any) -> Session:
    s = Session(id="s", created=0.0, seen=0.0)
    for name, value in values.items():
        setattr(s, name, value)
    return s


def app(method_id: str, *, push: bool = False, locked: bool = False) -> Method:
    """A method as verification's ``status`` lists it."""
    return Method.of({"method_id": method_id, "method_type": "authenticator_app", "push": push,
                      "locked": locked, "label": "Microsoft Authenticator", "default": False,
                      "channel": "push" if push else "app", "takes_code": not push,
                      "code_length": None if push else 6})


def phone(method_id: str, channel: str, masked: str = "+1 ••• ••• 0142",
          locked: bool = False) -> Method:
    return Method.of({"method_id": method_id, "method_type": "phone", "channel": channel,
                      "masked_phone": masked, "label": "Phone", "locked": locked,
                      "takes_code": channel == "sms", "code_length": 6 if channel == "sms" else None})


@pytest.mark.parametrize(("stage", "must_enroll", "page"), [
    (None, False, "/sign-in"),
    ("change_password", False, "/password/new"),
    ("password", True, "/security-info"),
    ("password", False, "/sign-in/verify"),
    ("mfa", False, "/agreement"),
    ("portal", False, "/home"),
    ("agent", False, "/console"),
])
def test_each_stage_leads_to_its_page(stage, must_enroll, page):
    assert next_page(session(stage=stage, must_enroll=must_enroll)) == page


def test_no_session_leads_to_sign_in():
    assert next_page(None) == "/sign-in"


def test_progress_marks_the_current_step_of_the_flow():
    shown = progress("phone", "Check the phone")
    assert shown == {"steps": ["Phone number", "Check the phone", "Done"], "current": 1,
                     "method_title": "Phone"}
    assert progress("app", "Get the app")["current"] == 0
    with pytest.raises(ValueError):
        progress("other-app", "Get the app")  # not a step of that flow


@pytest.mark.parametrize(("typed", "length", "code"), [
    ("123456", 6, "123456"),
    ("123 456", 6, "123456"),  # as the app groups it
    ("12345", 6, None),
    ("1234567", 6, None),
    ("12345a", 6, None),
    ("١٢٣٤٥٦", 6, None),  # digits, but not ASCII ones
    ("12345678", 8, "12345678"),  # the length verification says, not a copy of it
    ("123456", None, None),  # a step that takes no code
])
def test_a_code_is_the_digits_verification_asked_for(typed, length, code):
    assert typed_code({"code": typed}, length) == code


def test_a_finished_set_up_moves_to_mfa_and_forgets_the_set_up():
    s = session(stage="password", must_enroll=True, password_token="p",
                phone=Challenge(challenge_id="c"),
                registration=Registration(flow="app", method_id="m", otpauth_uri="otpauth://x",
                                          account_name="pat", secret_key="K"))
    registered(s, {"mfa_token": "t", "default_label": "Phone"}, "Call answered.")
    assert (s.stage, s.mfa_token, s.must_enroll) == ("mfa", "t", False)
    assert s.phone is None and s.registration is None
    assert s.registered is not None
    assert (s.registered.default_label, s.registered.message) == ("Phone", "Call answered.")
    assert next_page(s) == "/agreement"


def test_a_reply_keeps_only_what_a_page_needs():
    kept = Challenge.of({"challenge_id": "c", "kind": "sms", "channel": "sms", "takes_code": True,
                         "code_length": 6, "mfa_token": "secret", "code": "1"})
    assert (kept.challenge_id, kept.channel, kept.takes_code, kept.code_length) == \
        ("c", "sms", True, 6)
    assert not hasattr(kept, "mfa_token") and not hasattr(kept, "code")


def test_signing_out_forgets_the_tokens():
    store = SessionStore(idle_seconds=60, absolute_seconds=600, clock=ManualClock())
    s = store.new()
    s.stage, s.username, s.password_token, s.mfa_token = "mfa", "pat", "p", "m"
    s.methods = [app("a")]
    store.drop(s)
    assert (s.stage, s.username, s.password_token, s.mfa_token, s.methods) == \
        (None, None, None, None, [])
    assert store.get(s.id) == (None, False)


def test_a_session_idle_too_long_ends_and_says_it_timed_out():
    clock = ManualClock()
    store = SessionStore(idle_seconds=60, absolute_seconds=600, clock=clock)
    s = store.new()
    s.username = "pat"
    for _ in range(3):  # activity keeps it alive past one idle period
        clock.advance(50)
        assert store.get(s.id) == (s, False)
    clock.advance(61)
    assert store.get(s.id) == (None, True)


def test_an_active_session_still_ends_at_its_absolute_lifetime():
    clock = ManualClock()
    store = SessionStore(idle_seconds=60, absolute_seconds=600, clock=clock)
    s = store.new()
    for _ in range(10):
        clock.advance(55)
        assert store.get(s.id)[0] is s
    clock.advance(55)  # 605 s after it began, 55 s after it was last used
    assert store.get(s.id) == (None, False)  # nobody had signed in: no "timed out" notice


def labels(s: Session) -> list[tuple[str, str, str]]:
    return [(w["method_id"], w["way"], w["label"]) for w in _ways(s)]


def test_other_ways_offer_the_other_methods_but_not_the_current_one():
    s = session(method_id="text", methods=[phone("text", "sms"), phone("call", "call"),
                                           app("app", push=True)])
    assert labels(s) == [
        ("call", "challenge", "Call +1 ••• ••• 0142"),
        ("app", "challenge", "Approve a request on my Microsoft Authenticator app"),
        ("app", "code", "Use a verification code from my authenticator app"),
    ]


def test_an_app_sent_a_notification_also_offers_its_code():
    s = session(method_id="app", challenge=Challenge(method_id="app", kind="push", channel="push"),
                methods=[app("app", push=True)])
    assert labels(s) == [("app", "code", "Use a verification code from my authenticator app")]


def test_an_app_already_asking_for_its_code_offers_nothing_more():
    s = session(method_id="app", challenge=Challenge(method_id="app", kind="totp", channel="app",
                                                     takes_code=True, code_length=6),
                methods=[app("app", push=True)])
    assert _ways(s) == []


def test_an_app_without_notifications_offers_only_its_code():
    s = session(method_id="text", methods=[phone("text", "sms"), app("app")])
    assert labels(s) == [("app", "code", "Use a verification code from my authenticator app")]


def test_locked_methods_are_not_offered():
    s = session(method_id="app", methods=[app("app", push=True),
                                          phone("text", "sms", locked=True)])
    assert _ways(s) == []


def test_a_phone_without_a_masked_number_is_named_my_phone():
    s = session(method_id="app", methods=[app("app"), phone("text", "sms", masked="")])
    assert labels(s) == [("text", "challenge", "Text my phone")]

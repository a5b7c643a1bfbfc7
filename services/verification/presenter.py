"""What people read and hear: prompts, messages, the text's body, the calls' TwiML, the QR code.

The rules live in the domain and the method families; this module only words their outcomes,
so a change of wording never touches a rule.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from services.verification.domain import CALL, PUSH, SMS, Method

STATUS_MESSAGES = {
    (PUSH, "verified"): "Notification approved",
    (CALL, "verified"): "Call answered. Your phone was registered successfully.",
    (SMS, "verified"): "Code accepted.",
    (PUSH, "denied"): "The request was denied on your device.",
    (PUSH, "failed"): "Too many wrong numbers: this request is closed. Try again.",
}
# How a step that ended unanswered is told, on the page that waits for it.
CALL_SETUP_ENDED = {
    "expired": "The call has expired.",
    "failed": "The call was not answered with the # key.",
    "superseded": "A newer call or code replaced this one.",
}
SIGN_IN_ENDED = {
    "denied": "The request was denied on your device.",
    "expired": "This request has expired.",
    "failed": "This request did not succeed.",
    "superseded": "A newer request replaced this one.",
}
# A sign-in's push that ended: what happened, and what to do next (the page offers both).
PUSH_SIGN_IN_ENDED = {
    "denied": "The request was denied on your device. Send a new request, or sign in another way. "
              "If you did not deny it, tell your help desk.",
    "failed": "The number entered in your app was wrong too many times, so this request is "
              "closed. Send a new request, or sign in another way.",
    "expired": "This request has expired. Send a new request, or sign in another way.",
}
APP_CODE_PROMPT = "Enter the code shown in your authenticator app."
PUSH_PROMPT = "Approve the notification we're sending to your app by entering the number shown below."
PUSH_DENIED = "Denied. Your help desk's security team is told."
PUSH_APPROVED = "Approved."


def status_message(kind: str, state: str, purpose: str) -> str:
    """What the page waiting on a challenge says of its state (the portal shows it as is)."""
    if purpose == "sign_in" and kind == PUSH and state in PUSH_SIGN_IN_ENDED:
        return PUSH_SIGN_IN_ENDED[state]
    if purpose == "sign_in" and state in SIGN_IN_ENDED:
        return SIGN_IN_ENDED[state]
    if kind == CALL and state in CALL_SETUP_ENDED:
        return CALL_SETUP_ENDED[state]
    return STATUS_MESSAGES.get((kind, state), state.capitalize())


def wrong_code_message(method: Method, lock_after: int) -> str:
    if method.locked:
        return "Too many wrong codes: this method is now locked. Call the help desk."
    left = lock_after - method.failures
    tries = "1 try" if left == 1 else f"{left} tries"
    return f"That code is not right, or it was already used. {tries} left before the method locks."


def code_format_message(digits: int) -> str:
    return f"A code has {digits} digits."


def wrong_number_message(closed: bool) -> str:
    if closed:
        return "That number is not the one shown. The request is closed; try signing in again."
    return "That number is not the one shown on the sign-in screen. Try again."


def push_limited_message(window_minutes: int) -> str:
    return (
        "Too many sign-in requests were sent to your app. Wait "
        f"{window_minutes} minutes and try again, or type the code your app shows instead."
    )


def qr_svg(uri: str) -> str:
    """The QR code of the ``otpauth://`` URI, inline SVG for the setup page."""
    import segno  # here: only an app's set-up draws one

    return str(segno.make(uri, error="m").svg_inline(scale=4))


# --- texts and calls ----------------------------------------------------------------------------
def sms_body(code: str, portal: str, minutes: int) -> str:
    return (f"{code} is your {portal} verification code. It expires in {minutes} minutes. "
            "Do not share it.")


def reset_notice_sms(portal: str, helpdesk: str) -> str:
    return (f"{portal}: a reset of your sign-in methods was approved. If this wasn't you, cancel "
            f"it with the link we emailed you, or call {helpdesk}.")


def sms_prompt(masked_phone: str, digits: int) -> str:
    return f"We texted a {digits}-digit code to {masked_phone}. Enter it below."


def read_code_twiml(code: str, portal: str) -> str:
    spoken = ", ".join(code)
    return (f"<Response><Say>Your {escape(portal)} verification code is {spoken}. "
            f"Again: {spoken}.</Say></Response>")


def read_code_prompt(masked_phone: str) -> str:
    return f"We are calling {masked_phone}. Enter the code the call reads out."


def press_pound_prompt(masked_phone: str) -> str:
    return f"We are calling {masked_phone}. Answer the call and press the # key."


def gather_twiml(action_url: str, portal: str) -> str:
    """The call that asks for the pound key; the key press is posted to ``action_url``."""
    return (
        f'<Response><Gather numDigits="1" action="{escape(action_url)}" method="POST" timeout="10">'
        f"<Say>This is the {escape(portal)}. If you are setting up or signing in, press the pound "
        "key now. If not, hang up.</Say></Gather><Say>We did not get a key press. Goodbye.</Say>"
        "</Response>"
    )


NO_LONGER_VALID_TWIML = (
    "<Response><Say>This request is no longer valid. Goodbye.</Say><Hangup/></Response>"
)
PHONE_VERIFIED_TWIML = "<Response><Say>Thank you. Your phone is verified. Goodbye.</Say></Response>"
NOT_POUND_TWIML = "<Response><Say>That was not the pound key. Goodbye.</Say></Response>"


def call_back_twiml(action_url: str, organisation: str) -> str:
    """The help desk's call-back to the phone on file: press # if you asked for the reset."""
    return (
        f'<Response><Gather numDigits="1" action="{escape(action_url)}" method="POST" timeout="10">'
        f"<Say>This is the {escape(organisation)} help desk, calling the number on file about a "
        "request to reset your sign-in methods. If you asked for it and are talking to the help "
        "desk, press the pound key now. If not, hang up and call the help desk.</Say></Gather>"
        "<Say>We did not get a key press. Goodbye.</Say></Response>"
    )


CALL_BACK_THANKS_TWIML = (
    "<Response><Say>Thank you. The help desk can see that you answered. Goodbye.</Say></Response>"
)

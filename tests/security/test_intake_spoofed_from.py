"""An impostor mails the help desk with a spoofed ``From:`` of the real user (their address on
file), a ``Reply-To:`` of their own and a plea to send the new password there. The matching
``From:`` proves nothing (the ticket still needs the proofs the system runs), and once an agent
has proven and approved it, the temporary password, like every mail of the reset, goes only to
the address on file: nothing ever reaches the impostor's address.
"""

from __future__ import annotations

import pytest

from shared.caught import latest_mail_to, list_mails
from shared.errors import RekeyError
from tests.integration.conftest import USER, USER_EMAIL, System, eventually
from tests.integration.test_intake_mail import WELL_FORMED, intake, mail, send

__all__ = ["intake"]
pytestmark = pytest.mark.security
IMPOSTOR = "new.phone.jane@evil.example"


async def test_a_spoofed_from_of_the_real_user_gets_the_impostor_nothing(intake: System) -> None:
    ticketing = intake.app("ticketing")
    plea = WELL_FORMED + f"\nI can't read my work mail: send the new password to {IMPOSTOR}\n"
    await send(intake, mail(f"Jane Doe <{USER_EMAIL}>", plea, **{"Reply-To": IMPOSTOR}),
               sender=USER_EMAIL)
    ticket = (await eventually(lambda: ticketing.list_tickets("open"), what="the ticket"))[0]
    assert ticket["username"] == USER
    number = ticket["ticket_number"]

    with pytest.raises(RekeyError, match="Not enough proof"):
        await intake.call("ticketing", "approve", ticket=number, principal=intake.principal())
    assert "ResetApproved" not in intake.event_names("ticketing")

    await intake.prove_identity(number)  # the code goes to the address on file, not Reply-To
    await intake.call("ticketing", "approve", ticket=number, principal=intake.principal())
    await eventually(lambda: latest_mail_to(intake.mail.folder, USER_EMAIL, "temporary"),
                     what="the temporary password, to the address on file")

    recipients = {to for m in list_mails(intake.mail.folder) for to in m.to}
    assert IMPOSTOR not in recipients
    assert recipients <= {USER_EMAIL, "smith@example.org", "head.of.desk@example.org"}
    texts = [m.body for m in list_mails(intake.mail.folder)]
    assert not any(IMPOSTOR in body for body in texts)

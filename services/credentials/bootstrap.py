"""Wiring of the credentials service, including the temporary password's secure email."""

from __future__ import annotations

from services.credentials import commands as c
from services.credentials.agents import Invitation
from services.credentials.application import CredentialsApplication, Delivery, Notice
from services.credentials.notices import invitation_mail, notice_mail, temporary_password_mail
from shared.bus.rpc import Endpoint
from shared.clock import Clock
from shared.effects import SideEffects
from shared.health import smtp_check
from shared.indexes import backfill
from shared.mailer import Mailer
from shared.runtime import Wiring
from shared.settings import Settings
from shared.sweeps import advanced

__all__ = ["build", "temporary_password_mail"]


def build(settings: Settings, mailer: Mailer | None = None, *, clock: Clock | None = None) -> Wiring:
    mailer = mailer or Mailer(settings)  # refuses mail in clear to a remote host: before any store
    app = CredentialsApplication(settings, clock=clock)

    async def send_password(delivery: Delivery) -> str | None:
        return await mailer.send_with_retries(
            temporary_password_mail(mailer, delivery, settings.portal_name,
                                    f"{settings.portal_base_url}/sign-in", settings.helpdesk_contact)
        )

    async def send_notice(notice: Notice) -> str | None:
        return await mailer.send_with_retries(notice_mail(mailer, notice, settings))

    # Intent recorded (PasswordIssued / NoticeIntended) -> send -> Sent or Failed recorded.
    passwords = SideEffects(
        "temporary password", send_password, app.mark_delivered, pending=app.delivery_pending
    )
    notices = SideEffects("notice", send_notice, app.mark_notice, pending=app.notice_pending)
    app.send_temporary_password = passwords.later
    app.send_notice = notices.later

    async def send_invitation(invitation: Invitation) -> str | None:
        return await mailer.send_with_retries(invitation_mail(mailer, invitation, settings))

    invitations = SideEffects("agent invitation", send_invitation, app.mark_invitation,
                              pending=app.invitation_pending)
    app.send_invitation = invitations.later

    return Wiring(
        on_close=[mailer.close],  # its kept SMTP connections
        name="credentials",
        app=app,
        endpoints={
            "register_account": Endpoint(c.RegisterAccount, app.register_account),
            "sign_in": Endpoint(c.SignIn, app.sign_in),
            "change_password": Endpoint(c.ChangePassword, app.change_password),
            "unlock": Endpoint(c.UnlockAccount, app.unlock),
            "account": Endpoint(c.AccountRef, app.account_status, spread=True),
            "session_check": Endpoint(c.CheckSession, app.session_check),
            # help-desk agents: invitations (operator) and the second sign-in step (agents.py)
            "invite_agent": Endpoint(c.InviteAgent, app.invite_agent),
            "list_agents": Endpoint(c.OperatorOnly, app.list_agents),
            "revoke_agent_factor": Endpoint(c.RevokeAgentFactor, app.revoke_agent_factor),
            "end_agent_sessions": Endpoint(c.EndAgentSessions, app.end_agent_sessions),
            "invitation": Endpoint(c.InvitationRef, app.invitation),
            "begin_invitation": Endpoint(c.BeginInvitation, app.begin_invitation),
            "redeem_invitation": Endpoint(c.RedeemInvitation, app.redeem_invitation),
            "agent_passkey_options": Endpoint(c.PasskeyOptions, app.agent_passkey_options),
            "agent_passkey_verify": Endpoint(c.PasskeyAssertion, app.agent_passkey_verify),
            "agent_totp_verify": Endpoint(c.AuthenticatorCode, app.agent_totp_verify),
        },
        handlers={
            ("ticketing", "ResetApproved"): app.on_reset_approved,
            ("ticketing", "ResetScheduled"): app.on_reset_scheduled,
            ("verification", "MethodRegistered"): app.on_methods_changed,
            ("verification", "MethodsRevoked"): app.on_methods_changed,
            ("verification", "MethodRemoved"): app.on_methods_changed,
            ("verification", "DefaultMethodChanged"): app.on_methods_changed,
        },
        # Before the consumer runs. A password still being sent at the last stop existed only
        # in memory: the sweep issues a fresh one (see reissue_undelivered).
        startup=[
            backfill(app.backfill_indexes),  # first: the sweeps read the accounts log
            passwords.sweep(app.reissue_undelivered),
            notices.sweep(app.unsent_notices),
            invitations.sweep(app.reinvite_undelivered),
            advanced(app.sweeps),  # last: the next start reads only what changed after
        ],
        background=[passwords.run, notices.run, invitations.run, app.sweeps.keep_up],
        dependencies=[smtp_check(settings)],
    )

"""Commands the credentials service accepts over the bus."""

from __future__ import annotations

from typing import Literal

from pydantic import EmailStr, Field, model_validator

from shared.commands import USERNAME, Command
from shared.contracts.client import ClientContext
from shared.idempotency import IdempotencyKey

PASSWORD = Field(min_length=1, max_length=1024)


class RegisterAccount(Command):
    username: str = USERNAME
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    role: str = Field("user", pattern="^(user|agent)$")
    password: str | None = Field(None, max_length=1024, description="Initial password (agents)")
    principal: str = Field(min_length=1, max_length=4096,
                           description="The operator's signed principal (accounts are provisioned)")
    privileged: bool = Field(False, description="Needs the privileged identity-proof policy")
    phone: str | None = Field(None, min_length=1, max_length=40,
                              description="Phone on file, for call-backs (E.164, or national "
                              "with phone_country)")
    phone_country: str = Field("US", min_length=2, max_length=2,
                               description="Region a national phone number is read in")
    manager_email: EmailStr | None = Field(None, description="The manager on file, who may "
                                           "approve a reset through a signed link")
    idempotency_key: IdempotencyKey = None


class SignIn(Command):
    username: str = USERNAME
    password: str = PASSWORD
    channel: Literal["portal", "console", "cli"] = Field(
        "portal", description="Where the person signs in; an agent's principal names it"
    )
    client: ClientContext | None = Field(
        None, description="The web client (address through trusted proxies, user agent)"
    )


class ChangePassword(Command):
    """The current password proves who asks; after a sign-in with a temporary password, the
    ``change_token`` that sign-in returned does, so the web edge need not keep the password."""

    username: str = USERNAME
    current_password: str | None = Field(None, min_length=1, max_length=1024)
    change_token: str | None = Field(None, min_length=1, max_length=2048)
    new_password: str = PASSWORD
    client: ClientContext | None = None

    @model_validator(mode="after")
    def one_proof(self) -> ChangePassword:
        if (self.current_password is None) == (self.change_token is None):
            raise ValueError("give either the current password or the change token")
        return self


class AccountRef(Command):
    username: str = USERNAME


class UnlockAccount(Command):
    username: str = USERNAME
    principal: str = Field(min_length=1, max_length=4096,
                           description="The acting agent's signed principal")
    reason: str = Field("sign-in delay reset by the help desk", min_length=1, max_length=500)


class CheckSession(Command):
    """Is a sign-in the portal keeps still current (not from before the user's last reset)?
    The first step's token proves it: credentials signed it, at the sign-in."""

    username: str = USERNAME
    token: str | None = Field(None, min_length=1, max_length=4096,
                              description="The password or password_change step's token")
    stage: Literal["password", "password_change"] = "password"
    principal: str | None = Field(None, min_length=1, max_length=4096,
                                  description="An agent's principal, for a console session")

    @model_validator(mode="after")
    def one_proof(self) -> CheckSession:
        if (self.token is None) == (self.principal is None):
            raise ValueError("give either the sign-in token or the agent's principal")
        return self


# --- help-desk agents: invitations and second factors ----------------------------------------
INVITATION = Field(min_length=16, max_length=200, description="The secret of an invitation link")
FACTOR_TYPE = Field(pattern="^(passkey|totp)$", description="passkey (or security key), or totp")
STAGE_TOKEN = Field(min_length=1, max_length=4096,
                    description="The token the step before returned (the password's, or a challenge's)")
CREDENTIAL = Field(min_length=2, max_length=16_384,
                   description="The browser's PublicKeyCredential, as JSON")
CODE = Field(min_length=6, max_length=10, description="The authenticator app's code")
CHANNEL = Field("console", description="Where the agent signs in")


class InviteAgent(Command):
    """Register a help-desk agent without a password (or re-invite one) and mail the link."""

    username: str = USERNAME
    email: EmailStr | None = Field(None, description="Address on file (needed for a new agent)")
    display_name: str | None = Field(None, min_length=1, max_length=200)
    principal: str = Field(min_length=1, max_length=4096, description="The operator's signed principal")
    idempotency_key: IdempotencyKey = None


class InvitationRef(Command):
    """What the invitation page shows, if the invitation can still be redeemed."""

    invitation: str = INVITATION


class BeginInvitation(Command):
    """A passkey's registration options, or a new authenticator app's key."""

    invitation: str = INVITATION
    factor_type: str = FACTOR_TYPE


class RedeemInvitation(Command):
    """Set the agent's password and enrol the factor begun with ``BeginInvitation``."""

    invitation: str = INVITATION
    password: str = PASSWORD
    factor_type: str = FACTOR_TYPE
    challenge_token: str | None = Field(None, min_length=1, max_length=4096,
                                        description="A passkey's: what begin_invitation returned")
    credential: str | None = Field(None, min_length=2, max_length=16_384,
                                   description="A passkey's: the browser's credential, as JSON")
    code: str | None = Field(None, min_length=6, max_length=10, description="A TOTP factor's code")

    @model_validator(mode="after")
    def proof_of_factor(self) -> RedeemInvitation:
        needs = {"passkey": ("the browser's credential", self.challenge_token and self.credential),
                 "totp": ("the authenticator app's current code", self.code)}
        what, given = needs[self.factor_type]
        if not given:
            raise ValueError(f"enrolling a {self.factor_type} needs {what}")
        return self


class PasskeyOptions(Command):
    """The options of ``navigator.credentials.get`` for the agent whose password was right."""

    token: str = STAGE_TOKEN


class PasskeyAssertion(Command):
    """The browser's answer to those options: the principal, if it is the agent's key."""

    challenge_token: str = STAGE_TOKEN
    credential: str = CREDENTIAL
    channel: Literal["console", "cli"] = CHANNEL


class AuthenticatorCode(Command):
    """A code from the agent's authenticator app, after the right password."""

    token: str = STAGE_TOKEN
    code: str = CODE
    channel: Literal["console", "cli"] = CHANNEL


class OperatorOnly(Command):
    """A query only the operator may make."""

    principal: str = Field(min_length=1, max_length=4096, description="The operator's signed principal")


class EndAgentSessions(Command):
    """End every sign-in an agent has now (a session thought stolen); the agent signs in again."""

    username: str = USERNAME
    reason: str = Field("ended by the operator", min_length=1, max_length=500)
    principal: str = Field(min_length=1, max_length=4096, description="The operator's signed principal")


class RevokeAgentFactor(Command):
    """Remove a lost or stolen second factor (the operator's)."""

    username: str = USERNAME
    factor_id: str = Field(min_length=1, max_length=64)
    reason: str = Field("revoked by the operator", min_length=1, max_length=500)
    principal: str = Field(min_length=1, max_length=4096, description="The operator's signed principal")

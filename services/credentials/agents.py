"""Help-desk agents' second factors: invitations, passkeys and authenticator codes.

An agent's right password is only half a sign-in: ``sign_in`` answers with a short-lived
``agent_mfa`` token, and only a passkey (or security key) assertion or an authenticator code
checked here turns it into a principal, whose ``amr`` names the factors passed; every service
refuses an agent principal without a second factor (``shared.principals``).

An operator invites an agent: the invitation's secret exists only in the mailed link (events
hold a digest of it); redeeming it sets the agent's password and enrols the first factor, and
spends it. TOTP seeds are in the vault (sealed, beside the store), never in an event.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.credentials import commands as c
from services.credentials.domain import (
    AMR,
    CODE_REFUSED,
    NOT_VALID,
    PASSKEY,
    PASSKEY_REFUSED,
    TOTP,
    Account,
    AgentInvitation,
    InvitationNotValid,
    SecondFactorRefused,
)
from services.credentials.passwords import hash_password
from services.verification.totp import matching_step, new_seed, provisioning_uri, readable_key
from shared import passkeys
from shared.clock import Clock
from shared.errors import AuthenticationFailed, Conflict, InvalidRequest
from shared.indexes import AggregateLog
from shared.masking import mask_email
from shared.principals import PASSWORD_FACTOR, PrincipalCheck, PrincipalIssuer
from shared.secrets import Vault
from shared.settings import Settings
from shared.sweeps import Sweeps
from shared.tokens import TokenKeys, issue_token, verify_token

log = logging.getLogger(__name__)

AGENT_MFA_SECONDS = 300  # from the right password to the second factor
NO_FACTOR = ("No second factor is set up for this agent yet. Redeem your invitation, or ask an "
             "operator for a new one.")
INVITE_PATH = "/console/invite/"


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def factor_binding(account: Account) -> str:
    """Ties a second-factor token to the password in force: a new password ends it."""
    return "agent-mfa:" + hashlib.sha256((account.password_hash or "").encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Invitation:
    """An invitation to mail. The link (with its secret) exists only in memory until sent."""

    username: str
    email: str
    display_name: str
    link: str = field(repr=False)
    expires_at: datetime
    intent_id: str  # the secret's digest, not the secret


class AgentFactors:
    """The agent part of ``CredentialsApplication`` (mixed in; it provides what is annotated)."""

    settings: Settings
    clock: Clock
    vault: Vault
    principals: PrincipalCheck
    vouch: PrincipalIssuer
    token_keys: TokenKeys
    all_accounts: AggregateLog
    sweeps: Sweeps
    repository: Any
    send_invitation: Callable[[Invitation], None]
    save: Callable[..., Any]
    find: Callable[..., Any]
    reset_mark: Callable[[str], Any]
    _account: Callable[[str], Account | None]
    _existing: Callable[[str], Account]
    _check_rules: Callable[[str, str], None]
    _fail: Callable[[Account, str, datetime], None]

    # --- invitations -----------------------------------------------------------------------
    def invite_agent(self, cmd: c.InviteAgent) -> dict[str, Any]:
        operator = self.principals.verify(cmd.principal, "operator")
        answered = self.idempotency.replay("invite_agent", cmd)
        if answered is not None:  # a retry: the first invitation stands, no second link or mail
            return answered
        account = self._account(cmd.username)
        new = account is None
        if account is None:
            if cmd.email is None or not cmd.display_name:
                raise InvalidRequest("A new agent needs an email address and a display name.")
            account = Account(username=cmd.username, email=str(cmd.email),
                              display_name=cmd.display_name, role="agent", actor=operator.name)
        account.check_agent()
        invitation, index = self._invitation(account, operator.name)
        answer = {"username": account.username, "email": mask_email(account.email),
                  "expires_at": invitation.expires_at.isoformat(), "registered": new}
        self.save(account, index, *([self.all_accounts.entry(account.id)] if new else []),
                  *self.idempotency.record("invite_agent", cmd, answer))
        self.send_invitation(invitation)
        return answer

    def _invitation(self, account: Account,
                    actor: str) -> tuple[Invitation, AgentInvitation]:
        secret = secrets.token_urlsafe(32)
        digest = digest_of(secret)
        expires_at = self.clock.now() + timedelta(hours=self.settings.agent_invitation_hours)
        account.invite(digest, expires_at, actor)
        invitation = Invitation(account.username, account.email, account.display_name,
                                self.settings.portal_base_url + INVITE_PATH + secret, expires_at, digest)
        return invitation, AgentInvitation(digest, account.username)

    def invitation_pending(self, invitation: Invitation) -> bool:
        account = self._existing(invitation.username)
        return bool(account.invitation and account.invitation["digest"] == invitation.intent_id
                    and account.invitation["delivery_pending"])

    def mark_invitation(self, invitation: Invitation,
                        failure: str | None) -> None:
        account = self._existing(invitation.username)
        if failure is None:
            account.mark_invitation_sent(mask_email(invitation.email))
        else:
            account.mark_invitation_failed(failure)
        self.save(account)

    def reinvite_undelivered(self) -> list[Invitation]:
        """After a crash between inviting and mailing, invite afresh: the old link never left."""
        found = []
        for account in self.readable(self.sweeps.touched()):
            if account.invitation and account.invitation["delivery_pending"]:
                invitation, index = self._invitation(account, "system")
                self.save(account, index)
                found.append(invitation)
        return found

    def _invited(self, secret: str) -> Account:
        """The account an unspent, unexpired invitation is for; else a refusal in words."""
        digest = digest_of(secret)
        index = self.find(AgentInvitation.create_id(digest))
        if index is None:
            raise InvitationNotValid(NOT_VALID)
        account = self._existing(index.username)
        account.check_invitation(digest, self.clock.now())
        return account

    def invitation(self, cmd: c.InvitationRef) -> dict[str, Any]:
        """What the invitation page shows."""
        account = self._invited(cmd.invitation)
        return {"username": account.username, "display_name": account.display_name,
                "expires_at": account.invitation["expires_at"].isoformat() if account.invitation else None}

    def begin_invitation(self, cmd: c.BeginInvitation) -> dict[str, Any]:
        """A passkey's registration options, or a new authenticator app's key (in the vault)."""
        account = self._invited(cmd.invitation)
        binding = f"invitation:{digest_of(cmd.invitation)}"
        if cmd.factor_type == PASSKEY:
            options, challenge = passkeys.registration_options(
                passkeys.RelyingParty.of(self.settings), account.username, account.display_name,
                account.id.bytes, [f["credential_id"] for f in account.factors_of(PASSKEY).values()],
            )
            token = issue_token(self.token_keys, account.username, "agent_mfa", AGENT_MFA_SECONDS,
                                bound_to=f"{binding}:{challenge}")
            return {"factor_type": PASSKEY, "options": options, "challenge_token": token}
        pending = self._pending_ref(account, cmd.invitation)
        seed = (self.vault.get(pending) or b"").decode()
        if not seed:  # the same key on every showing of the page: the app scanned it once
            seed = new_seed()
            self.vault.put(pending, seed.encode())
        uri = provisioning_uri(seed, account.username, f"{self.settings.portal_name} help desk")
        return {"factor_type": TOTP, "otpauth_uri": uri, "secret_key": readable_key(seed),
                "account_name": account.username}

    def redeem_invitation(self, cmd: c.RedeemInvitation) -> dict[str, Any]:
        """Set the password, enrol the factor and spend the invitation, in one save."""
        account = self._invited(cmd.invitation)
        self._check_rules(cmd.password, account.username)
        factor_id = f"{cmd.factor_type}-{secrets.token_hex(4)}"
        if cmd.factor_type == PASSKEY:
            credential = passkeys.parsed(cmd.credential or "", PASSKEY_REFUSED)
            challenge = passkeys.challenge_of(credential, PASSKEY_REFUSED)
            verify_token(self.token_keys, cmd.challenge_token or "", "agent_mfa", account.username,
                         bound_to=f"invitation:{digest_of(cmd.invitation)}:{challenge}")
            new = passkeys.verified_registration(passkeys.RelyingParty.of(self.settings), credential,
                                                 challenge)
            if any(f["credential_id"] == new.credential_id for f in account.factors.values()):
                raise Conflict("This passkey is already registered.")
            account.enrol_factor(factor_id, PASSKEY, "Passkey or security key", new.credential_id,
                                 new.public_key, new.sign_count)
        else:
            pending = self._pending_ref(account, cmd.invitation)
            seed = (self.vault.get(pending) or b"").decode()
            step = matching_step(seed, cmd.code or "", self.clock.time()) if seed else None
            if step is None:
                raise SecondFactorRefused(CODE_REFUSED)
            # Sealed under the factor's own reference before the save (a save that conflicts
            # and is tried again leaves only an unused row); the pending one goes after it.
            self.vault.put(self._seed_ref(account, factor_id), seed.encode())
            account.enrol_factor(factor_id, TOTP, "Authenticator app")
            account.use_code(factor_id, step)  # the code typed to enrol is spent too
        account.change_password(hash_password(cmd.password), "set when the invitation was redeemed",
                                actor=account.username)
        account.redeem(digest_of(cmd.invitation), cmd.factor_type)
        self.save(account)
        if cmd.factor_type == TOTP:
            self.vault.delete(self._pending_ref(account, cmd.invitation))
        return {"username": account.username, "factor_id": factor_id, "factor_type": cmd.factor_type}

    # --- sign-in's second step -------------------------------------------------------------
    def second_factor_due(self, account: Account, channel: str) -> dict[str, Any]:
        """What an agent's right password earns: a token for the second step, and its choices."""
        return {
            "token": issue_token(self.token_keys, account.username, "agent_mfa", AGENT_MFA_SECONDS,
                                 bound_to=factor_binding(account)),
            "factors": account.factor_types(),
            "message": None if account.factors else NO_FACTOR,
        }

    def _second_step(self, token: str) -> Account:
        """The agent whose right password issued ``token`` (the same password still in force)."""
        username = verify_token(self.token_keys, token, "agent_mfa")
        account = self._existing(username)
        verify_token(self.token_keys, token, "agent_mfa", username, bound_to=factor_binding(account))
        account.check_agent()
        account.check_not_delayed(self.clock.now())
        return account

    def agent_passkey_options(self, cmd: c.PasskeyOptions) -> dict[str, Any]:
        account = self._second_step(cmd.token)
        keys = [f["credential_id"] for f in account.factors_of(PASSKEY).values()]
        if not keys:
            raise AuthenticationFailed("No passkey is set up for this agent: use an authenticator code.")
        options, challenge = passkeys.authentication_options(passkeys.RelyingParty.of(self.settings), keys)
        token = issue_token(self.token_keys, account.username, "agent_mfa", AGENT_MFA_SECONDS,
                            bound_to=f"{factor_binding(account)}:{challenge}")
        return {"options": options, "challenge_token": token}

    def agent_passkey_verify(self, cmd: c.PasskeyAssertion) -> dict[str, Any]:
        credential = passkeys.parsed(cmd.credential, PASSKEY_REFUSED)
        challenge = passkeys.challenge_of(credential, PASSKEY_REFUSED)
        username = verify_token(self.token_keys, cmd.challenge_token, "agent_mfa")
        account = self._existing(username)
        verify_token(self.token_keys, cmd.challenge_token, "agent_mfa", username,
                     bound_to=f"{factor_binding(account)}:{challenge}")
        account.check_agent()
        account.check_not_delayed(self.clock.now())
        challenge_digest = passkeys.challenge_digest(challenge)
        account.check_challenge_unused(challenge_digest)
        factor_id = account.passkey_for(str(credential.get("id", "")))
        facts = account.factors[factor_id]
        try:
            count = passkeys.verified_sign_count(passkeys.RelyingParty.of(self.settings), credential,
                                                 challenge, facts["public_key"], int(facts["sign_count"]),
                                                 PASSKEY_REFUSED)
            account.check_sign_count(factor_id, count)
        except (SecondFactorRefused, passkeys.PasskeyRefused):
            self._fail(account, "passkey not accepted", self.clock.now())
            raise
        account.use_passkey(factor_id, count, challenge_digest)
        self.save(account)
        return self._principal_for(account, PASSKEY, cmd.channel)

    def agent_totp_verify(self, cmd: c.AuthenticatorCode) -> dict[str, Any]:
        account = self._second_step(cmd.token)
        now = self.clock.time()
        for factor_id in account.factors_of(TOTP):
            seed = (self.vault.get(self._seed_ref(account, factor_id)) or b"").decode()
            step = matching_step(seed, cmd.code, now) if seed else None
            if step is not None:
                try:
                    account.check_step_unused(factor_id, step)
                except SecondFactorRefused:
                    break  # a replayed code counts as a failure, like a wrong one
                account.use_code(factor_id, step)
                self.save(account)
                return self._principal_for(account, TOTP, cmd.channel)
        self._fail(account, "wrong authenticator code", self.clock.now())
        raise SecondFactorRefused(CODE_REFUSED)

    def _principal_for(self, account: Account, factor_type: str,
                       channel: str) -> dict[str, Any]:
        return {
            "username": account.username,
            "principal": self.vouch.issue(
                "agent", account.username, channel=channel,
                ttl_seconds=int(self.settings.principal_minutes * 60),
                amr=(PASSWORD_FACTOR, AMR[factor_type]),
            ),
        }

    # --- the operator's view ---------------------------------------------------------------
    def list_agents(self, cmd: c.OperatorOnly) -> list[dict[str, Any]]:
        self.principals.verify(cmd.principal, "operator")
        now = self.clock.now()
        agents = []
        for account in self.readable(self.all_accounts.ids()):
            if account.role != "agent":
                continue
            invitation = account.invitation
            agents.append({
                "username": account.username, "display_name": account.display_name,
                "email": mask_email(account.email), "has_password": bool(account.password_hash),
                "factors": [{"factor_id": i, "factor_type": f["factor_type"], "label": f["label"]}
                            for i, f in account.factors.items()],
                "invitation": None if invitation is None else (
                    "expired" if now >= invitation["expires_at"] else "open"),
                "delayed": account.is_delayed(now),
            })
        return agents

    def revoke_agent_factor(self, cmd: c.RevokeAgentFactor) -> dict[str, Any]:
        operator = self.principals.verify(cmd.principal, "operator")
        account = self._existing(cmd.username)
        account.check_agent()
        account.check_factor(cmd.factor_id)
        account.revoke_factor(cmd.factor_id, operator.name, cmd.reason)
        self.save(account, self.reset_mark(account.username))  # sign-ins made with it end
        self.vault.delete(self._seed_ref(account, cmd.factor_id))  # crypto-shred a TOTP seed
        return {"username": account.username, "factors": account.factor_types()}

    def end_agent_sessions(self, cmd: c.EndAgentSessions) -> dict[str, Any]:
        """A session thought stolen: every principal the agent holds stops counting, here at
        once and in ticketing as soon as it reads ``AgentSessionsEnded``."""
        operator = self.principals.verify(cmd.principal, "operator")
        account = self._existing(cmd.username)
        account.check_agent()
        account.end_sessions(operator.name, cmd.reason)
        self.save(account, self.reset_mark(account.username))
        return {"username": account.username}

    # --- the vault's references ------------------------------------------------------------
    @staticmethod
    def _seed_ref(account: Account, factor_id: str) -> str:
        return f"agent-totp:{account.id}:{factor_id}"

    @staticmethod
    def _pending_ref(account: Account, secret: str) -> str:
        return f"agent-totp-pending:{account.id}:{digest_of(secret)[:32]}"

"""Who may connect to the bus, and what each identity may publish and subscribe to.

This table is the whole policy of the bus. nats-server's ``authorization`` block is rendered
from it (:func:`authorization_block`), docs/architecture.md describes it, and tests/security
attack it. Anything not allowed here is refused by the server, so a stolen portal key cannot
create an agent, a rogue process cannot answer in a service's place, and nobody but a service
can publish that service's events.

Each identity gets its own reply inbox prefix (``_INBOX_<name>``): replies to one identity's
requests cannot be read by another, and a service answers requests only through
``allow_responses`` (the server lets it publish to the reply subject of a request it received,
once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.contracts.envelope import AUDIT_FEED_PREFIX, HEADS_STREAM, STREAM_NAME, SUBJECT_PREFIX
from shared.settings import AUDIT, SERVICES

RPC_PREFIX = "rekey.rpc"

# What the web portal may ask for: the user-facing and agent-facing endpoints, nothing else.
PORTAL_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "ticketing": (
        "request_reset", "list", "show", "start_proof", "answer_proof_code", "attest_id_check",
        "manager_request", "manager_decide", "approve", "reject", "close_review",
        "cancel_link", "cancel_reset",
    ),
    "credentials": (
        # not "account": it answers, without a sign-in, whether a username exists and what is
        # on file for it; the portal never needs that, and a compromised portal must not ask
        "sign_in", "change_password", "session_check",
        # an agent redeems an invitation and passes a second factor at sign-in
        "invitation", "begin_invitation", "redeem_invitation",
        "agent_passkey_options", "agent_passkey_verify", "agent_totp_verify",
    ),
    "verification": (
        "status", "start_app_registration", "verify_code", "start_push", "challenge_status",
        "start_phone_registration", "start_challenge", "resend_code", "set_default_method",
        "phone_countries", "security_info", "remove_method",
        "start_passkey_registration", "finish_passkey_registration", "verify_passkey",
    ),
    "consent": ("present", "accept", "decline", "status"),
}
# What an authenticator app on a phone may ask for: its own device API.
DEVICE_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "verification": ("device_activate", "device_pending", "device_respond"),
}
HISTORY_COMMAND = "history"
HEALTH_COMMAND = "health"
# What auditors ask the audit service (beyond `history`); the operator may not.
AUDIT_QUERIES = ("as_of", "count", "events", "manifest")
ERASE_COMMAND = "erase_user"  # destroy a user's data key (the operator only: rpc.>)
TREE_HEAD_COMMAND = "tree_head"  # sign and publish a Merkle tree head now (shared.evidence.heads)
HEADS_SUBJECTS = "rekey.heads.>"  # each service publishes its signed tree heads here


@dataclass(frozen=True)
class Identity:
    """One bus identity: what it may publish, what it may subscribe to, whether it answers."""

    name: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    responds: bool = False
    description: str = ""
    inbox_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inbox_prefix", inbox_prefix(self.name))

    def permissions(self) -> dict[str, Any]:
        publish: dict[str, Any] = {"allow": list(self.publish)}
        if self.publish_deny:
            publish["deny"] = list(self.publish_deny)
        permissions: dict[str, Any] = {
            "publish": publish,
            "subscribe": {"allow": list(self.subscribe)},
        }
        if self.responds:
            permissions["allow_responses"] = True
        return permissions


def inbox_prefix(identity: str) -> str:
    return f"_INBOX_{identity}"


def _rpc(commands: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    return tuple(f"{RPC_PREFIX}.{service}.{name}" for service, names in commands.items()
                 for name in names)


def _own_inbox(name: str) -> str:
    return f"{inbox_prefix(name)}.>"


def service_identity(service: str) -> Identity:
    """A service: its own events and consumer, its own commands, its own discovery subjects,
    and its own ``health`` (a container's healthcheck asks it with the service's own key)."""
    js = f"$JS.API.CONSUMER.%s.{STREAM_NAME}.{service}"
    return Identity(
        name=service,
        publish=(
            f"{SUBJECT_PREFIX}.{service}.>",
            f"{RPC_PREFIX}.{service}.{HEALTH_COMMAND}",
            f"rekey.heads.{service}",
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{STREAM_NAME}",
            f"$JS.API.STREAM.CREATE.{STREAM_NAME}",
            f"$JS.API.STREAM.INFO.{HEADS_STREAM}",  # its tree heads go into the heads stream
            f"$JS.API.STREAM.CREATE.{HEADS_STREAM}",
            js % "CREATE",
            (js % "CREATE") + ".>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM_NAME}.{service}",
            js % "INFO",
            js % "MSG.NEXT",
            f"$JS.ACK.{STREAM_NAME}.{service}.>",
        ),
        subscribe=(
            f"{RPC_PREFIX}.{service}.>",
            "$SRV.PING", "$SRV.INFO", "$SRV.STATS",
            f"$SRV.*.{service}", f"$SRV.*.{service}.>",
            _own_inbox(service),
        ),
        responds=True,
        description=f"the {service} service",
    )


def audit_identity() -> Identity:
    """The audit service: a service like the others (it consumes every service's events) that
    also publishes its live feed (signed) for auditors and SIEM forwarders."""
    service = service_identity(AUDIT)
    heads = f"$JS.API.CONSUMER.%s.{HEADS_STREAM}.{AUDIT}"
    return replace(
        service,
        # the feed; and deleting an erased user's messages from the stream (the only identity
        # that may: services.audit.stream_erasure)
        publish=(*service.publish, f"{AUDIT_FEED_PREFIX}.>",
                 f"$JS.API.STREAM.MSG.DELETE.{STREAM_NAME}",
                 f"$JS.API.STREAM.MSG.GET.{STREAM_NAME}",  # reading back what it consumed
                 *(heads % action for action in ("CREATE", "INFO", "MSG.NEXT")),
                 (heads % "CREATE") + ".>",
                 f"$JS.API.CONSUMER.DURABLE.CREATE.{HEADS_STREAM}.{AUDIT}",
                 f"$JS.ACK.{HEADS_STREAM}.{AUDIT}.>"),
        # every service's signed tree heads, through its durable consumer of the heads stream
        subscribe=service.subscribe,
        description="the audit service: reads every service's events, answers auditors",
    )


def _caller(name: str, publish: tuple[str, ...], description: str,
            deny: tuple[str, ...] = (), subscribe: tuple[str, ...] = ()) -> Identity:
    return Identity(name=name, publish=publish, subscribe=(*subscribe, _own_inbox(name)),
                    publish_deny=deny, description=description)


PORTAL = _caller(
    "portal",
    (*_rpc(PORTAL_COMMANDS), "$SRV.INFO.verification"),  # which sign-in methods are served
    "the web portal (users and agents)",
)
DEVICE = _caller("device", _rpc(DEVICE_COMMANDS), "the reference authenticator app")
OPERATOR = _caller(
    "operator",
    (f"{RPC_PREFIX}.>", "$SRV.>", "$JS.API.INFO", f"$JS.API.STREAM.INFO.{STREAM_NAME}",
     f"$JS.API.CONSUMER.INFO.{STREAM_NAME}.*"),
    "the operator's and help desk's command line",
    deny=(f"{RPC_PREFIX}.*.{HISTORY_COMMAND}", *_rpc({AUDIT: AUDIT_QUERIES})),
)
AUDITOR = _caller(
    "auditor",
    (f"{RPC_PREFIX}.*.{HISTORY_COMMAND}", *_rpc({AUDIT: AUDIT_QUERIES}),
     f"{RPC_PREFIX}.*.{TREE_HEAD_COMMAND}"),
    "the auditor's command line: everyone's history, the audit record and the signed tree "
    "heads (on demand and as published), nothing else",
    subscribe=(f"{AUDIT_FEED_PREFIX}.>", HEADS_SUBJECTS),
)

IDENTITIES: dict[str, Identity] = {
    **{service: service_identity(service) for service in SERVICES},
    AUDIT: audit_identity(),
    PORTAL.name: PORTAL,
    DEVICE.name: DEVICE,
    OPERATOR.name: OPERATOR,
    AUDITOR.name: AUDITOR,
}


def identity(name: str) -> Identity:
    try:
        return IDENTITIES[name]
    except KeyError:
        raise KeyError(f"no bus identity {name!r}; known: {', '.join(IDENTITIES)}") from None


def authorization_block(public_keys: Mapping[str, str],
                        extra: Iterable[tuple[str, Identity]] = ()) -> dict[str, Any]:
    """nats-server's ``authorization`` section: one NKEY user per identity with its permissions.

    ``public_keys`` maps identity name to its NKEY public key (``U...``); ``extra`` adds
    (public key, identity) pairs that are not in the table (tests add an inspector).
    """
    users = [
        {"nkey": public_keys[name], "permissions": ident.permissions()}
        for name, ident in IDENTITIES.items()
        if name in public_keys
    ]
    users += [{"nkey": key, "permissions": ident.permissions()} for key, ident in extra]
    return {"users": users}

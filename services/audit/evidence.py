"""`rekey audit verify`: every stored row of a service checked against its place and its heads.

For one service's store, with its heads file (the service's own, or a copy kept elsewhere: the
witness) and its keys, :func:`verify_service` checks, row by row, and never stops at a bad one:

- rows at notification id 0 or below (outside the log: an insertion, whatever they hold);
- each row's place binding (:mod:`shared.binding`), when the evidence seed is at hand;
- that each row can be read at all (a flipped ciphertext byte);
- each signed head: its signature (``<service>.heads.pub``), its RFC 9162 consistency proof
  from the head before it, and that the rows it lists hash to its root;
- the store against the signed rows: a row deleted, changed, moved, or put between signed rows.

Each problem names the service, the notification id and the user (found from the other rows of
the same aggregate when the bad row cannot be read).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import Mapper, StoredEvent

from shared.application import READ_ONLY
from shared.binding import RowNotInPlace, check_row, split_state
from shared.data_keys import Erased
from shared.evidence.heads import HeadRecord, StoredRow, UnreadableLine, row_leaf
from shared.evidence.merkle import MerkleTree, verify_consistency
from shared.evidence.rows import rows_outside_the_log, stored_rows


@dataclass(frozen=True)
class Problem:
    service: str
    notification_id: int | None  # None: a problem of the heads file, not of a row
    user: str
    what: str

    def line(self) -> str:
        at = f"notification id {self.notification_id}" if self.notification_id is not None else "heads"
        return f"{self.service} {at} (user {self.user}): {self.what}"


@dataclass
class ServiceReport:
    service: str
    rows: int = 0
    signed_rows: int = 0
    heads: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def first(self) -> Problem | None:
        numbered = [p for p in self.problems if p.notification_id is not None]
        return min(numbered, key=lambda p: p.notification_id or 0) if numbered else (
            self.problems[0] if self.problems else None)


@dataclass(frozen=True)
class _Checked:
    """What the comparison with the heads needs of a row (not its bytes: a store may be big)."""

    notification_id: int
    originator_id: str
    leaf: bytes


class _Verifier:
    def __init__(self, app: Any, records: Sequence[HeadRecord | UnreadableLine],
                 trusted: Sequence[Ed25519PublicKey], row_key: bytes | None) -> None:
        self.app = app
        self.service: str = app.service
        self.records = records
        self.trusted = trusted
        self.row_key = row_key
        self.report = ServiceReport(self.service)
        self.users: dict[str, str] = {}
        self.pending: list[tuple[int | None, str, str]] = []  # (id, aggregate, what)
        self.erased = 0  # rows of erased users

    # --- reporting: users are named at the end, from every readable row -----------------------
    def problem(self, notification_id: int | None, aggregate: str, what: str) -> None:
        self.pending.append((notification_id, aggregate, what))

    def finish(self, directory: dict[str, str]) -> ServiceReport:
        if self.erased:
            self.report.notes.append(f"{self.erased} rows belong to erased users: unreadable by "
                                     "design, their bindings and proofs checked")
        for number, aggregate, what in sorted(self.pending, key=lambda p: (p[0] is None, p[0] or 0)):
            key = _aggregate_key(aggregate)
            user = directory.get(key) or (f"unknown (aggregate {aggregate})" if aggregate
                                          else "unknown")
            self.report.problems.append(Problem(self.service, number, user, what))
        return self.report

    # --- rows -------------------------------------------------------------------------------
    def check_rows(self) -> list[_Checked]:
        checked: list[_Checked] = []
        first_bound: int | None = None
        unbound: list[StoredRow] = []
        for row in rows_outside_the_log(self.app):
            self.read(row)
            self.problem(row.notification_id, row.originator_id,
                         "a row outside the log (notification ids start at 1): inserted by hand; "
                         "invisible to history, relay and status, yet read by its aggregate")
        for row in stored_rows(self.app):
            self.report.rows += 1
            bound = self.read(row)
            if bound is True and first_bound is None:
                first_bound = row.notification_id
            if bound is None and split_state(row.state)[0] is None:
                unbound.append(row)
            checked.append(_Checked(row.notification_id, row.originator_id,
                                    row_leaf(self.service, row)))
        for row in unbound:
            if first_bound is not None and row.notification_id > first_bound:
                self.problem(row.notification_id, row.originator_id,
                             "an unbound row stored after binding began: its binding was stripped")
        if unbound and (first_bound is None or unbound[0].notification_id < first_bound):
            self.report.notes.append(f"{len(unbound)} rows are unbound (written before binding "
                                     "existed): only the signed heads cover them")
        return checked

    def read(self, row: StoredRow) -> bool | None:
        """Check one row's binding and that it reads; record what its aggregate is about.
        True: bound and in place; False: refused; None: unbound or not checkable here."""
        bound: bool | None = None
        state = row.state
        try:
            if self.row_key is not None:
                tag, _ = split_state(row.state)
                state = check_row(self.row_key, stored_event(row), accept_unbound=True)
                bound = True if tag is not None else None
            else:
                state = split_state(row.state)[1]
        except RowNotInPlace:
            self.problem(row.notification_id, row.originator_id,
                         "its place binding does not match: moved from another aggregate, "
                         "version or topic, copied, or altered (re-encrypted)")
            return False
        try:
            event = read_event(self.app, row, state)
        except Erased:  # the user was erased: unreadable by design, still bound and signed
            self.erased += 1
            return bound
        except Exception as exc:  # a damaged row is reported, never fatal
            self.problem(row.notification_id, row.originator_id,
                         f"unreadable ({type(exc).__name__}): its stored bytes were altered")
            return False
        username = getattr(event, "username", None)
        if username:
            self.users.setdefault(_aggregate_key(row.originator_id), str(username))
        return bound

    # --- heads ------------------------------------------------------------------------------
    def check_heads(self) -> list[tuple[int, str, int, str]]:
        """The rows the valid signed heads cover, in order; problems of the file reported."""
        signed: list[tuple[int, str, int, str]] = []
        tree = MerkleTree()
        previous_size, previous_root = 0, MerkleTree().root().hex()
        for record in self.records:
            if isinstance(record, UnreadableLine):
                self.problem(None, "", f"heads file line {record.line} is unreadable: {record.reason}")
                continue
            head = record.head
            if head.service != self.service or not head.verify(self.trusted):
                self.problem(None, "", f"the head of {_when(head)} (size "
                             f"{head.tree_size}) is not signed by {self.service}'s key: ignored")
                continue
            if record.previous_size != previous_size or record.previous_root != previous_root or \
                    not verify_consistency(previous_size, head.tree_size, bytes.fromhex(previous_root),
                                           bytes.fromhex(head.root_hash),
                                           [bytes.fromhex(p) for p in record.consistency]):
                self.problem(None, "", f"the head of {_when(head)} (size "
                             f"{head.tree_size}) is not consistent with the head before it "
                             f"(size {previous_size}): heads missing or history rewritten")
            for entry in record.rows[: max(0, head.tree_size - len(tree))]:
                tree.append(bytes.fromhex(entry[3]))
                signed.append(tuple(entry))  # type: ignore[arg-type]
            if len(tree) < head.tree_size or tree.root(head.tree_size).hex() != head.root_hash:
                self.problem(None, "", f"the rows listed with the head of {_when(head)} do not "
                             "hash to its signed root: the heads file was edited")
            self.report.heads += 1
            previous_size, previous_root = head.tree_size, head.root_hash
        self.report.signed_rows = previous_size
        return signed[:previous_size]

    # --- the store against the signed rows --------------------------------------------------
    def compare(self, checked: list[_Checked], signed: list[tuple[int, str, int, str]]) -> None:
        if not self.report.heads and self.trusted and checked:
            self.problem(None, "", f"no signed tree head, yet {self.service} signs one whenever "
                         "it starts: its heads file was removed or emptied. Check against a copy "
                         "kept elsewhere (--heads DIR)")
        elif not self.report.heads:
            self.report.notes.append("no signed head: deletions and moves are not checkable")
        store = {c.notification_id: c for c in checked}
        signed_ids = {entry[0] for entry in signed}
        for number, aggregate, version, leaf in signed:
            found = store.get(number)
            if found is None:
                self.problem(number, aggregate, f"deleted: version {version} of its aggregate was "
                             "signed in a tree head and is no longer stored")
            elif found.leaf.hex() != leaf:
                self.problem(number, aggregate, "changed since a tree head signed it (content, "
                             "aggregate, version or topic)")
        last_signed = signed[-1][0] if signed else 0
        for number, c in store.items():
            if number < last_signed and number not in signed_ids:
                self.problem(number, c.originator_id, "inserted between rows a tree head "
                             "signed (backdated)")
        tree = MerkleTree(c.leaf for c in checked)
        for record in self.records:
            if isinstance(record, HeadRecord) and record.head.tree_size <= len(tree) and \
                    tree.root(record.head.tree_size).hex() != record.head.root_hash and \
                    not self.pending:
                self.problem(None, "", f"the store does not recompute to the head of size "
                             f"{record.head.tree_size}")


def _aggregate_key(aggregate: str) -> str:
    from uuid import UUID

    try:
        return str(UUID(str(aggregate)))
    except ValueError:
        return str(aggregate)


def user_directory(found: dict[str, str]) -> dict[str, str]:
    """Aggregate id -> username: the ids rows named, plus every per-user aggregate's id of
    every username seen in any store (so a user whose own rows are all damaged is named)."""
    from shared.application import UserAggregate, user_aggregate_id

    kinds, todo = [], list(UserAggregate.__subclasses__())
    while todo:
        kind = todo.pop()
        kinds.append(kind.__name__)
        todo.extend(kind.__subclasses__())
    directory = dict(found)
    for username in set(found.values()):
        for kind in kinds:
            directory.setdefault(str(user_aggregate_id(kind, username)), username)
    return directory


def _when(head: Any) -> str:
    return f"{head.timestamp:%Y-%m-%d %H:%M:%S}"


def read_event(app: Any, row: StoredRow, inner: bytes) -> Any:
    """The domain event of a row whose binding is checked (``inner``: the state inside it):
    the user's data-key layer opened, then the plain mapper. Raises ``Erased``, or whatever
    damaged bytes raise."""
    state = inner
    if getattr(app, "data_keys", None) is not None:
        state = app.data_keys.open(stored_event(row).originator_id, row.originator_version,
                                   row.topic, state)
    return Mapper.to_domain_event(app.mapper, stored_event(row, state))


def stored_event(row: StoredRow, state: bytes | None = None) -> StoredEvent:
    from uuid import UUID

    try:
        originator: UUID | str = UUID(row.originator_id)
    except ValueError:
        originator = row.originator_id
    return StoredEvent(originator_id=originator, originator_version=row.originator_version,
                       topic=row.topic, state=row.state if state is None else state)


def check_service(app: Any, records: Iterable[HeadRecord | UnreadableLine],
                  trusted: Sequence[Ed25519PublicKey], row_key: bytes | None) -> _Verifier:
    """Check one service's store against its binding and its signed heads; ``finish`` with
    the users of every store gives the report."""
    verifier = _Verifier(app, list(records), trusted, row_key)
    if row_key is None:
        verifier.report.notes.append("place bindings not checked: no evidence seed here")
    checked = verifier.check_rows()
    signed = verifier.check_heads()
    verifier.compare(checked, signed)
    return verifier


def verify_stores(settings: Any, heads_folder: Any = None, keys: Any = None) -> list[ServiceReport]:
    """Every service's store, against the heads files in ``heads_folder`` (default: the data
    folder's; a witness passes the copies it kept) and the keys in ``keys`` (default: the bus
    keys folder of the settings). Raises NotFound when the stores are not there."""
    from pathlib import Path

    from services.audit.history import application_classes, check_stores_exist
    from shared.evidence.heads import heads_dir, read_records
    from shared.evidence_keys import heads_private_key, heads_public_keys, heads_seed_file, row_key

    check_stores_exist(settings)
    folder = Path(heads_folder) if heads_folder else heads_dir(settings)
    keys_dir = Path(keys) if keys else (Path(settings.nats_keys_dir) if settings.nats_keys_dir else None)
    checked = []
    for cls in application_classes():
        app = cls(settings, READ_ONLY)
        try:
            service = app.service
            trusted = heads_public_keys(keys_dir, service) if keys_dir else []
            seed = keys_dir is not None and heads_seed_file(keys_dir, service).exists()
            key = row_key(heads_private_key(keys_dir, service)) if seed and keys_dir else None
            records = list(read_records(folder / f"{service}.jsonl"))
            checked.append(check_service(app, records, trusted, key))
        finally:
            app.close()
    directory = user_directory({k: v for c in checked for k, v in c.users.items()})
    return [c.finish(directory) for c in checked]

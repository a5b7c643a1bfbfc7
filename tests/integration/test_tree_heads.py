"""Each service signs its Merkle tree head at start, at REKEY_TREE_HEAD_SECONDS and on demand,
appends it to its heads file and publishes it where the auditor (and only the services) can
read it; each head verifies with the service's public key and is consistent with the one
before (RFC 9162). A store changed behind a service's back gets no new head."""

from __future__ import annotations

from pathlib import Path

from shared.evidence.heads import HeadRecord, heads_file, read_records
from shared.evidence.merkle import verify_consistency
from shared.evidence_keys import heads_public_keys
from shared.settings import SERVICES
from tests.conftest import connect_as
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    USER,
    System,
    connected,
    eventually,
    start_all,
)
from tests.security.insider import Insider


def consistent(records: list[HeadRecord], keys_dir: Path, service: str) -> bool:
    trusted = heads_public_keys(keys_dir, service)
    previous_size, previous_root = 0, None
    for record in records:
        head = record.head
        if not head.verify(trusted):
            return False
        if previous_root is not None and not verify_consistency(
                previous_size, head.tree_size, bytes.fromhex(previous_root),
                bytes.fromhex(head.root_hash), [bytes.fromhex(p) for p in record.consistency]):
            return False
        previous_size, previous_root = head.tree_size, head.root_hash
    return True


async def test_heads_come_at_the_interval_signed_consistent_and_reach_the_auditor(
    nats_server, mail_sink, settings_factory, store,
) -> None:
    settings = settings_factory(nats_server, store=store.name, postgres_db=store.postgres_db,
                                smtp_port=mail_sink.port, tree_head_seconds=0.3)
    received: dict[str, list[HeadRecord]] = {service: [] for service in SERVICES}
    auditor = await connect_as(nats_server, "auditor")

    async def keep(message) -> None:
        record = HeadRecord.model_validate_json(message.data)
        received[record.head.service].append(record)

    await auditor.subscribe("rekey.heads.>", cb=keep)
    system = System(settings, nats_server, mail_sink)
    try:
        async with connected(system):
            await start_all(system)
            await system.provision()  # rows arrive between heads
            await eventually(lambda: all(len(r) >= 3 for r in received.values()),
                             what="three heads from every service")
    finally:
        await auditor.close()

    keys = Path(settings.nats_keys_dir)
    for service in SERVICES:
        kept = [r for r in read_records(heads_file(settings, service)) if isinstance(r, HeadRecord)]
        assert [r.head for r in received[service]] == [r.head for r in kept[:len(received[service])]]
        assert consistent(kept, keys, service), service
        assert heads_file(settings, service).stat().st_mode & 0o777 == 0o600
    assert received["credentials"][-1].head.tree_size >= 2  # the accounts provisioned


async def test_a_store_changed_while_its_service_was_down_is_named_and_no_new_head_launders_it(
    system: System,
) -> None:
    """A restart takes the tree up from the last head's compact range without re-reading the
    rows it covers; the head it signs extends the signed tree (the row as it was signed), so
    the change stays one that `rekey audit verify`, recomputing from the store, names."""
    from tests.security.stores import named, verify

    await start_all(system)  # `rekey audit verify` reads every service's store
    await system.provision()
    await system.call("credentials", "tree_head")
    await system.stop("credentials")
    insider = Insider(system.settings, "credentials")
    registered = insider.rows()[0]  # the user's AccountRegistered
    insider.flip_byte(registered)

    await system.start("credentials")
    head = await system.call("credentials", "tree_head")

    kept = [r for r in read_records(heads_file(system.settings, "credentials"))
            if isinstance(r, HeadRecord)]
    assert kept[-1].head.root_hash == head["root_hash"]
    assert consistent(kept, Path(system.settings.nats_keys_dir), "credentials")
    code, out = verify(system)
    assert code == 1
    assert named("credentials", registered.notification_id, USER) in out
    signed_in = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    assert signed_in  # answered: one tampered account stops nobody else


async def test_a_restart_reads_only_the_rows_after_the_last_head(system: System) -> None:
    await start_all(system)  # `rekey audit verify` reads every service's store
    await system.provision()
    await system.call("credentials", "tree_head")
    signed = (await system.call("credentials", "tree_head"))["tree_size"]
    await system.stop("credentials")
    # written while it was down (an insider, or another process): the rows after the head
    await system.start("credentials")  # signs a head at start, over what it found
    writer = system.runtimes["credentials"].heads.writer
    assert writer.resumed
    assert writer.tree.base == signed  # the signed rows came from the compact range, not read
    kept = [r for r in read_records(heads_file(system.settings, "credentials"))
            if isinstance(r, HeadRecord)]
    assert consistent(kept, Path(system.settings.nats_keys_dir), "credentials")
    from tests.security.stores import verify

    code, out = verify(system)
    assert code == 0, out


async def test_heads_without_a_compact_range_rebuild_the_tree_from_the_store(system: System) -> None:
    """Heads files written before the compact range was kept (or a last line that does not
    check out) make the service read its whole store, as before."""
    import json

    await system.start("credentials")
    await system.start("ticketing")
    await system.provision()
    signed = (await system.call("credentials", "tree_head"))["tree_size"]
    await system.stop("credentials")
    path = heads_file(system.settings, "credentials")
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    last.pop("compact_range")
    path.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")

    await system.start("credentials")
    writer = system.runtimes["credentials"].heads.writer
    assert not writer.resumed and writer.tree.base == 0 and len(writer.tree) >= signed
    await system.call("credentials", "tree_head")
    kept = [r for r in read_records(path) if isinstance(r, HeadRecord)]
    assert consistent(kept, Path(system.settings.nats_keys_dir), "credentials")


# --- the audit service's own copy of every head: a second witness kept by the system ----------
def forged(record: HeadRecord, private, **change) -> bytes:
    """A head record like ``record`` with ``change`` to its head, signed with ``private``."""
    head = record.head.model_copy(update=change).signed_by(private)
    return record.model_copy(update={"head": head}).model_dump_json().encode()


def refused_heads(system: System) -> list[dict]:
    return system.app("audit").witness.copy.refused()


async def test_the_audit_service_keeps_every_head_checked_and_flags_forged_ones(
    system: System,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from shared.evidence.merkle import EMPTY_ROOT, leaf_hash
    from shared.evidence_keys import heads_private_key
    from tests.security.stores import verify

    await start_all(system)  # their first heads are signed before the audit service runs
    await system.provision()
    await system.start("audit")
    for service in SERVICES:
        await system.call(service, "tree_head")
    witness = system.app("audit").witness

    def kept_everything() -> bool:
        return all(
            [r.head for r in witness.copy.accepted(service)] ==
            [r.head for r in read_records(heads_file(system.settings, service))
             if isinstance(r, HeadRecord)]
            for service in SERVICES)

    await eventually(kept_everything, what="the audit service to keep every head, in order")
    assert refused_heads(system) == []  # a genuine sequence is accepted
    health = await system.call("audit", "health")
    assert next(c for c in health["checks"] if c["name"] == "tree heads")["ok"]

    last = witness.copy.last_accepted("credentials")
    assert last is not None
    genuine_key = heads_private_key(Path(system.settings.nats_keys_dir), "credentials")
    attacks = {
        # someone with the credentials service's bus key, but not its evidence key
        "signed with another key": forged(last, Ed25519PrivateKey.generate(),
                                          tree_size=last.head.tree_size + 1),
        # an insider with the evidence seed too: a new history, signed, from the empty tree
        "a rewritten history": HeadRecord(
            head=last.head.model_copy(update={"tree_size": 1, "root_hash": leaf_hash(b"x").hex(),
                                              }).signed_by(genuine_key),
            previous_size=0, previous_root=EMPTY_ROOT.hex(), consistency=[], rows=[],
        ).model_dump_json().encode(),
        "not a head": b'{"head": "trust me"}',
    }
    credentials = await connect_as(system.nats, "credentials")  # may publish its heads
    try:
        for data in attacks.values():
            await credentials.publish("rekey.heads.credentials", data)
        await credentials.flush()
    finally:
        await credentials.close()

    await eventually(lambda: len(refused_heads(system)) == len(attacks),
                     what="the audit service to refuse the forged heads")
    reasons = [r["reason"] for r in refused_heads(system)]
    assert "not signed by credentials's evidence key" in reasons[0]
    assert "not consistent with the head of size" in reasons[1]
    assert "not a tree head record" in reasons[2]
    assert witness.copy.last_accepted("credentials") == last  # nothing changed
    health = await system.call("audit", "health")
    check = next(c for c in health["checks"] if c["name"] == "tree heads")
    assert not check["ok"] and "3 tree heads refused" in check["detail"]

    # the next genuine head still links to the last accepted one
    await system.call("credentials", "tree_head")
    await eventually(lambda: len(witness.copy.accepted("credentials")) == len(
        [r for r in read_records(heads_file(system.settings, "credentials"))
         if isinstance(r, HeadRecord)]), what="the next genuine head to be accepted")
    assert len(refused_heads(system)) == len(attacks)

    # `rekey audit verify --audit-copy`: the stores against the audit service's copy
    code, out = verify(system, "--audit-copy")
    assert code == 0, out
    assert "audit service's copy of the tree heads" in out

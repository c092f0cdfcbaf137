"""Key rotation and revocation through the store and the inbox (no processes; the integration
test with two node processes is tests/integration/test_key_rotation.py)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hotline.core.card import Identity
from hotline.core.encoding import b64encode
from hotline.core.envelope import Kind, new_id, seal, sign_message
from hotline.core.keyevents import KeyState
from hotline.errors import ErrorCode, NotFoundError, VerificationError
from hotline.link import inbox, keyring
from hotline.node.home import NodeHome
from hotline.store.messages import pending_outgoing
from hotline.store.schema import security_events
from hotline.transcript import _schema as transcript_schema


def deliver(src: NodeHome, dst: NodeHome, *, now: datetime | None = None) -> inbox.Received:
    """Everything ``src`` has queued for ``dst``, through ``dst``'s inbox; receipts back."""
    now = now or datetime.now(UTC)
    with src.store.read() as conn:
        batch = pending_outgoing(conn, dst.config.name, 256)
    result = inbox.receive(
        dst.store,
        dst.identity,
        dst.peer_cards(),
        [o.envelope for o in batch],
        now=now,
        source="test",
    )
    back = result.receipts.get(src.config.name, [])
    if back:
        inbox.receive(src.store, src.identity, src.peer_cards(), back, now=now, source="reply")
    return result


def message_from(
    identity: Identity,
    dst: NodeHome,
    seq: int,
    *,
    created: datetime | None = None,
    recipient_key: Any = None,
) -> bytes:
    """A free-text message from ``identity`` to ``dst``, sealed to ``dst``'s current key or to
    ``recipient_key`` (an earlier generation's)."""
    now = created or datetime.now(UTC)
    message_id = new_id(now)
    statement = sign_message(
        identity,
        to=dst.config.name,
        message_id=message_id,
        seq=seq,
        created=now,
        msg_type="free_text",
        priority="routine",
        body={"text": "x", "lang": "en"},
    )
    return seal(
        kind=Kind.MESSAGE,
        sender=identity.name,
        recipient=dst.config.name,
        envelope_id=message_id,
        statement=statement,
        recipient_key=recipient_key or dst.identity.decryption.public,
    )


def codes(home: NodeHome) -> list[str]:
    with home.store.read() as conn:
        return [r.code for r in conn.execute(select(security_events.c.code))]


def leaf_kinds(home: NodeHome) -> list[str]:
    with home.store.read() as conn:
        return [r.kind for r in conn.execute(select(transcript_schema.transcript_leaves.c.kind))]


def test_rotation_reaches_the_peer_and_both_keys_work_during_the_overlap(pair):
    washington, moscow = pair["washington"], pair["moscow"]
    old = washington.identity
    event = washington.change_keys(
        datetime.now(UTC), overlap=timedelta(days=7), compromised_at=None
    )
    new = washington.identity
    assert new.signing.public.key_id.hex() == event.new_key_id != event.old_key_id
    assert [k.public for k in new.previous] == [old.decryption.public]

    result = deliver(washington, moscow)
    assert [o.status for o in result.outcomes] == ["accepted"]
    assert result.key_changes == ["washington"]
    assert moscow.peer_card("washington").signing_key == new.signing.public
    with moscow.store.read() as conn:
        states = {r.key_id: r.state for r in keyring.history(conn, "washington")}
    assert states == {event.old_key_id: KeyState.ROTATED, event.new_key_id: KeyState.ACTIVE}
    # The statement is a leaf of both logs.
    assert "key.rotation" in leaf_kinds(washington) and "key.rotation" in leaf_kinds(moscow)

    cards = moscow.peer_cards()
    now = datetime.now(UTC)
    both = [message_from(new, moscow, 2), message_from(old, moscow, 3)]
    result = inbox.receive(moscow.store, moscow.identity, cards, both, now=now, source="t")
    assert [o.status for o in result.outcomes] == ["accepted", "accepted"]

    # After the overlap: the old key is refused, the new one still works.
    later = now + timedelta(days=8)
    late = [
        message_from(old, moscow, 4, created=later),
        message_from(new, moscow, 5, created=later),
    ]
    result = inbox.receive(moscow.store, moscow.identity, cards, late, now=later, source="t")
    assert [(o.status, o.code) for o in result.outcomes] == [
        ("rejected", ErrorCode.KEY_EXPIRED.value),
        ("accepted", None),
    ]

    # Moscow's envelopes sealed to washington's old encryption key still open there.
    old_card_of_moscow = moscow.card(now)
    sealed_to_old = seal(
        kind=Kind.MESSAGE,
        sender="moscow",
        recipient="washington",
        envelope_id=(mid := new_id(now)),
        statement=sign_message(
            moscow.identity,
            to="washington",
            message_id=mid,
            seq=2,
            created=now,
            msg_type="free_text",
            priority="routine",
            body={"text": "y", "lang": "en"},
        ),
        recipient_key=old.decryption.public,
    )
    result = inbox.receive(
        washington.store,
        washington.identity,
        {"moscow": old_card_of_moscow},
        [sealed_to_old],
        now=now,
        source="t",
    )
    assert result.outcomes[0].status == "accepted", result.outcomes


def test_a_rotation_not_signed_by_the_active_key_is_refused(pair):
    washington, moscow = pair["washington"], pair["moscow"]
    thief = Identity.generate("washington")
    other = Identity.generate("washington")
    card = washington.card(datetime.now(UTC), identity=other)
    from hotline.core.keyevents import make_rotation

    now = datetime.now(UTC)
    statement = make_rotation(thief, other, card, effective=now, overlap_end=now + timedelta(1))
    message_id = new_id(now)
    carrier = sign_message(
        washington.identity,
        to="moscow",
        message_id=message_id,
        seq=1,
        created=now,
        msg_type=keyring.ROTATION_TYPE,
        priority="immediate",
        body={"statement": b64encode(statement)},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=message_id,
        statement=carrier,
        recipient_key=moscow.identity.decryption.public,
    )
    result = inbox.receive(
        moscow.store, moscow.identity, moscow.peer_cards(), [envelope], now=now, source="t"
    )
    assert result.outcomes[0].status == "rejected"
    assert result.outcomes[0].code == ErrorCode.UNKNOWN_KEY.value
    assert moscow.peer_card("washington").signing_key == washington.identity.signing.public


def test_revocation_refuses_the_old_key_and_waits_for_the_fingerprint(pair):
    washington, moscow = pair["washington"], pair["moscow"]
    old = washington.identity
    cards = moscow.peer_cards()
    before = datetime.now(UTC)
    # A message the thief made with the stolen key, accepted before anyone knew.
    early = inbox.receive(
        moscow.store, moscow.identity, cards, [message_from(old, moscow, 2)], now=before, source="t"
    )
    assert early.outcomes[0].status == "accepted"
    event = washington.change_keys(datetime.now(UTC), compromised_at=before - timedelta(minutes=5))
    new = washington.identity
    result = deliver(washington, moscow)
    assert [o.status for o in result.outcomes] == ["accepted"]
    assert ErrorCode.KEY_REVOKED.value in codes(moscow)
    assert "key_suspect" in codes(moscow)
    assert "key.revocation" in leaf_kinds(moscow)
    # The card stays the old one until the fingerprint is confirmed: nothing is sealed to it.
    with moscow.store.read() as conn:
        assert keyring.revoked_without_successor(conn, "washington")
        states = {r.key_id: r.state for r in keyring.history(conn, "washington")}
    assert states == {event.old_key_id: KeyState.REVOKED, event.new_key_id: KeyState.PENDING}

    cards = moscow.peer_cards()
    now = datetime.now(UTC)
    attempts = [
        message_from(old, moscow, 3, created=before - timedelta(hours=1)),  # backdated
        message_from(new, moscow, 4),
    ]
    result = inbox.receive(moscow.store, moscow.identity, cards, attempts, now=now, source="t")
    assert [o.code for o in result.outcomes] == [
        ErrorCode.KEY_REVOKED.value,
        ErrorCode.KEY_UNCONFIRMED.value,
    ]

    with moscow.store.write() as conn, pytest.raises(VerificationError) as wrong:
        keyring.confirm_peer_key(conn, moscow.identity, "washington", "00000 " * 5 + "00000", 1)
    assert wrong.value.code == ErrorCode.FINGERPRINT_MISMATCH
    with moscow.store.write() as conn:
        keyring.confirm_peer_key(conn, moscow.identity, "washington", event.new_fingerprint, 1)
        assert not keyring.revoked_without_successor(conn, "washington")
    cards = moscow.peer_cards()
    assert cards["washington"].signing_key == new.signing.public
    result = inbox.receive(
        moscow.store, moscow.identity, cards, [message_from(new, moscow, 4)], now=now, source="t"
    )
    assert result.outcomes[0].status == "accepted"
    with moscow.store.write() as conn, pytest.raises(NotFoundError):
        keyring.confirm_peer_key(conn, moscow.identity, "washington", event.new_fingerprint, 1)


def test_revocation_drops_what_the_revoked_key_signed_and_reseals_on_confirmation(pair):
    washington, moscow = pair["washington"], pair["moscow"]
    from hotline.link import outbox

    outbox.submit_messages(
        washington.store,
        washington.identity,
        [
            outbox.Draft(
                peer=washington.peer_card("moscow"),
                msg_type="free_text",
                priority="routine",
                body={"text": "queued before", "lang": "en"},
                ttl=timedelta(hours=1),
            )
        ],
        now=datetime.now(UTC),
    )
    event = washington.change_keys(datetime.now(UTC), compromised_at=datetime.now(UTC))
    assert len(event.dropped) == 1
    # Moscow revokes too: washington's queue towards moscow must wait, then be sealed again.
    deliver(washington, moscow)
    moscow_event = moscow.change_keys(datetime.now(UTC), compromised_at=datetime.now(UTC))
    deliver(moscow, washington)
    outbox.submit_messages(
        washington.store,
        washington.identity,
        [
            outbox.Draft(
                peer=washington.peer_card("moscow"),
                msg_type="free_text",
                priority="routine",
                body={"text": "after", "lang": "en"},
                ttl=timedelta(hours=1),
            )
        ],
        now=datetime.now(UTC),
    )
    with washington.store.write() as conn:
        keyring.confirm_peer_key(
            conn, washington.identity, "moscow", moscow_event.new_fingerprint, 1
        )
    with moscow.store.write() as conn:
        keyring.confirm_peer_key(conn, moscow.identity, "washington", event.new_fingerprint, 1)
    result = deliver(washington, moscow)
    assert [o.status for o in result.outcomes] == ["accepted"], result.outcomes


def test_rotation_of_an_encrypted_node_keeps_its_keys_encrypted(tmp_path, monkeypatch, capsys):
    import io
    import json

    from hotline.cli import main
    from hotline.node.keyfile import is_encrypted

    passphrase = "correct horse battery staple"
    home = NodeHome.init(
        tmp_path / "w",
        name="washington",
        listen="127.0.0.1:18599",
        display_names={"en": "W"},
        passphrase=passphrase,
    )
    home.close()
    monkeypatch.setattr("sys.stdin", io.StringIO(passphrase + "\n"))
    capsys.readouterr()
    code = main(["keys", "rotate", "--dir", str(home.dir), "--passphrase-stdin", "--json"])
    assert code == 0
    event = json.loads(capsys.readouterr().out)
    for path in [
        home.dir / "keys" / "signing.key",
        home.dir / "keys" / "encryption.key",
        *(home.dir / "keys" / "previous").iterdir(),
    ]:
        assert is_encrypted(path.read_bytes()), path
    again = NodeHome(home.dir, passphrase=passphrase)
    assert again.identity.signing.public.key_id.hex() == event["new_key_id"]
    assert len(again.identity.previous) == 1
    again.close()


def test_new_key_files_of_a_change_that_never_committed_are_discarded(pair):
    """A rotation that stopped before its store transaction committed: at the next start the
    node keeps its key and deletes the new files (they were never announced)."""
    washington = pair["washington"]
    before = washington.identity.signing.public.key_id
    other = Identity.generate("washington")
    keys = washington.dir / "keys"
    for name, data in (
        ("signing.key.next", b"".join(other.signing.private_bytes())),
        ("encryption.key.next", b"".join(other.decryption.private_bytes())),
    ):
        (keys / name).write_bytes(data)
        (keys / name).chmod(0o600)
    assert washington.reload_identity().signing.public.key_id == before
    assert not (keys / "signing.key.next").exists()
    assert not (keys / "encryption.key.next").exists()


def test_a_thiefs_revocation_is_answered_by_the_owners_through_the_fingerprint_check(
    pair, tmp_path, capsys
):
    """The thief holds washington's key: it revokes it and offers its own new key, using the
    sequence number washington's own revocation will need. Washington's revocation then cannot
    cross the link (sequence_reused), so it is handed over as a file; the operators' telephone
    check picks washington's key, and the thief's is rejected."""
    from hotline.cli import main
    from hotline.core.keyevents import make_revocation

    washington, moscow = pair["washington"], pair["moscow"]
    stolen = washington.identity
    now = datetime.now(UTC)
    thief = Identity.generate("washington")
    thief_card = washington.card(now, identity=thief)
    statement = make_revocation(
        thief,
        thief_card,
        revoked_key_id=stolen.signing.public.key_id,
        compromised_at=now,
        time=now,
    )
    carrier_id = new_id(now)
    carrier = sign_message(
        stolen,
        to="moscow",
        message_id=carrier_id,
        seq=1,
        created=now,
        msg_type=keyring.REVOCATION_TYPE,
        priority="immediate",
        body={"statement": b64encode(statement)},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="washington",
        recipient="moscow",
        envelope_id=carrier_id,
        statement=carrier,
        recipient_key=moscow.identity.decryption.public,
    )
    result = inbox.receive(
        moscow.store, moscow.identity, moscow.peer_cards(), [envelope], now=now, source="t"
    )
    assert result.outcomes[0].status == "accepted"

    revocation_file = tmp_path / "washington.revocation"
    capsys.readouterr()
    assert (
        main(
            [
                "keys",
                "revoke",
                "--dir",
                str(washington.dir),
                "--compromised-at",
                "now",
                "--out",
                str(revocation_file),
                "--json",
            ]
        )
        == 0
    )
    owner = json.loads(capsys.readouterr().out)
    washington.reload_identity()
    # Its carrier needs seq 1, which the thief used: refused, whatever it says.
    result = deliver(washington, moscow)
    assert [o.code for o in result.outcomes] == [ErrorCode.SEQUENCE_REUSED.value]
    # On the telephone, washington reads its own fingerprint; moscow has only the thief's.
    refused = main(
        [
            "peer", "confirm-key", "washington", "--dir", str(moscow.dir),
            "--fingerprint", owner["new_fingerprint"],
        ]
    )  # fmt: skip
    assert refused == 4
    # With the revocation file handed over, the same check succeeds; the thief's key is out.
    confirm = ["peer", "confirm-key", "washington", "--dir", str(moscow.dir)]
    with_file = ["--fingerprint", owner["new_fingerprint"], "--revocation", str(revocation_file)]
    assert main(confirm + with_file) == 0
    with moscow.store.read() as conn:
        states = {r.key_id: r.state for r in keyring.history(conn, "washington")}
    assert states == {
        stolen.signing.public.key_id.hex(): KeyState.REVOKED,
        thief.signing.public.key_id.hex(): KeyState.REJECTED,
        owner["new_key_id"]: KeyState.ACTIVE,
    }
    assert leaf_kinds(moscow).count("key.revocation") == 2
    assert moscow.peer_card("washington").fingerprint == owner["new_fingerprint"]


def test_retired_decryption_keys_are_deleted_once_nothing_sealed_to_them_can_come(
    pair, capsys, monkeypatch
):
    """Threat K2: ``hotline keys retire`` deletes the decryption keys of earlier generations
    archived longer ago than its limit; what was sealed to them no longer opens, what was sealed
    to a younger one still does, and the current keys are never touched."""
    from hotline.cli import main

    washington, moscow = pair["washington"], pair["moscow"]
    now = datetime.now(UTC)
    first = washington.identity
    oldest = washington.change_keys(now, overlap=timedelta(days=7), compromised_at=None)
    second = washington.identity
    younger = washington.change_keys(now, overlap=timedelta(days=7), compromised_at=None)
    folder = washington.dir / "keys" / "previous"
    month_ago = (now - timedelta(days=30)).timestamp()
    os.utime(folder / f"{oldest.old_key_id}.encryption.key", (month_ago, month_ago))

    envelopes = [
        message_from(moscow.identity, washington, seq, created=now, recipient_key=key)
        for seq, key in ((1, first.decryption.public), (2, second.decryption.public))
    ]
    # A malformed age is refused, naming its option; nothing is deleted.
    assert main(["keys", "retire", "--dir", str(washington.dir), "--older-than", "5x"]) == 2
    assert "--older-than takes a number" in capsys.readouterr().err
    assert (folder / f"{oldest.old_key_id}.encryption.key").exists()
    # Not without a confirmation: no terminal here, so --yes is required.
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["keys", "retire", "--dir", str(washington.dir)]) == 2
    assert (folder / f"{oldest.old_key_id}.encryption.key").exists()
    capsys.readouterr()

    assert main(["keys", "retire", "--dir", str(washington.dir), "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": [oldest.old_key_id]}
    assert sorted(p.name for p in folder.iterdir()) == [f"{younger.old_key_id}.encryption.key"]
    again = NodeHome(washington.dir)
    assert [k.public for k in again.identity.previous] == [second.decryption.public]
    assert again.identity.decryption.public == washington.identity.decryption.public
    result = inbox.receive(
        again.store, again.identity, again.peer_cards(), envelopes, now=now, source="t"
    )
    assert [o.status for o in result.outcomes] == ["rejected", "accepted"], result.outcomes
    # Nothing else is that old now.
    assert main(["keys", "retire", "--dir", str(washington.dir), "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": []}
    again.close()

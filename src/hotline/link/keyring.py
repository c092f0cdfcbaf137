"""Key history in the store: our own key generations and every peer's, and the key events that
move between them (rotation, revocation, a confirmed fingerprint).

The statements and their checks are ``hotline.core.keyevents`` (pure); this module keeps their
consequences (docs/protocol.md §15):

- ``key_history``: one row per (owner, key id), for our own keys and each peer's, with its card,
  fingerprint, state (``KeyState``) and times;
- ``key_events``: every rotation and revocation statement, ours and our peers', exactly as
  signed, so that audit bundles can carry a node's key history to an offline verifier.

A key event travels as a message of type ``key_rotation`` or ``key_revocation`` whose body is
``{"statement": base64}``, through the outbox like any message (durable, sequenced, receipted),
and its statement is logged as a transcript entry of its own (``key.rotation`` /
``key.revocation``) on both sides.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    bindparam,
    insert,
    select,
    update,
)

from hotline import transcript
from hotline.core.card import Card, Identity, parse_card_statement
from hotline.core.encoding import b64decode, b64encode, from_us, to_us
from hotline.core.envelope import Kind, seal
from hotline.core.keyevents import (
    EventKind,
    KeyStanding,
    KeyState,
    Revocation,
    event_kind,
    make_revocation,
    make_rotation,
    verify_revocation,
    verify_rotation,
)
from hotline.core.keys import SigningPublicKey, peek_statement
from hotline.errors import ErrorCode, NotFoundError, ProtocolError, VerificationError, WireError
from hotline.link import outbox
from hotline.store import after_commit
from hotline.store.messages import State, add_events, dequeue, record_security_event
from hotline.store.prepared import Prepared
from hotline.store.schema import messages, metadata, outbox_queue, peers

log = logging.getLogger(__name__)

#: Message types that carry key events (outside the catalog; handled by the inbox).
ROTATION_TYPE = "key_rotation"
REVOCATION_TYPE = "key_revocation"
KEY_EVENT_TYPES = frozenset({ROTATION_TYPE, REVOCATION_TYPE})
#: A key event statement in a message body: a rotation is ~17 KB (two cards' worth of keys and
#: three composite signatures); bound the base64 generously.
MAX_EVENT_BYTES = 64 * 1024
#: Received messages checked for suspicion when a peer's key is revoked (the newest first).
MAX_SUSPECT_SCAN = 10_000
#: How long a key event's messages are retried: a peer that is down for days must still learn
#: of the rotation before its overlap ends (the carrier expires with the overlap).
MIN_EVENT_TTL = timedelta(days=1)

key_history = Table(
    "key_history",
    metadata,
    Column("owner", String(64), primary_key=True),  # our own name, or a peer's
    Column("key_id", String(32), primary_key=True),  # hex of the signing key id
    Column("card", LargeBinary, nullable=False),  # the card (self-signed by this key)
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # KeyState
    Column("added_at_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=True),  # rotated: end of the overlap
    Column("revoked_at_us", BigInteger, nullable=True),  # revoked: compromise time we hold
    Column("confirmed_at_us", BigInteger, nullable=True),  # fingerprint confirmed out of band
)

key_events = Table(
    "key_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(64), nullable=False),  # whose keys the event moves
    Column("kind", String(16), nullable=False),  # rotation | revocation
    Column("at_us", BigInteger, nullable=False),  # when this node recorded it
    Column("old_key_id", String(32), nullable=False),
    Column("new_key_id", String(32), nullable=False),
    Column("statement", LargeBinary, nullable=False),
    Column("message_id", String(36), nullable=True),  # the peer's carrier message (received)
)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    owner: str
    key_id: str
    card: Card
    fingerprint: str
    state: KeyState
    added_at_us: int
    valid_until_us: int | None
    revoked_at_us: int | None
    confirmed_at_us: int | None

    @property
    def standing(self) -> KeyStanding:
        return KeyStanding(
            bytes.fromhex(self.key_id),
            self.state,
            valid_until=from_us(self.valid_until_us) if self.valid_until_us else None,
            revoked_at=from_us(self.revoked_at_us) if self.revoked_at_us else None,
        )

    def shown_state(self, now_us: int) -> str:
        """The state as a person reads it: a rotated key is in its overlap, then retired."""
        if self.state is KeyState.ROTATED:
            return "overlap" if self.valid_until_us and now_us <= self.valid_until_us else "retired"
        return self.state.value

    def to_dict(self, now_us: int) -> dict[str, Any]:
        def t(us: int | None) -> str | None:
            return from_us(us).isoformat() if us else None

        return {
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "state": self.shown_state(now_us),
            "added": t(self.added_at_us),
            "valid_until": t(self.valid_until_us),
            "compromised_at": t(self.revoked_at_us),
            "confirmed": t(self.confirmed_at_us),
        }


@functools.lru_cache(maxsize=256)
def _stored_card(statement: bytes) -> Card:
    """A card from the key history, verified once per process per exact bytes: the inbox reads
    the sender's history for every batch, and verifying its cards' ML-DSA signatures each time
    cost as much as opening an envelope."""
    return parse_card_statement(statement)


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        owner=row.owner,
        key_id=row.key_id,
        card=_stored_card(bytes(row.card)),
        fingerprint=row.fingerprint,
        state=KeyState(row.state),
        added_at_us=int(row.added_at_us),
        valid_until_us=None if row.valid_until_us is None else int(row.valid_until_us),
        revoked_at_us=None if row.revoked_at_us is None else int(row.revoked_at_us),
        confirmed_at_us=None if row.confirmed_at_us is None else int(row.confirmed_at_us),
    )


class _KeyRow(NamedTuple):
    """A ``key_history`` row as the prepared query returns it (the table's column order)."""

    owner: str
    key_id: str
    card: bytes
    fingerprint: str
    state: str
    added_at_us: int
    valid_until_us: int | None
    revoked_at_us: int | None
    confirmed_at_us: int | None


# The inbox reads the sender's history for every batch it takes in: prepared (store.prepared).
_HISTORY = Prepared(
    select(*(key_history.c[name] for name in _KeyRow._fields))
    .where(key_history.c.owner == bindparam("owner"))
    .order_by(key_history.c.added_at_us, key_history.c.key_id)
)


def history(conn: Connection, owner: str) -> list[KeyRecord]:
    """Every key of ``owner`` this node knows, oldest first."""
    return [_record(_KeyRow(*row)) for row in _HISTORY.all(conn, {"owner": owner})]


def compromise_times(conn: Connection) -> dict[str, int]:
    """Every revoked signing key this node knows (ours and the peers'): key id (hex) ->
    the compromise time it holds for it."""
    rows = conn.execute(
        select(key_history.c.key_id, key_history.c.revoked_at_us).where(
            key_history.c.revoked_at_us.is_not(None)
        )
    )
    return {str(key_id): int(at_us) for key_id, at_us in rows}


def add_key(
    conn: Connection,
    card: Card,
    *,
    state: KeyState,
    now_us: int,
    confirmed: bool,
    owner: str | None = None,
) -> None:
    """Record ``card``'s key (once: an existing row is left as it is)."""
    key_id = card.signing_key.key_id.hex()
    name = owner or card.name
    exists = conn.execute(
        select(key_history.c.key_id).where(
            and_(key_history.c.owner == name, key_history.c.key_id == key_id)
        )
    ).first()
    if exists is None:
        _write_history(
            conn,
            insert(key_history).values(
                owner=name,
                key_id=key_id,
                card=card.statement,
                fingerprint=card.fingerprint,
                state=state.value,
                added_at_us=now_us,
                confirmed_at_us=now_us if confirmed else None,
            ),
        )


def ensure_own_key(conn: Connection, card: Card, now_us: int) -> None:
    """Our current key is in the history (a node made before key history had no row)."""
    add_key(conn, card, state=KeyState.ACTIVE, now_us=now_us, confirmed=True)


#: How many writes to ``key_history`` this process has begun (``_write_history``): what
#: ``peer_keys`` remembers is taken only while this count and the store's data version are
#: what they were when it was read.
_history_writes = [0]
#: ``Connection.info`` key: (the count and data version it was read at, peer keys by peer).
_PEER_KEYS = "hotline.keyring.peer_keys"

PeerKeys = dict[bytes, tuple[SigningPublicKey, KeyStanding]]
_KeptKeys = tuple[tuple[int, int | None], dict[tuple[str, bytes], PeerKeys]]


def _write_history(conn: Connection, statement: Any) -> Any:
    """Every write to ``key_history`` goes through here (before it runs, whether or not it
    commits: a reader that then misses what it remembered only reads again)."""
    _history_writes[0] += 1
    return conn.execute(statement)


def _data_version(conn: Connection) -> int | None:
    """SQLite's data version of this connection: it changes whenever another connection (of
    this process or another) commits. None on PostgreSQL, which has none: nothing is kept."""
    if conn.dialect.name != "sqlite":
        return None
    raw = conn.connection.dbapi_connection
    return int(raw.execute("PRAGMA data_version").fetchone()[0])  # type: ignore[union-attr]


def peer_keys(conn: Connection, peer: Card) -> PeerKeys:
    """Every key of ``peer`` by key id, with its standing. The card's key is active if the
    history does not know it (a peer added before key history existed).

    The inbox asks for every batch it takes in: on SQLite the answer is kept on the connection
    once the transaction that read it commits, and given again while no connection has
    written since (the data version) and this process has written no key (``_history_writes``).
    A transaction that rolls back keeps nothing (it may have read its own undone writes)."""
    version = _data_version(conn)
    stamp = (_history_writes[0], version)
    name_and_key = (peer.name, peer.signing_key.key_id)
    if version is not None:
        kept: _KeptKeys | None = conn.info.get(_PEER_KEYS)
        if kept is not None and kept[0] == stamp and name_and_key in kept[1]:
            return dict(kept[1][name_and_key])
    out = {
        bytes.fromhex(r.key_id): (r.card.signing_key, r.standing) for r in history(conn, peer.name)
    }
    key_id = peer.signing_key.key_id
    if key_id not in out:
        out[key_id] = (peer.signing_key, KeyStanding(key_id, KeyState.ACTIVE))
    if version is not None:
        info, answer = conn.info, dict(out)

        def keep() -> None:
            kept: _KeptKeys | None = info.get(_PEER_KEYS)
            if kept is None or kept[0] != stamp:
                kept = info[_PEER_KEYS] = (stamp, {})
            kept[1][name_and_key] = answer

        after_commit(conn, keep)
    return out


def usable_keys(conn: Connection, peer: Card, now: datetime) -> dict[bytes, SigningPublicKey]:
    """Keys of ``peer`` that may sign new statements ``now`` (active, or rotated and still in
    their overlap): what heartbeats and tree heads are checked with."""
    out: dict[bytes, SigningPublicKey] = {}
    for key_id, (key, standing) in peer_keys(conn, peer).items():
        if standing.state is KeyState.ACTIVE or (
            standing.state is KeyState.ROTATED
            and standing.valid_until is not None
            and now <= standing.valid_until
        ):
            out[key_id] = key
    return out


def revoked_without_successor(conn: Connection, peer: str) -> bool:
    """The peer's card key is revoked and no new key is confirmed yet: nothing may be sealed
    to it (the thief may hold its decryption key too)."""
    row = conn.execute(select(peers.c.card).where(peers.c.name == peer)).first()
    if row is None:
        return False
    key_id = parse_card_statement(bytes(row.card)).signing_key.key_id.hex()
    state = conn.execute(
        select(key_history.c.state).where(
            and_(key_history.c.owner == peer, key_history.c.key_id == key_id)
        )
    ).scalar()
    return state == KeyState.REVOKED.value


# -- our own key events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnEvent:
    kind: EventKind
    old_key_id: str
    new_key_id: str
    new_fingerprint: str
    statement: bytes
    message_ids: dict[str, str]  # peer -> carrier message id
    dropped: list[str]  # queued messages signed by a revoked key, taken off the queue


def record_own_rotation(
    conn: Connection,
    old: Identity,
    old_card: Card,
    new: Identity,
    new_card: Card,
    peer_cards: Mapping[str, Card],
    *,
    now: datetime,
    overlap: timedelta,
) -> OwnEvent:
    """Sign the rotation, record it, and queue it to every peer, in the caller's transaction.

    The carriers are signed by the OLD key (the one every peer trusts now); the statement
    inside is cross-signed by both.
    """
    now_us = to_us(now)
    statement = make_rotation(old, new, new_card, effective=now, overlap_end=now + overlap)
    # A node made before key history has no row for its key yet: it predates the new one.
    ensure_own_key(conn, old_card, now_us - 1)
    _check_current(conn, old.name, old.signing.public.key_id.hex())
    _write_history(
        conn,
        update(key_history)
        .where(
            and_(
                key_history.c.owner == old.name,
                key_history.c.key_id == old.signing.public.key_id.hex(),
            )
        )
        .values(state=KeyState.ROTATED.value, valid_until_us=to_us(now + overlap)),
    )
    add_key(conn, new_card, state=KeyState.ACTIVE, now_us=now_us, confirmed=True)
    ids = _announce(
        conn, old, peer_cards, EventKind.ROTATION, statement, now, max(overlap, MIN_EVENT_TTL)
    )
    return OwnEvent(
        EventKind.ROTATION,
        old.signing.public.key_id.hex(),
        new.signing.public.key_id.hex(),
        new_card.fingerprint,
        statement,
        ids,
        [],
    )


def record_own_revocation(
    conn: Connection,
    old: Identity,
    old_card: Card,
    new: Identity,
    new_card: Card,
    peer_cards: Mapping[str, Card],
    *,
    now: datetime,
    compromised_at: datetime,
    ttl: timedelta,
) -> OwnEvent:
    """Revoke our current key as of ``compromised_at``; the new key is ``new``.

    Queued messages signed by the revoked key are taken off the queue (peers would refuse
    them, rightly: they cannot tell them from the thief's) and listed for sending again. The
    carriers are signed by the revoked key (the only key peers know; it proves the sender holds
    it, which is all revoking needs); the statement inside is signed by the new key.
    """
    now_us = to_us(now)
    old_id = old.signing.public.key_id.hex()
    statement = make_revocation(
        new,
        new_card,
        revoked_key_id=old.signing.public.key_id,
        compromised_at=compromised_at,
        time=now,
    )
    # A node made before key history has no row for its key yet: it predates the new one.
    ensure_own_key(conn, old_card, now_us - 1)
    _check_current(conn, old.name, old_id)
    _write_history(
        conn,
        update(key_history)
        .where(and_(key_history.c.owner == old.name, key_history.c.key_id == old_id))
        .values(state=KeyState.REVOKED.value, revoked_at_us=to_us(compromised_at)),
    )
    add_key(conn, new_card, state=KeyState.ACTIVE, now_us=now_us, confirmed=True)
    dropped = [
        row.message_id
        for row in conn.execute(select(outbox_queue.c.message_id).order_by(outbox_queue.c.seq))
    ]
    if dropped:
        add_events(
            conn,
            [(m, State.EXPIRED, now_us, "signed by a revoked key; send it again") for m in dropped],
        )
        dequeue(conn, dropped)
    ids = _announce(conn, old, peer_cards, EventKind.REVOCATION, statement, now, ttl)
    return OwnEvent(
        EventKind.REVOCATION, old_id, new.signing.public.key_id.hex(), new_card.fingerprint,
        statement, ids, dropped,
    )  # fmt: skip


def _check_current(conn: Connection, owner: str, key_id: str) -> None:
    row = conn.execute(
        select(key_history.c.state).where(
            and_(key_history.c.owner == owner, key_history.c.key_id == key_id)
        )
    ).scalar()
    if row != KeyState.ACTIVE.value:
        raise ProtocolError(f"key {key_id} is {row}, not the active key; nothing to change")


def _announce(
    conn: Connection,
    signer: Identity,
    peer_cards: Mapping[str, Card],
    kind: EventKind,
    statement: bytes,
    now: datetime,
    ttl: timedelta,
) -> dict[str, str]:
    """Log the statement and queue it to every peer (carriers signed by ``signer``)."""
    now_us = to_us(now)
    old_id, new_id = _event_key_ids(kind, statement, signer.name)
    conn.execute(
        insert(key_events).values(
            owner=signer.name,
            kind=kind.value,
            at_us=now_us,
            old_key_id=old_id,
            new_key_id=new_id,
            statement=statement,
        )
    )
    transcript.append(conn, [transcript.NewEntry(statement, f"key.{kind.value}", new_id)])
    msg_type = ROTATION_TYPE if kind is EventKind.ROTATION else REVOCATION_TYPE
    names = sorted(n for n in peer_cards if n != signer.name)
    drafts = [
        outbox.Draft(
            peer=peer_cards[name],
            msg_type=msg_type,
            priority="immediate",
            body={"statement": b64encode(statement)},
            ttl=ttl,
            key_event=True,
        )
        for name in names
    ]
    ids = outbox.queue_messages(conn, signer, drafts, now=now) if drafts else []
    return dict(zip(names, ids, strict=True))


def _event_key_ids(kind: EventKind, statement: bytes, name: str) -> tuple[str, str]:
    """(old key id, new key id) of one of our own statements (already checked when made)."""
    if kind is EventKind.ROTATION:
        outer_key = peek_statement(statement)[1]
        inner_key = peek_statement(peek_statement(statement)[2])[1]
        return outer_key.hex(), inner_key.hex()
    revocation = verify_revocation(statement, name=name)
    return revocation.revoked_key_id.hex(), revocation.new_key_id.hex()


# -- peers' key events (the inbox calls these inside its transaction) -----------------------


def accept_peer_event(
    conn: Connection,
    peer: Card,
    *,
    carrier_key_id: bytes,
    msg_type: str,
    body: Mapping[str, Any],
    message_id: str,
    now_us: int,
) -> transcript.NewEntry:
    """Apply a peer's key event carried by message ``message_id``; return its transcript entry.

    Rotation: the carrier's key must be the peer's active key and sign the rotation (§15.3);
    the new key becomes active and the peer's card is replaced; the old key stays valid until
    the overlap ends. Revocation: the carrier's key must be the key revoked (only a holder of
    a key may revoke it); that key is refused from now on, the new key waits for a fingerprint
    check, and messages already received under the revoked key since the compromise time are
    flagged as suspect.
    """
    encoded = body.get("statement")
    if not isinstance(encoded, str) or set(body) != {"statement"}:
        raise WireError(f"a {msg_type} message body is exactly {{'statement': base64}}")
    statement = b64decode(encoded, what=f"{msg_type} statement", limit=MAX_EVENT_BYTES)
    kind = event_kind(statement)
    if (kind is EventKind.ROTATION) != (msg_type == ROTATION_TYPE):
        raise WireError(f"a {msg_type} message carries a {kind.value} statement")
    keys = peer_keys(conn, peer)
    if carrier_key_id not in keys:  # cannot happen: the carrier verified with one of them
        raise VerificationError("carrier signed by an unknown key", code=ErrorCode.UNKNOWN_KEY)
    if kind is EventKind.ROTATION:
        key, standing = keys[carrier_key_id]
        if standing.state is not KeyState.ACTIVE:
            raise ProtocolError(
                f"rotation from key {carrier_key_id.hex()}, which is {standing.state.value}, "
                "not the active key"
            )
        rotation = verify_rotation(statement, name=peer.name, old_key=key)
        _set_peer_key_state(
            conn,
            peer.name,
            rotation.old_key_id,
            KeyState.ROTATED,
            valid_until_us=to_us(rotation.overlap_end),
        )
        if rotation.new_key_id in keys:
            raise ProtocolError(f"key {rotation.new_key_id.hex()} is already known")
        add_key(conn, rotation.card, state=KeyState.ACTIVE, now_us=now_us, confirmed=False)
        _replace_card(conn, rotation.card)
        old_id, new_id = rotation.old_key_id.hex(), rotation.new_key_id.hex()
        record_security_event(
            conn,
            at_us=now_us,
            code="key_rotated",
            peer=peer.name,
            source=None,
            detail=f"{peer.name} rotated its key {old_id} -> {new_id} (fingerprint "
            f"{rotation.card.fingerprint}); the old key is accepted until "
            f"{rotation.overlap_end.isoformat()}",
        )
    else:
        revocation = verify_revocation(statement, name=peer.name)
        if revocation.revoked_key_id != carrier_key_id:
            raise VerificationError(
                "a revocation travels under the key it revokes (only its holder may revoke it)",
                code=ErrorCode.UNKNOWN_KEY,
            )
        old_id, new_id = _apply_revocation(conn, peer.name, revocation, keys, now_us)
    conn.execute(
        insert(key_events).values(
            owner=peer.name,
            kind=kind.value,
            at_us=now_us,
            old_key_id=old_id,
            new_key_id=new_id,
            statement=statement,
            message_id=message_id,
        )
    )
    return transcript.NewEntry(statement, f"key.{kind.value}", new_id)


def _apply_revocation(
    conn: Connection,
    peer: str,
    revocation: Revocation,
    keys: Mapping[bytes, tuple[SigningPublicKey, KeyStanding]],
    now_us: int,
) -> tuple[str, str]:
    """The revoked key is refused from now on; the new one waits for its fingerprint check;
    messages already received under the revoked key since the compromise are flagged."""
    old_id, new_id = revocation.revoked_key_id.hex(), revocation.new_key_id.hex()
    # The compromise began at the latest when we heard of it: a revocation dated later (a
    # thief's, to keep the key alive) is taken as of now; an earlier revocation's time stands.
    since_us = min(to_us(revocation.compromised_at), now_us)
    previous = keys[revocation.revoked_key_id][1]
    if previous.revoked_at is not None:
        since_us = min(since_us, to_us(previous.revoked_at))
    _set_peer_key_state(
        conn, peer, revocation.revoked_key_id, KeyState.REVOKED, revoked_at_us=since_us
    )
    if revocation.new_key_id not in keys:
        add_key(conn, revocation.card, state=KeyState.PENDING, now_us=now_us, confirmed=False)
    suspect = _suspect_messages(conn, peer, revocation.revoked_key_id, since_us)
    log.warning("ALARM %s declared its key %s compromised", peer, old_id)
    record_security_event(
        conn,
        at_us=now_us,
        code=ErrorCode.KEY_REVOKED.value,
        peer=peer,
        source=None,
        detail=f"{peer} declared its key {old_id} compromised as of "
        f"{from_us(since_us).isoformat()}; its new key {new_id} (fingerprint "
        f"{revocation.card.fingerprint}) is refused until you check that fingerprint with "
        f"{peer} by telephone: hotline peer confirm-key {peer} --fingerprint ...",
    )
    if suspect:
        record_security_event(
            conn,
            at_us=now_us,
            code="key_suspect",
            peer=peer,
            source=None,
            detail=f"{len(suspect)} message(s) signed by the compromised key {old_id} "
            f"after the compromise time may be forgeries: {', '.join(suspect[:20])}",
        )
    return old_id, new_id


def import_revocation(conn: Connection, peer: Card, statement: bytes, now_us: int) -> str:
    """A peer's revocation handed over out of band (``hotline keys revoke --out FILE``): the
    same effect as one received on the link, for when the link cannot carry it (a thief who
    holds the old key may have used the sequence number the owner's carrier needs). It must
    revoke a key of this peer; returns the new key's fingerprint. Its authority is still only
    the fingerprint check that must follow (``confirm_peer_key``)."""
    revocation = verify_revocation(statement, name=peer.name)
    keys = peer_keys(conn, peer)
    if revocation.revoked_key_id not in keys:
        raise VerificationError(
            f"the revocation names key {revocation.revoked_key_id.hex()}, not one of {peer.name}'s",
            code=ErrorCode.UNKNOWN_KEY,
        )
    known = conn.execute(
        select(key_events.c.id).where(
            and_(key_events.c.owner == peer.name, key_events.c.statement == statement)
        )
    ).first()
    if known is None:
        old_id, new_id = _apply_revocation(conn, peer.name, revocation, keys, now_us)
        conn.execute(
            insert(key_events).values(
                owner=peer.name,
                kind=EventKind.REVOCATION.value,
                at_us=now_us,
                old_key_id=old_id,
                new_key_id=new_id,
                statement=statement,
            )
        )
        transcript.append(conn, [transcript.NewEntry(statement, "key.revocation", new_id)])
    return revocation.card.fingerprint


def _set_peer_key_state(
    conn: Connection,
    peer: str,
    key_id: bytes,
    state: KeyState,
    *,
    valid_until_us: int | None = None,
    revoked_at_us: int | None = None,
) -> None:
    values: dict[str, Any] = {"state": state.value}
    if valid_until_us is not None:
        values["valid_until_us"] = valid_until_us
    if revoked_at_us is not None:
        values["revoked_at_us"] = revoked_at_us
    done = _write_history(
        conn,
        update(key_history)
        .where(and_(key_history.c.owner == peer, key_history.c.key_id == key_id.hex()))
        .values(**values),
    )
    if done.rowcount == 0:  # the peer's first key, from before key history: record it now
        card_row = conn.execute(select(peers.c.card).where(peers.c.name == peer)).first()
        if card_row is None:
            raise NotFoundError(f"no peer named {peer!r}")
        card = parse_card_statement(bytes(card_row.card))
        if card.signing_key.key_id != key_id:
            raise ProtocolError(f"key {key_id.hex()} of {peer!r} is not known")
        add_key(conn, card, state=state, now_us=0, confirmed=True)
        _write_history(
            conn,
            update(key_history)
            .where(and_(key_history.c.owner == peer, key_history.c.key_id == key_id.hex()))
            .values(**values),
        )


def _replace_card(conn: Connection, card: Card) -> None:
    conn.execute(
        update(peers)
        .where(peers.c.name == card.name)
        .values(card=card.statement, fingerprint=card.fingerprint)
    )


def _suspect_messages(conn: Connection, peer: str, key_id: bytes, since_us: int) -> list[str]:
    """Messages from ``peer`` signed by ``key_id`` that claim a time at or after ``since_us``."""
    rows = conn.execute(
        select(messages.c.id, messages.c.signed)
        .where(
            and_(
                messages.c.direction == "in",
                messages.c.peer == peer,
                messages.c.created_at_us >= since_us,
            )
        )
        .order_by(messages.c.created_at_us.desc())
        .limit(MAX_SUSPECT_SCAN)
    )
    return [r.id for r in rows if peek_statement(bytes(r.signed))[1] == key_id]


def confirm_peer_key(
    conn: Connection, identity: Identity, peer: str, fingerprint: str, now_us: int
) -> KeyRecord:
    """The operators read the new key's fingerprint to each other: make it the peer's key.

    Other pending keys of the peer are rejected (a thief's revocation can only have offered its
    own key). Envelopes still queued to the peer were sealed to its revoked encryption key:
    they are sealed again to the new one.
    """
    pending = [r for r in history(conn, peer) if r.state is KeyState.PENDING]
    if not pending:
        raise NotFoundError(f"{peer!r} has no key waiting for confirmation")
    chosen = next((r for r in pending if r.fingerprint == fingerprint), None)
    if chosen is None:
        raise VerificationError(
            f"no pending key of {peer!r} has fingerprint {fingerprint}; pending: "
            + ", ".join(r.fingerprint for r in pending),
            code=ErrorCode.FINGERPRINT_MISMATCH,
        )
    for record in pending:
        state = KeyState.ACTIVE if record is chosen else KeyState.REJECTED
        _write_history(
            conn,
            update(key_history)
            .where(and_(key_history.c.owner == peer, key_history.c.key_id == record.key_id))
            .values(state=state.value, confirmed_at_us=now_us if record is chosen else None),
        )
    _replace_card(conn, chosen.card)
    _reseal_queue(conn, identity, chosen.card)
    record_security_event(
        conn,
        at_us=now_us,
        code="key_confirmed",
        peer=peer,
        source=None,
        detail=f"fingerprint {fingerprint} of {peer}'s new key {chosen.key_id} confirmed "
        "out of band; it is now the peer's key",
    )
    return chosen


def _reseal_queue(conn: Connection, identity: Identity, card: Card) -> None:
    """Seal again, to ``card``'s encryption key, every envelope still queued to its node. The
    signed statement inside is unchanged (so are the transcripts); only the envelope is new."""
    rows = conn.execute(
        select(messages.c.id, messages.c.kind, messages.c.signed)
        .join(outbox_queue, outbox_queue.c.message_id == messages.c.id)
        .where(outbox_queue.c.peer == card.name)
    )
    for row in list(rows):
        envelope = seal(
            kind=Kind(row.kind),
            sender=identity.name,
            recipient=card.name,
            envelope_id=row.id,
            statement=bytes(row.signed),
            recipient_key=card.encryption_key,
        )
        conn.execute(update(messages).where(messages.c.id == row.id).values(envelope=envelope))


def events(conn: Connection, owner: str) -> list[tuple[str, bytes]]:
    """(kind, statement) of every key event of ``owner``, in the order recorded."""
    rows = conn.execute(
        select(key_events.c.kind, key_events.c.statement)
        .where(key_events.c.owner == owner)
        .order_by(key_events.c.id)
    )
    return [(row.kind, bytes(row.statement)) for row in rows]


__all__ = [
    "KEY_EVENT_TYPES",
    "REVOCATION_TYPE",
    "ROTATION_TYPE",
    "KeyRecord",
    "OwnEvent",
    "accept_peer_event",
    "add_key",
    "compromise_times",
    "confirm_peer_key",
    "ensure_own_key",
    "events",
    "history",
    "import_revocation",
    "key_events",
    "key_history",
    "peer_keys",
    "record_own_revocation",
    "record_own_rotation",
    "revoked_without_successor",
    "usable_keys",
]

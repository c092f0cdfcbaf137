"""Fetching a lost tail back from the peer, and answering a peer that asks (docs/protocol.md
§7.11, docs/operations.md "Restore").

The requester is a node whose store is on hold with a lost tail (transcript/hold.py): a peer
holds more of the link than the store does. It asks the peer for the sequenced statements of
the link above what it holds in each direction (``POST /v1/transcript/recover``), checks the
answer (hotline.core.recovery.verify_answer) and keeps what verified as evidence
(transcript/recovered.py), in one transaction per answer. Nothing enters its own transcript; the
hold stays. The answerer is any node: it returns what it holds of that link, with proofs in its
own log, signed and sealed to the requester.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, and_, func, select

from hotline import transcript
from hotline.core import merkle
from hotline.core.card import Card, Identity
from hotline.core.encoding import to_us
from hotline.core.envelope import new_id
from hotline.core.keys import SigningPublicKey, peek_statement
from hotline.core.merkle import EMPTY_ROOT
from hotline.core.recovery import (
    ANSWER_ITEMS_BUDGET,
    MAX_ANSWER_ITEMS,
    MAX_ANSWER_OMITTED,
    AnswerItem,
    Asked,
    Direction,
    Omitted,
    OmittedReason,
    Request,
    claimed_requester,
    seal_answer,
    sign_request,
    verify_answer,
    verify_request,
)
from hotline.errors import ErrorCode, HotlineError, NotFoundError, VerificationError
from hotline.link import keyring
from hotline.link.delivery import PeerLink
from hotline.store import Store
from hotline.store.messages import (
    highest_in_seq,
    next_out_seq,
    record_link_event,
    record_security_event,
)
from hotline.store.schema import messages
from hotline.transcript import hold
from hotline.transcript.heads import current_own_head, largest_peer_head, record_peer_head
from hotline.transcript.recovered import highest_recovered, ranges, store_answer

log = logging.getLogger(__name__)

RECOVER_PATH = "/v1/transcript/recover"
STATEMENT_CONTENT_TYPE = "application/vnd.hotline.statement"
SEALED_CONTENT_TYPE = "application/vnd.hotline.sealed"
#: Answers fetched in one round, at most (128 statements each): a long tail is fetched over
#: several rounds rather than holding the peer's and our time in one.
MAX_PAGES_PER_ROUND = 16

_DIRECTION_AT_ANSWERER = {Direction.YOURS: "out", Direction.MINE: "in"}


# --- the answering node ------------------------------------------------------------------------


def answer(
    identity: Identity,
    store: Store,
    peers: dict[str, Card],
    body: bytes,
    now: datetime,
) -> bytes:
    """Check a peer's recovery request and answer it, sealed to the peer.

    Refusals raise (the caller records a security event): an unknown requester, a request that
    does not verify, is not for us or is stale; ``transcript_held`` (503, "not now") while our
    own store is on hold; ``not_found`` when the requester holds a head of our log larger than
    our log (we could prove nothing about it)."""
    requester = claimed_requester(body)
    card = peers.get(requester)
    if card is None or card.role != "node":
        raise VerificationError(f"unknown sender {requester!r}", code=ErrorCode.UNKNOWN_SENDER)
    with store.read() as conn:
        keys = keyring.usable_keys(conn, card, now)
    signer = keys.get(peek_statement(body)[1], card.signing_key)
    request = verify_request(body, signer, requester=requester, responder=identity.name, now=now)
    with store.write() as conn:
        hold.check(conn)
        head = current_own_head(conn, identity, now, max_age_s=0.0)
    if request.known_size > head.size:
        raise NotFoundError(
            f"asked to prove from size {request.known_size}; this log has {head.size} entries",
            fields={"known_size": request.known_size, "size": head.size},
        )
    with store.read() as conn:
        consistency = transcript.consistency_proof(conn, request.known_size, head.size)
        items, omitted, more = _gather(conn, request, head.size)
        yours_last = _highest(conn, requester, "out")
        mine_last = _highest(conn, requester, "in")
    return seal_answer(
        identity,
        request,
        recipient_key=card.encryption_key,
        tree_head=head,
        consistency=consistency,
        yours_last=yours_last,
        mine_last=mine_last,
        items=items,
        omitted=omitted,
        more=more,
    )


def _highest(conn: Connection, peer: str, direction: str) -> int:
    value = conn.execute(
        select(func.max(messages.c.seq)).where(
            and_(messages.c.peer == peer, messages.c.direction == direction)
        )
    ).scalar()
    return int(value or 0)


def _gather(
    conn: Connection, request: Request, size: int
) -> tuple[list[AnswerItem], list[Omitted], bool]:
    """The requester's statements above what it asked from, each with its leaf in our log of
    ``size`` and the proof, within one answer's bounds (count and bytes); ``more`` when the
    bounds cut it short."""
    items: list[AnswerItem] = []
    omitted: list[Omitted] = []
    budget = ANSWER_ITEMS_BUDGET
    more = False
    after = {Direction.YOURS: request.yours_after, Direction.MINE: request.mine_after}
    for direction, column in _DIRECTION_AT_ANSWERER.items():
        rows = list(
            conn.execute(
                # Lengths first, bytes one at a time: a hundred statements of half a megabyte
                # are not read into memory to send a few of them.
                select(
                    messages.c.id,
                    messages.c.seq,
                    messages.c.kind,
                    func.length(messages.c.signed).label("size"),
                )
                .where(
                    and_(
                        messages.c.peer == request.requester,
                        messages.c.direction == column,
                        messages.c.seq > after[direction],
                    )
                )
                .order_by(messages.c.seq)
                .limit(MAX_ANSWER_ITEMS + 1)
            )
        )
        if len(rows) > MAX_ANSWER_ITEMS:
            more = True
        for row in rows[:MAX_ANSWER_ITEMS]:
            if len(items) >= MAX_ANSWER_ITEMS or len(omitted) >= MAX_ANSWER_OMITTED:
                return items, omitted, True
            kind = f"{row.kind}.{column}"
            leaves = [x for x in transcript.leaves_by_ref(conn, row.id) if x.kind == kind]
            inside = [x for x in leaves if x.index < size]
            if not inside:
                if leaves:  # logged after the head we signed: the next answer has it
                    more = True
                    break
                omitted.append(Omitted(direction, int(row.seq), OmittedReason.NOT_LOGGED))
                continue
            index = inside[0].index
            cost = AnswerItem.cost(int(row.size), merkle.inclusion_proof_length(index, size))
            if cost > ANSWER_ITEMS_BUDGET:
                omitted.append(Omitted(direction, int(row.seq), OmittedReason.TOO_LARGE))
                continue
            if cost > budget:
                return items, omitted, True
            signed = conn.execute(select(messages.c.signed).where(messages.c.id == row.id))
            items.append(
                AnswerItem(
                    direction=direction,
                    seq=int(row.seq),
                    statement=bytes(signed.scalar_one()),
                    index=index,
                    proof=tuple(transcript.inclusion_proof(conn, index, size)),
                )
            )
            budget -= cost
    return items, omitted, more


# --- the restored node ------------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    """What one round of recovery from a peer brought."""

    peer: str
    pages: int = 0
    stored_in: list[int] = field(default_factory=list)  # the peer's sequence numbers to us
    stored_out: list[int] = field(default_factory=list)  # ours to the peer
    omitted: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)
    head_size: int | None = None
    complete: bool = False

    def detail(self) -> str:
        parts = []
        if self.stored_out:
            parts.append(f"our messages to {self.peer} seq {ranges(self.stored_out)}")
        if self.stored_in:
            parts.append(f"{self.peer}'s messages to us seq {ranges(self.stored_in)}")
        text = (
            f"recovered from {self.peer} as verified evidence (not in our transcript, which "
            f"stays on hold): {'; '.join(parts) or 'nothing new'}, each signed by its author "
            f"and proved included in {self.peer}'s log (its signed head of size "
            f"{self.head_size}, consistent with its heads we hold); see 'hotline recovered'"
        )
        if self.omitted:
            text += f"; not sent by {self.peer}: {', '.join(self.omitted)}"
        if self.unverifiable:
            text += f"; not verifiable here, not kept: {', '.join(self.unverifiable)}"
        return text


def _own_keys(conn: Connection, identity: Identity) -> dict[bytes, SigningPublicKey]:
    """Every signing key of ours: the current one and those of the key history (rotated or
    revoked alike: a statement we made with a key before its rotation is still ours)."""
    keys = {
        bytes.fromhex(r.key_id): r.card.signing_key for r in keyring.history(conn, identity.name)
    }
    keys[identity.signing.public.key_id] = identity.signing.public
    return keys


async def recover_round(
    link: PeerLink,
    identity: Identity,
    store: Store,
    now: Callable[[], datetime],
) -> Round:
    """Fetch, check and keep what ``link``'s peer holds of the link beyond this store, one
    answer at a time (at most MAX_PAGES_PER_ROUND). A refused answer raises after its security
    event is recorded; nothing of it is kept."""
    peer = link.peer.name
    done = Round(peer)
    after: dict[Direction, int] | None = None
    while done.pages < MAX_PAGES_PER_ROUND:
        with store.read() as conn:
            if after is None:
                recovered = highest_recovered(conn, peer)
                after = {
                    Direction.YOURS: max(highest_in_seq(conn, peer), recovered[Direction.YOURS]),
                    Direction.MINE: max(next_out_seq(conn, peer) - 1, recovered[Direction.MINE]),
                }
            known = largest_peer_head(conn, peer)
            responder_keys = {k: key for k, (key, _s) in keyring.peer_keys(conn, link.peer).items()}
            own_keys = _own_keys(conn, identity)
        moment = now()
        request = sign_request(
            identity,
            responder=peer,
            request_id=new_id(moment),
            created=moment,
            yours_after=after[Direction.YOURS],
            mine_after=after[Direction.MINE],
            known_size=0 if known is None else known.size,
        )
        asked = Asked(
            responder=peer,
            request=request,
            yours_after=after[Direction.YOURS],
            mine_after=after[Direction.MINE],
            known_size=0 if known is None else known.size,
            known_root=EMPTY_ROOT if known is None else known.root,
        )
        data = await link.post(RECOVER_PATH, request, STATEMENT_CONTENT_TYPE)
        try:
            reply = verify_answer(
                identity, data, asked, responder_keys=responder_keys, own_keys=own_keys
            )
        except HotlineError as e:
            with store.write() as conn:
                record_security_event(
                    conn,
                    at_us=to_us(now()),
                    code=str(e.code),
                    peer=peer,
                    source=None,
                    detail=f"recovery answer from {peer} refused, nothing of it kept: {e}",
                )
            raise
        done.pages += 1
        done.head_size = reply.head.size
        with store.write() as conn:
            if not record_peer_head(
                conn,
                peer=peer,
                size=reply.head.size,
                root=reply.head.root,
                kind="tree-head",
                evidence=reply.head.statement,
                now_us=to_us(now()),
            ):
                # Another root for a size we hold: the equivocation alarm is raised (and kept
                # by this commit); nothing under that head is evidence.
                return done
            stored = store_answer(conn, peer=peer, answer=reply, now_us=to_us(now()))
            for conflict in stored.conflicts:
                record_security_event(
                    conn,
                    at_us=to_us(now()),
                    code="recovery_conflict",
                    peer=peer,
                    source=None,
                    detail=f"{peer} shows another signed statement for a recovered {conflict}",
                )
        for item in stored.new:
            (done.stored_in if item.direction is Direction.YOURS else done.stored_out).append(
                item.seq
            )
        done.omitted += [f"{o.direction} seq {o.seq} ({o.reason})" for o in reply.omitted]
        done.unverifiable += [f"{u.direction} seq {u.seq} ({u.reason})" for u in reply.unverifiable]
        progressed = False
        for seq_of in (
            [(i.direction, i.seq) for i in reply.items],
            [(o.direction, o.seq) for o in reply.omitted],
            [(u.direction, u.seq) for u in reply.unverifiable],
        ):
            for direction, seq in seq_of:
                if seq > after[direction]:
                    after[direction] = seq
                    progressed = True
        if not reply.more or not progressed:
            done.complete = not reply.more
            break
    if done.stored_in or done.stored_out:
        with store.write() as conn:
            record_link_event(
                conn, peer=peer, at_us=to_us(now()), kind="tail_recovered", detail=done.detail()
            )
        log.warning("%s", done.detail())
    return done


__all__ = [
    "MAX_PAGES_PER_ROUND",
    "RECOVER_PATH",
    "SEALED_CONTENT_TYPE",
    "STATEMENT_CONTENT_TYPE",
    "Round",
    "answer",
    "recover_round",
]

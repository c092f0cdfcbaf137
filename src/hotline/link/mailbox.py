"""The relay's mailbox: store-and-forward of sealed envelopes for registered nodes.

A relay is a node of a neutral party (role ``relay``; ``hotline relay serve``). Its peers are the
nodes registered with it (added with ``hotline peer add`` after a fingerprint check, like any
peer). It keeps envelopes that one registered node deposits for another and hands them to the
recipient when it pulls. It reads only routing headers (protocol §8.2 checks 1–8): it can neither
open an envelope nor make one that the recipient would accept, and what it could do (drop, delay,
reorder, replay) the nodes notice by sequence numbers, replay checks and receipts.

Every deposit and pull is a signed request (``hotline.core.relay``) checked against the card of
the registered node it names; requests are single-use (their ids are kept until they would be
too old anyway) and time-bounded. Held envelopes are bounded per recipient in number and bytes,
and in time (``relay_hold_s``); they are committed before the deposit is answered, and deleted
once the recipient's next pull confirms it holds them (``after``), or when they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    select,
)

from hotline.core.card import Card
from hotline.core.encoding import to_us
from hotline.core.envelope import MAX_BATCH_ENVELOPES, MAX_ENVELOPE_BYTES, read_header
from hotline.core.relay import (
    MAX_REQUEST_SKEW_S,
    claimed_sender,
    envelope_digest,
    verify_deposit,
    verify_pull,
)
from hotline.errors import ErrorCode, HotlineError, ProtocolError, VerificationError
from hotline.store import Store
from hotline.store.messages import record_security_event
from hotline.store.schema import metadata

log = logging.getLogger(__name__)

#: Most envelopes and bytes one pull hands over (the reply stays under the client's reply limit).
PULL_MAX_ENVELOPES = MAX_BATCH_ENVELOPES
PULL_MAX_BYTES = 6 * 1024 * 1024
#: Request ids are kept this long: twice the time skew a request may have, so a replay is
#: refused by its id while its time would still pass.
REQUEST_MEMORY_S = 2 * MAX_REQUEST_SKEW_S

relay_mailbox = Table(
    "relay_mailbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the pull cursor
    Column("recipient", String(64), nullable=False),
    Column("sender", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("envelope_id", String(36), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("deposited_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    UniqueConstraint("recipient", "digest", name="uq_relay_mailbox_recipient_digest"),
    # Ids are the pull cursor: never reused, even once the table is empty (SQLite would reuse
    # them without AUTOINCREMENT, and a reused id below a recipient's cursor is never handed
    # over).
    sqlite_autoincrement=True,
)
Index("ix_relay_mailbox_recipient_id", relay_mailbox.c.recipient, relay_mailbox.c.id)

relay_requests = Table(
    "relay_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("sender", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class MailboxLimits:
    hold_s: float
    max_envelopes: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Deposited:
    accepted: int
    duplicates: int


class Mailbox:
    """The relay's side: deposits, pulls (long-polled), and pruning, over the relay's store."""

    def __init__(
        self, *, name: str, store: Store, peers: dict[str, Card], limits: MailboxLimits
    ) -> None:
        self.name = name
        self.store = store
        self.peers = peers
        self.limits = limits
        self._arrived: dict[str, asyncio.Event] = {}

    def _signer(self, statement: bytes) -> Card:
        sender = claimed_sender(statement)
        card = self.peers.get(sender)
        if card is None or card.role == "relay":
            raise VerificationError(
                f"{sender!r} is not a node registered with this relay",
                code=ErrorCode.UNKNOWN_SENDER,
            )
        return card

    def _refused(self, error: Exception, source: str, what: str, now: datetime) -> None:
        code = getattr(error, "code", ErrorCode.MALFORMED)
        log.warning("relay %s refused from %s: %s", what, source, error)
        with contextlib.suppress(HotlineError), self.store.write() as conn:
            record_security_event(
                conn,
                at_us=to_us(now),
                code=str(code),
                peer=None,
                source=source,
                detail=f"relay {what} refused: {error}"[:1000],
            )

    @staticmethod
    def _use_request_id(conn: Connection, request_id: str, sender: str, now_us: int) -> None:
        seen = conn.execute(
            select(relay_requests.c.id).where(relay_requests.c.id == request_id)
        ).first()
        if seen is not None:
            raise ProtocolError(
                f"relay request {request_id} was used before", code=ErrorCode.REPLAY_CONFLICT
            )
        conn.execute(insert(relay_requests).values(id=request_id, sender=sender, at_us=now_us))

    def deposit(
        self, statement: bytes, envelopes: list[bytes], *, source: str, now: datetime
    ) -> Deposited:
        """Check a deposit request and keep its envelopes (all, or none)."""
        try:
            return self._deposit(statement, envelopes, now)
        except HotlineError as e:
            self._refused(e, source, "deposit", now)
            raise

    def _deposit(self, statement: bytes, envelopes: list[bytes], now: datetime) -> Deposited:
        now_us = to_us(now)
        # Steps: 1. the request is signed by a registered node, for this relay, recent;
        # 2. each envelope is at most 1 MiB, has a readable header, comes from that node and is
        # addressed to another registered node; 3. the recipient's mailbox has room;
        # 4. store (an envelope already held for that recipient is a duplicate, kept once).
        card = self._signer(statement)
        request = verify_deposit(  # 1
            statement,
            card.signing_key,
            sender=card.name,
            relay=self.name,
            envelopes=envelopes,
            now=now,
        )
        rows: list[dict[str, object]] = []
        recipients: set[str] = set()
        for envelope in envelopes:  # 2
            if len(envelope) > MAX_ENVELOPE_BYTES:
                raise ProtocolError("an envelope over 1 MiB", code=ErrorCode.TOO_LARGE)
            header = read_header(envelope)
            if header.sender != card.name:
                raise VerificationError(
                    f"envelope from {header.sender!r} deposited by {card.name!r}",
                    code=ErrorCode.HEADER_MISMATCH,
                )
            addressee = self.peers.get(header.recipient)
            if addressee is None or addressee.role == "relay" or header.recipient == card.name:
                raise VerificationError(
                    f"{header.recipient!r} is not a node registered with this relay",
                    code=ErrorCode.WRONG_RECIPIENT,
                )
            rows.append(
                {
                    "recipient": header.recipient,
                    "sender": card.name,
                    "kind": header.kind.value,
                    "envelope_id": header.envelope_id,
                    "digest": envelope_digest(envelope),
                    "envelope": envelope,
                    "size": len(envelope),
                    "deposited_at_us": now_us,
                    "expires_at_us": now_us + int(self.limits.hold_s * 1e6),
                }
            )
            recipients.add(header.recipient)
        accepted = duplicates = 0
        with self.store.write() as conn:
            self._use_request_id(conn, request.id, card.name, now_us)
            for row in rows:
                held = conn.execute(
                    select(relay_mailbox.c.id).where(
                        and_(
                            relay_mailbox.c.recipient == row["recipient"],
                            relay_mailbox.c.digest == row["digest"],
                        )
                    )
                ).first()
                if held is not None:
                    duplicates += 1
                    continue
                count, size = conn.execute(
                    select(func.count(), func.coalesce(func.sum(relay_mailbox.c.size), 0)).where(
                        relay_mailbox.c.recipient == row["recipient"]
                    )
                ).one()
                row_size = len(row["envelope"])  # type: ignore[arg-type]
                if (  # 3
                    count + 1 > self.limits.max_envelopes or size + row_size > self.limits.max_bytes
                ):
                    raise ProtocolError(
                        f"the mailbox of {row['recipient']!s} is full ({count} envelopes, "
                        f"{size} bytes)",
                        code=ErrorCode.MAILBOX_FULL,
                    )
                conn.execute(insert(relay_mailbox).values(**row))  # 4
                accepted += 1
        for name in recipients:
            self._event(name).set()
        return Deposited(accepted=accepted, duplicates=duplicates)

    def _event(self, recipient: str) -> asyncio.Event:
        event = self._arrived.get(recipient)
        if event is None:
            event = self._arrived[recipient] = asyncio.Event()
        return event

    async def pull(
        self, statement: bytes, *, source: str, now: datetime
    ) -> tuple[list[bytes], int]:
        """Check a pull request; delete what it confirms; hand over what follows (waiting up to
        the request's ``wait`` seconds for mail when there is none)."""
        try:
            card = self._signer(statement)
            request = verify_pull(
                statement, card.signing_key, sender=card.name, relay=self.name, now=now
            )
            with self.store.write() as conn:
                self._use_request_id(conn, request.id, card.name, to_us(now))
                conn.execute(
                    delete(relay_mailbox).where(
                        and_(
                            relay_mailbox.c.recipient == card.name,
                            relay_mailbox.c.id <= request.after,
                        )
                    )
                )
        except HotlineError as e:
            self._refused(e, source, "pull", now)
            raise
        event = self._event(card.name)
        event.clear()
        mail = self._mail(card.name, request.after, to_us(now))
        if not mail and request.wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=request.wait)
            mail = self._mail(card.name, request.after, to_us(now))
        cursor = mail[-1][0] if mail else request.after
        return [envelope for _id, envelope in mail], cursor

    def _mail(self, recipient: str, after: int, now_us: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        total = 0
        with self.store.read() as conn:
            rows = conn.execute(
                select(relay_mailbox.c.id, relay_mailbox.c.envelope)
                .where(
                    and_(
                        relay_mailbox.c.recipient == recipient,
                        relay_mailbox.c.id > after,
                        relay_mailbox.c.expires_at_us > now_us,
                    )
                )
                .order_by(relay_mailbox.c.id)
                .limit(PULL_MAX_ENVELOPES)
            )
            for row in rows:
                envelope = bytes(row.envelope)
                if out and total + len(envelope) > PULL_MAX_BYTES:
                    break
                total += len(envelope)
                out.append((int(row.id), envelope))
        return out

    def prune(self, now: datetime) -> int:
        """Forget envelopes past their hold time and request ids too old to be replayed."""
        now_us = to_us(now)
        with self.store.write() as conn:
            expired = conn.execute(
                delete(relay_mailbox).where(relay_mailbox.c.expires_at_us <= now_us)
            ).rowcount
            conn.execute(
                delete(relay_requests).where(
                    relay_requests.c.at_us < now_us - int(REQUEST_MEMORY_S * 1e6)
                )
            )
        if expired:
            log.warning("relay: %d envelope(s) expired undelivered and were dropped", expired)
        return int(expired or 0)

    def held(self) -> dict[str, int]:
        """Envelopes held per recipient (for operators of the relay)."""
        with self.store.read() as conn:
            rows = conn.execute(
                select(relay_mailbox.c.recipient, func.count()).group_by(relay_mailbox.c.recipient)
            )
            return {str(r[0]): int(r[1]) for r in rows}


__all__ = [
    "PULL_MAX_BYTES",
    "PULL_MAX_ENVELOPES",
    "Deposited",
    "Mailbox",
    "MailboxLimits",
    "relay_mailbox",
    "relay_requests",
]

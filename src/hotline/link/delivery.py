"""Delivery and heartbeats towards one peer: at-least-once sending with capped back-off.

The worker sends the outbox to the peer lowest sequence first, in batches, with one request in
flight, until each envelope has its DELIVERED receipt or expires. Retries back off exponentially
with jitter, capped (a minute by default) so that a peer that comes back is reached at once.
A heartbeat (signed link test) goes both ways every ``heartbeat_interval_s``; it carries our
latest signed tree head and the sequence numbers we gave up on (so the peer's gaps are explained).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection

from hotline import transcript
from hotline.core.card import Card, Identity
from hotline.core.encoding import b64decode, format_time, parse_time, to_us
from hotline.core.envelope import (
    MAX_COSIGNATURES_LISTED,
    MAX_EXPIRED_LISTED,
    HeartbeatPayload,
    Kind,
    new_id,
    open_envelope,
    seal,
    sign_heartbeat,
)
from hotline.core.keys import SigningPublicKey, peek_statement
from hotline.core.treehead import TreeHead, verify_held_head, verify_tree_head
from hotline.core.witness import Cosignature, verify_cosignature
from hotline.errors import ErrorCode, HotlineError, ProtocolError, TransportError
from hotline.link.inbox import Received
from hotline.link.transport_http import HttpTransport
from hotline.link.transport_relay import RelayClient
from hotline.store import Store
from hotline.store.messages import (
    Outgoing,
    State,
    add_events,
    count_attempts,
    dequeue,
    expired_out_seqs,
    highest_in_seq,
    next_out_seq,
    pending_outgoing,
    record_link_event,
    record_security_event,
    remember_heartbeat,
)
from hotline.transcript import hold
from hotline.transcript.heads import current_own_head, largest_peer_head, record_peer_head
from hotline.transcript.witnessing import latest_cosignatures

log = logging.getLogger(__name__)

#: Receipts waiting to go back for messages the peer declared expired, at most (more come with
#: its next heartbeats, which list the rest again).
MAX_LATE_RECEIPTS = 32
#: Our expired messages are named in every heartbeat for this long after they expired, even
#: below the number the peer expects next: if the peer holds one (its receipt lost), it sends
#: the receipt back (protocol §9.3). Read from the store, so restarts of either side lose none.
LATE_RECEIPT_WINDOW_S = 24 * 3600
#: ... among this many sequence numbers below the peer's next expected (a bound on the scan).
LATE_RECEIPT_SPAN = 4096
#: Envelopes per request: one signature on the receipt covers the whole batch. Small enough that
#: one peer's batch holds the receiver for tens of milliseconds, not hundreds, so a flooding peer
#: cannot delay another's urgent messages much (benchmarks/flood.py: 128 gave +235 ms at p99,
#: 32 gives +61 ms, for about 7% less burst throughput).
BATCH_SIZE = 32
RETRY_BASE_S = 0.25
#: With nothing to send, look at the outbox this often anyway (another process may have written).
IDLE_POLL_S = 2.0
#: A link with this many consecutive failures is DOWN; with one or more it is DEGRADED.
DOWN_AFTER_FAILURES = 3
#: A heartbeat made further than this from our clock is refused (replay or clock off).
MAX_HEARTBEAT_SKEW_S = 300.0
#: How long an accepted heartbeat's id is kept to refuse its replay: the longest it can stay
#: acceptable after it first arrived (made up to the skew ahead of our clock, then accepted
#: until the skew behind it).
HEARTBEAT_ID_KEEP_US = int(2 * MAX_HEARTBEAT_SKEW_S * 1_000_000)
#: An envelope handed to a relay is handed again (to it, or over another transport) only after
#: this long without its receipt: the relay may have lost it (``relay_resend_s``).
RELAY_RESEND_S = 30.0
#: How long a heartbeat through a relay waits for the peer's reply (the peer long-polls).
RELAY_HEARTBEAT_TIMEOUT_S = 15.0


class LinkState(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class LinkStatus:
    state: LinkState = LinkState.UNKNOWN
    last_heartbeat_at: datetime | None = None
    rtt_ms: float | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    skew_alarmed: bool = False  # one alarm per excursion beyond the tolerated skew
    peer_next_expected: int | None = None


ReceiveFn = Callable[[list[bytes], str, Callable[[Connection], None] | None], Awaitable[Received]]


def clock_skew_s(*, sent: datetime, received: datetime, peer_time: datetime) -> float:
    """How far the peer's clock is ahead of ours (negative: behind), assuming it stamped its
    reply halfway through the round trip."""
    midpoint = sent + (received - sent) / 2
    return (peer_time - midpoint).total_seconds()


def backoff_delay(failures: int, cap_s: float, rng: random.Random) -> float:
    """Exponential back-off with "equal jitter": uniform in [c/2, c], c = min(cap, base * 2^n).

    Half the delay is kept so a failing peer is not hammered; the random half spreads retries.
    """
    ceiling = min(cap_s, RETRY_BASE_S * (2 ** min(failures, 30)))
    return rng.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class TransportStatus:
    """One way of reaching the peer: a direct endpoint, or a relay."""

    name: str  # the endpoint URL, or ``relay:NAME``
    kind: str  # "direct" or "relay"
    state: LinkState = LinkState.UNKNOWN
    consecutive_failures: int = 0
    last_ok_at: datetime | None = None
    rtt_ms: float | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "transport": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "last_ok": self.last_ok_at.isoformat() if self.last_ok_at else None,
            "rtt_ms": self.rtt_ms,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
        }


@dataclass(slots=True)
class _Path:
    status: TransportStatus
    http: HttpTransport | None = None
    relay: RelayClient | None = None


class PeerLink:
    """Delivery and heartbeats towards one peer, over its ordered transports.

    The transports are the peer's direct endpoints in its order of preference, then the relays
    this node uses, in its order. Delivery goes over the first transport without a failure since
    its last success; a failure moves it to the next at once (in the same attempt). Heartbeats
    run on every transport, so a transport that comes back is seen within its back-off (at most
    a heartbeat interval), and traffic falls back to the preferred transport as soon as its
    heartbeat answers. The link is DOWN (an alarm) only when no transport works.
    """

    def __init__(
        self,
        *,
        identity: Identity,
        store: Store,
        peer: Card,
        receive: ReceiveFn,
        retry_cap_s: float,
        heartbeat_interval_s: float,
        max_clock_skew_s: float = 30.0,
        relays: Sequence[RelayClient] = (),
        relay_resend_s: float = RELAY_RESEND_S,
    ) -> None:
        self.identity = identity
        self.store = store
        self.peer = peer
        self.receive = receive
        self.retry_cap_s = retry_cap_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_clock_skew_s = max_clock_skew_s
        self.relay_resend_s = relay_resend_s
        self.status = LinkStatus()
        self.wake = asyncio.Event()
        self._rng = random.Random(secrets.randbits(64))  # noqa: S311 (jitter, not secrets)
        self._paths = [
            _Path(TransportStatus(endpoint, "direct"), http=HttpTransport(endpoint, peer.tls_cert))
            for endpoint in peer.endpoints
        ] + [_Path(TransportStatus(client.name, "relay"), relay=client) for client in relays]
        self._active = 0
        #: The peer's keys that may sign besides its card's (a key rotated out, during its
        #: overlap), by key id; set by the node from the key history.
        self.other_keys: dict[bytes, SigningPublicKey] = {}
        #: Why nothing may be sealed to the peer now (its key is revoked and no new key is
        #: confirmed yet), or None.
        self.blocked: str | None = None
        #: Transports whose TLS certificate did not match the pin, alarmed once until they work.
        self._pin_alarmed: set[str] = set()
        #: Envelopes handed to a relay (id -> monotonic time): not handed again for a while.
        self._relayed: dict[str, float] = {}
        #: Our DELIVERED receipts (id -> sealed envelope) for messages the peer declared expired
        #: though we hold them (protocol §9.3): sent back when nothing else waits. Kept only in
        #: memory: if they are lost (a restart), the peer's next heartbeats list the messages
        #: again (for LATE_RECEIPT_WINDOW_S after they expired).
        self._late_receipts: dict[str, bytes] = {}
        #: The peers (nodes) whose heartbeats must confirm a restored store before it appends
        #: again (transcript/hold.py); set by the node.
        self.hold_peers: tuple[str, ...] = ()
        #: The witnesses we know (name -> signing key), to check the cosignatures of the peer's
        #: log its heartbeats carry; set by the node.
        self.witness_keys: dict[str, SigningPublicKey] = {}
        #: Heartbeats sent through a relay, by nonce, waiting for the peer's reply.
        self._waiting: dict[str, asyncio.Future[HeartbeatPayload]] = {}
        #: The envelopes waiting for the peer as the transaction that queued the latest of them
        #: left them (``hand_over``): the worker's next look at the outbox takes these instead
        #: of reading the store.
        self._handed: list[Outgoing] | None = None
        #: A batch is on its way and its receipts are not in yet.
        self._sending = False

    @property
    def transports(self) -> list[TransportStatus]:
        return [path.status for path in self._paths]

    @property
    def active_transport(self) -> str | None:
        return self._paths[self._active].status.name if self._paths else None

    # -- delivery --------------------------------------------------------------------------

    def outbox_limit(self) -> int:
        """How many pending envelopes one look at the outbox reads."""
        return BATCH_SIZE + len(self._relayed)

    @property
    def takes_hand_over(self) -> bool:
        """Whether ``hand_over`` would keep a list now: no batch on its way, and the peer's
        key not revoked (its queued envelopes are sealed again to the confirmed new key, by
        another transaction, before anything goes). A queuing transaction reads none otherwise.
        """
        return not self._sending and self.blocked is None

    def hand_over(self, pending: list[Outgoing]) -> None:
        """``pending_outgoing(conn, peer, outbox_limit())`` as read inside the transaction
        that has just queued envelopes to this peer (it held the write lock, and its transcript
        append checked the hold): the worker's next look at the outbox takes it instead of a
        read transaction of its own, one less on the path of every message. Not kept while a
        batch is on its way: the list names that batch, which would go again once its receipts
        are in."""
        self._handed = pending if self.takes_hand_over else None

    def _expire(self, stale: list[Outgoing], now: datetime) -> None:
        now_us = to_us(now)
        with self.store.write() as conn:
            add_events(
                conn, [(o.id, State.EXPIRED, now_us, "not delivered in time") for o in stale]
            )
            dequeue(conn, [o.id for o in stale])
            for o in stale:
                record_security_event(
                    conn,
                    at_us=now_us,
                    code="message_expired",
                    peer=self.peer.name,
                    source=None,
                    detail=f"message {o.id} (seq {o.seq}) expired undelivered",
                )

    def _order(self) -> list[int]:
        """Transports to try, in order: those without a failure since their last success first
        (in preference order), then the failing ones (one of them may be back)."""
        healthy = [i for i, p in enumerate(self._paths) if p.status.consecutive_failures == 0]
        return healthy + [i for i in range(len(self._paths)) if i not in healthy]

    def _switch_to(self, index: int) -> None:
        """Traffic now goes over transport ``index``: a failover or a fallback link event."""
        if index == self._active:
            return
        old, new = self._paths[self._active].status, self._paths[index].status
        kind = "fallback" if index < self._active else "failover"
        self._active = index
        if new.kind == "direct":
            # What the relay still holds is resent directly at once (a duplicate is harmless:
            # the peer answers it with its first receipt).
            self._relayed.clear()
        log.warning("link to %s: %s from %s to %s", self.peer.name, kind, old.name, new.name)
        with self.store.write() as conn:
            record_link_event(
                conn,
                peer=self.peer.name,
                at_us=to_us(datetime.now(UTC)),
                kind=kind,
                detail=f"{old.name} -> {new.name}",
                transport=new.name,
            )
        self.wake.set()

    def _note_pin_mismatch(self, path: _Path, error: HotlineError) -> None:
        """Someone else answers on this path (a proxy, another node): a security event, once."""
        name = path.status.name
        if error.code != ErrorCode.TLS_PIN_MISMATCH or name in self._pin_alarmed:
            return
        self._pin_alarmed.add(name)
        log.warning("ALARM %s", error.detail)
        with self.store.write() as conn:
            record_security_event(
                conn,
                at_us=to_us(datetime.now(UTC)),
                code=ErrorCode.TLS_PIN_MISMATCH.value,
                peer=self.peer.name,
                source=name,
                detail=error.detail[:500],
            )

    @staticmethod
    def _record_attempt(conn: Connection, batch: list[Outgoing], now_us: int) -> None:
        """The bytes left this node: count the attempt; the first one is the SENT event."""
        count_attempts(conn, [o.id for o in batch])
        add_events(conn, [(o.id, State.SENT, now_us, "") for o in batch if o.attempts == 0])

    def _with_relay(self, envelope_id: str) -> bool:
        handed = self._relayed.get(envelope_id)
        return handed is not None and time.monotonic() - handed < self.relay_resend_s

    async def deliver_once(self) -> int:
        """Send one batch; return how many envelopes were sent (0: nothing to do)."""
        if not self._paths:
            return 0
        if self.blocked is not None:
            # Queued envelopes are sealed to a revoked key: they wait, and are sealed again to
            # the new key once its fingerprint is confirmed (hotline peer confirm-key).
            raise ProtocolError(self.blocked, code=ErrorCode.KEY_REVOKED)
        now = datetime.now(UTC)
        now_us = to_us(now)
        handed, self._handed = self._handed, None
        for envelope_id in [i for i, t in self._relayed.items() if not self._with_relay(i)]:
            del self._relayed[envelope_id]
        if handed is not None:
            pending = handed
        else:
            with self.store.read() as conn:
                # On hold, nothing leaves: a resent envelope's receipt would be appended.
                hold.check(conn)
                pending = pending_outgoing(conn, self.peer.name, self.outbox_limit())
        if not pending:
            return await self._send_late_receipts()
        stale = [o for o in pending if o.expires_at_us is not None and o.expires_at_us <= now_us]
        if stale:
            self._expire(stale, now)
            return len(stale)
        error: HotlineError | None = None
        for index in self._order():
            path = self._paths[index]
            if path.relay is not None:
                batch = [o for o in pending if not self._with_relay(o.id)][:BATCH_SIZE]
                if not batch:
                    return 0  # all of it is with the relay; its receipts come back that way
            else:
                batch = pending[:BATCH_SIZE]
            try:
                self._sending = True
                try:
                    await self._send_over(
                        path, batch, now_us, functools.partial(self._carried, index)
                    )
                finally:
                    self._sending = False
            except HotlineError as e:
                if e.code == ErrorCode.PEER_REFUSED and path.http is not None:
                    raise  # the peer answered: not a failure of the path
                self._path_failed(index, e, "delivery_failed")
                error = e
                continue
            return len(batch)
        if error is None:
            raise ProtocolError(f"no transport to {self.peer.name}")
        raise error

    def send_back_receipts(self, statements: dict[str, bytes]) -> None:
        """The peer declared expired messages we hold: seal our DELIVERED receipts for them to
        it again, so that both sides end with the same state (threat P17)."""
        new = [(i, s) for i, s in statements.items() if i not in self._late_receipts]
        room = MAX_LATE_RECEIPTS - len(self._late_receipts)
        for receipt_id, statement in new[: max(room, 0)]:
            self._late_receipts[receipt_id] = seal(
                kind=Kind.RECEIPT,
                sender=self.identity.name,
                recipient=self.peer.name,
                envelope_id=receipt_id,
                statement=statement,
                recipient_key=self.peer.encryption_key,
            )
        if self._late_receipts:
            self.wake.set()

    async def _send_late_receipts(self) -> int:
        """Send the late receipts waiting (as one batch, over the first transport that takes
        it); return how many left."""
        if not self._late_receipts or self.blocked is not None:
            return 0
        envelopes = list(self._late_receipts.values())
        error: HotlineError | None = None
        for index in self._order():
            path = self._paths[index]
            try:
                if path.relay is not None:
                    await path.relay.deposit(envelopes)
                elif path.http is not None:
                    reply = await path.http.send_batch(envelopes)
                    refused = [r for r in reply.results if r.get("status") == "rejected"]
                    if refused:
                        log.warning(
                            "%s refused receipts we sent back: %s", self.peer.name, refused[:3]
                        )
                else:
                    continue
            except HotlineError as e:
                self._path_failed(index, e, "delivery_failed")
                error = e
                continue
            log.info(
                "sent %s %d receipt(s) for messages it declared expired",
                self.peer.name,
                len(envelopes),
            )
            self._late_receipts.clear()
            return len(envelopes)
        if error is not None:
            raise error
        return 0

    def _carried(self, index: int) -> None:
        """Transport ``index`` carried a batch: it works, and the traffic is on it (recorded
        before the batch's receipts are, so the switch is never later than what it enabled)."""
        self._path_ok(index)
        self._switch_to(index)

    async def _send_over(
        self, path: _Path, batch: list[Outgoing], now_us: int, carried: Callable[[], None]
    ) -> None:
        log.debug(
            "sending %d envelope(s) to %s over %s from seq %d",
            len(batch),
            self.peer.name,
            path.status.name,
            batch[0].seq,
        )
        if path.relay is not None:
            try:
                await path.relay.deposit([o.envelope for o in batch])
            finally:
                with self.store.write() as conn:
                    self._record_attempt(conn, batch, now_us)
            handed = time.monotonic()
            self._relayed.update((o.id, handed) for o in batch)
            carried()
            return
        if path.http is None:
            raise ProtocolError("a transport with neither endpoint nor relay")
        try:
            reply = await path.http.send_batch([o.envelope for o in batch])
        except HotlineError:
            with self.store.write() as conn:
                self._record_attempt(conn, batch, now_us)
            raise
        carried()
        # One transaction records the attempt and the receipts (one commit on the hot path).
        await self.receive(
            reply.receipts,
            f"reply:{self.peer.name}",
            lambda conn: self._record_attempt(conn, batch, now_us),
        )
        # The reply's next_expected is unsigned: it is not taken as the peer's announced number
        # (the lower bound of our heartbeats' `expired` list), or whoever can alter the reply
        # could hide expired numbers from the peer (threat N8). Signed heartbeats set it.
        if (
            reply.next_expected is not None
            and reply.next_expected != self.status.peer_next_expected
        ):
            log.debug(
                "%s's batch reply says next_expected %d (unsigned; not used)",
                self.peer.name,
                reply.next_expected,
            )
        rejected = [r for r in reply.results if r.get("status") == "rejected"]
        if rejected:
            # The peer refused some of our envelopes: that is a fault someone must look at.
            detail = f"peer rejected {len(rejected)} envelope(s): {rejected[:3]}"
            with self.store.write() as conn:
                record_link_event(
                    conn,
                    peer=self.peer.name,
                    at_us=to_us(datetime.now(UTC)),
                    kind="delivery_failed",
                    detail=f"{ErrorCode.PEER_REFUSED}: {detail[:300]}",
                    transport=path.status.name,
                )
            raise ProtocolError(detail, code=ErrorCode.PEER_REFUSED)

    async def run_delivery(self) -> None:
        failures = 0
        while True:
            try:
                sent = await self.deliver_once()
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                failures += 1
                delay = backoff_delay(failures, self.retry_cap_s, self._rng)
                log.info("delivery to %s failed (%s); retry in %.2fs", self.peer.name, e, delay)
                await self._sleep_or_wake(delay)
                continue
            except Exception:
                failures += 1
                log.exception("unexpected error delivering to %s", self.peer.name)
                await self._sleep_or_wake(backoff_delay(failures, self.retry_cap_s, self._rng))
                continue
            if sent:
                failures = 0
                # Let whoever the receipts woke (a long-poll waiting for DELIVERED) answer
                # before the outbox is read again.
                await asyncio.sleep(0)
                continue
            await self._sleep_or_wake(IDLE_POLL_S)

    async def _sleep_or_wake(self, seconds: float) -> None:
        self.wake.clear()
        # asyncio.timeout, not wait_for (which runs the wait as a task of its own): a wake-up
        # reaches the worker in one hop through the event loop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()

    # -- the state of each transport and of the link ---------------------------------------

    def _link_state(self) -> LinkState:
        states = [p.status.state for p in self._paths]
        if LinkState.UP in states:
            return LinkState.UP
        if states and all(s is LinkState.DOWN for s in states):
            return LinkState.DOWN
        if LinkState.DEGRADED in states or LinkState.DOWN in states:
            return LinkState.DEGRADED
        return LinkState.UNKNOWN

    def _path_failed(self, index: int, error: HotlineError, kind: str) -> None:
        path = self._paths[index]
        status = path.status
        status.consecutive_failures += 1
        status.last_error = error.detail[:300]
        status.state = (
            LinkState.DOWN
            if status.consecutive_failures >= DOWN_AFTER_FAILURES
            else LinkState.DEGRADED
        )
        was = self.status.state
        self.status.state = self._link_state()
        self.status.consecutive_failures = min(p.status.consecutive_failures for p in self._paths)
        self.status.last_error = f"{status.name}: {error.detail[:300]}"
        now_us = to_us(datetime.now(UTC))
        try:
            self._note_pin_mismatch(path, error)
            with self.store.write() as conn:
                record_link_event(
                    conn,
                    peer=self.peer.name,
                    at_us=now_us,
                    kind=kind,
                    detail=f"{error.code}: {error.detail[:300]}",
                    transport=status.name,
                )
                if self.status.state is LinkState.DOWN and was is not LinkState.DOWN:
                    # Never silent: a link with no working path is an alarm, once per outage.
                    log.warning("ALARM link to %s is DOWN: %s", self.peer.name, error.detail)
                    record_security_event(
                        conn,
                        at_us=now_us,
                        code="link_down",
                        peer=self.peer.name,
                        source=None,
                        detail=f"no working transport to {self.peer.name}: {error.detail[:300]}",
                    )
        except HotlineError:
            log.exception("could not record a link event")
        if index == self._active:
            # The transport in use failed (a delivery or its heartbeat): traffic moves to the
            # next transport without a failure, if there is one.
            healthy = [i for i in self._order() if self._paths[i].status.consecutive_failures == 0]
            if healthy:
                try:
                    self._switch_to(healthy[0])
                except HotlineError:
                    log.exception("could not record a link event")

    def _path_ok(self, index: int) -> None:
        status = self._paths[index].status
        status.consecutive_failures = 0
        status.state = LinkState.UP
        status.last_error = None
        status.last_ok_at = datetime.now(UTC)
        self._pin_alarmed.discard(status.name)
        was = self.status.state
        self.status.state = LinkState.UP
        self.status.consecutive_failures = 0
        self.status.last_error = None
        if was is LinkState.DOWN:
            log.warning("link to %s is UP again over %s", self.peer.name, status.name)
            try:
                with self.store.write() as conn:
                    record_link_event(
                        conn,
                        peer=self.peer.name,
                        at_us=to_us(datetime.now(UTC)),
                        kind="link_up",
                        transport=status.name,
                    )
            except HotlineError:
                log.exception("could not record a link event")

    # -- heartbeats ------------------------------------------------------------------------

    def make_heartbeat(
        self, now: datetime, *, nonce: str, echo: str | None, next_expected: int
    ) -> bytes:
        # Expired messages the peer may still be waiting for: from what it told us it expects.
        above = self.status.peer_next_expected or 1
        with self.store.write() as conn:
            last_seq = next_out_seq(conn, self.peer.name) - 1
            expired = expired_out_seqs(conn, self.peer.name, MAX_EXPIRED_LISTED, above=above)
            if len(expired) < MAX_EXPIRED_LISTED and above > 1:
                expired = (
                    expired_out_seqs(
                        conn,
                        self.peer.name,
                        MAX_EXPIRED_LISTED - len(expired),
                        above=max(1, above - LATE_RECEIPT_SPAN),
                        below=above,
                        expired_since_us=to_us(now) - LATE_RECEIPT_WINDOW_S * 1_000_000,
                    )
                    + expired
                )
            # On hold our log may be shorter than one the peer saw: a head of it, which we could
            # not prove consistent with the peer's larger one, would only raise a false alarm.
            on_hold = hold.current(conn) is not None
            head = None if on_hold else current_own_head(conn, self.identity, now, max_age_s=0.0)
            yours = largest_peer_head(conn, self.peer.name)
            cosigned = [] if on_hold else latest_cosignatures(conn, MAX_COSIGNATURES_LISTED)
        heartbeat_id = new_id(now)
        statement = sign_heartbeat(
            self.identity,
            to=self.peer.name,
            heartbeat_id=heartbeat_id,
            created=now,
            nonce=nonce,
            echo=echo,
            last_seq=last_seq,
            next_expected=next_expected,
            expired=expired,
            tree_head=None if head is None else head.statement,
            your_head=None if yours is None else yours.evidence,
            cosignatures=cosigned,
        )
        return seal(
            kind=Kind.HEARTBEAT,
            sender=self.identity.name,
            recipient=self.peer.name,
            envelope_id=heartbeat_id,
            statement=statement,
            recipient_key=self.peer.encryption_key,
        )

    def open_heartbeat(self, data: bytes, now: datetime) -> HeartbeatPayload:
        """Open a heartbeat from the peer: authentic, recent, not seen before; keep its head."""
        opened = open_envelope(
            self.identity,
            data,
            lambda name: self.peer.signing_key if name == self.peer.name else None,
            other_keys=lambda _name: self.other_keys,
        )
        payload = opened.payload
        if not isinstance(payload, HeartbeatPayload):
            raise ProtocolError("expected a heartbeat envelope")
        created = parse_time(payload.created, what="heartbeat created")
        if abs(now - created) > timedelta(seconds=MAX_HEARTBEAT_SKEW_S):
            raise ProtocolError(
                f"heartbeat made at {payload.created}, more than {MAX_HEARTBEAT_SKEW_S:.0f}s "
                "from our clock (a replay, or a clock that is off)",
                code=ErrorCode.REPLAY_CONFLICT,
            )
        head = None
        if payload.tree_head is not None:
            statement = b64decode(payload.tree_head, what="tree head", limit=64 * 1024)
            head = verify_tree_head(
                statement,
                self.other_keys.get(peek_statement(statement)[1], self.peer.signing_key),
                log=self.peer.name,
            )
        witnessed = self._witnessed_heads(payload)
        with self.store.write() as conn:
            # In the store, not the process: a heartbeat captured before a restart of this
            # node is still refused after it (threat N5).
            if not remember_heartbeat(
                conn, self.peer.name, payload.id, to_us(now), keep_us=HEARTBEAT_ID_KEEP_US
            ):
                raise ProtocolError(
                    f"heartbeat {payload.id} replayed", code=ErrorCode.REPLAY_CONFLICT
                )
            # What a witness cosigned of the peer's log is a head of it like any other: proved
            # consistent with the rest (§11.3), and two roots for one size are an equivocation.
            shown = [] if head is None else [(head.size, head.root, "tree-head", head.statement)]
            shown += [(c.size, c.root, "cosigned", c.statement) for c in witnessed]
            for size, root, kind, evidence in shown:
                record_peer_head(
                    conn,
                    peer=self.peer.name,
                    size=size,
                    root=root,
                    kind=kind,
                    evidence=evidence,
                    now_us=to_us(now),
                )
        self.compare_with_peer(payload, now)
        return payload

    def _witnessed_heads(self, payload: HeartbeatPayload) -> list[Cosignature]:
        """The cosignatures of the peer's log in its heartbeat by witnesses we know, checked;
        those of witnesses we do not know are passed over (nothing to check them with)."""
        by_key = {key.key_id: (name, key) for name, key in self.witness_keys.items()}
        checked: list[Cosignature] = []
        for text in payload.cosignatures:
            statement = b64decode(text, what="cosignature", limit=64 * 1024)
            known = by_key.get(peek_statement(statement)[1])
            if known is None:
                log.debug("%s shows a cosignature by a witness we do not know", self.peer.name)
                continue
            name, key = known
            try:
                checked.append(verify_cosignature(statement, key, witness=name, log=self.peer.name))
            except HotlineError as e:
                # The peer signed the heartbeat that carries it: a fault or a lie of the peer's,
                # but not a reason to refuse its heartbeat (the link stays up).
                log.warning("%s shows a cosignature by %s that fails: %s", self.peer.name, name, e)
        return checked

    def _our_head_held_by_peer(self, payload: HeartbeatPayload) -> TreeHead | None:
        """The head of our log the peer says it holds, verified with our own key; None when it
        sent none or one we cannot check (signed by a key of ours rotated out)."""
        if payload.your_head is None:
            return None
        statement = b64decode(payload.your_head, what="your_head", limit=64 * 1024)
        if peek_statement(statement)[1] != self.identity.signing.public.key_id:
            log.info(
                "%s holds a head of ours signed by an earlier key; not compared", self.peer.name
            )
            return None
        return verify_held_head(statement, self.identity.signing.public, log=self.identity.name)

    def compare_with_peer(self, payload: HeartbeatPayload, now: datetime) -> None:
        """What the peer holds of our log and sequence against this store (transcript/hold.py):
        more than we have puts the store on hold with a ``log_behind`` alarm; a restored store
        the peer confirms (together with every other peer node) is released."""
        try:
            held = self._our_head_held_by_peer(payload)
        except HotlineError as e:
            # Signed by the peer, so not damaged on the way: the peer sent a head that is not ours.
            with self.store.write() as conn:
                record_security_event(
                    conn,
                    at_us=to_us(now),
                    code=str(e.code),
                    peer=self.peer.name,
                    source=None,
                    detail=f"the head of our log {self.peer.name} says it holds is refused: {e}",
                )
            return
        with self.store.write() as conn:
            our_size = transcript.size(conn)
            view = hold.PeerView(
                peer=self.peer.name,
                our_size=our_size,
                held_size=None if held is None else held.size,
                held_time=None if held is None else format_time(held.time),
                our_last_out=next_out_seq(conn, self.peer.name) - 1,
                peer_next_expected=payload.next_expected,
                peer_last_seq=payload.last_seq,
                our_last_in=highest_in_seq(conn, self.peer.name),
            )
            current = hold.current(conn)
            if view.missing():
                detail = view.detail()
                if (
                    current is not None
                    and current.reason == hold.LOST_TAIL
                    and current.detail.startswith("; ".join(view.missing()))
                ):
                    return  # said already (the peer's own later messages change nothing here)
                hold.put_on_hold(conn, reason=hold.LOST_TAIL, detail=detail, now_us=to_us(now))
                record_security_event(
                    conn,
                    at_us=to_us(now),
                    code="log_behind",
                    peer=self.peer.name,
                    source=None,
                    detail=detail,
                )
                log.warning("ALARM log_behind: %s", detail)
                return
            if current is not None and hold.confirm(conn, self.peer.name, self.hold_peers):
                record_link_event(
                    conn,
                    peer=self.peer.name,
                    at_us=to_us(now),
                    kind="hold_lifted",
                    detail=f"every peer confirmed the restored store ({our_size} entries)",
                )
                log.warning(
                    "restored store confirmed by every peer (last: %s): appending again",
                    self.peer.name,
                )
        self.wake.set()

    def note_clock_skew(self, conn: Connection, skew_s: float, now: datetime) -> None:
        """Tolerate skew up to ``max_clock_skew_s``; beyond it, one alarm per excursion."""
        beyond = abs(skew_s) > self.max_clock_skew_s
        if beyond and not self.status.skew_alarmed:
            log.warning("ALARM clock of %s is %+.1fs from ours", self.peer.name, skew_s)
            record_security_event(
                conn,
                at_us=to_us(now),
                code="clock_skew",
                peer=self.peer.name,
                source=None,
                detail=f"{self.peer.name}'s clock is {skew_s:+.1f}s from ours (tolerated: "
                f"{self.max_clock_skew_s:g}s); deadlines use our clock, times shown are "
                "its claims",
            )
        self.status.skew_alarmed = beyond

    async def heartbeat_once(self, next_expected: int, index: int | None = None) -> float:
        """Send a heartbeat over transport ``index`` (the active one by default), check the
        signed echo, record the round-trip time (ms)."""
        if not self._paths:
            raise ProtocolError(f"peer {self.peer.name!r} has no endpoint")
        index = self._active if index is None else index
        path = self._paths[index]
        now = datetime.now(UTC)
        nonce = secrets.token_hex(16)
        envelope = self.make_heartbeat(now, nonce=nonce, echo=None, next_expected=next_expected)
        started = time.perf_counter()
        if path.relay is not None:
            payload = await self._heartbeat_via_relay(path.relay, envelope, nonce)
        elif path.http is not None:
            reply = await path.http.send_heartbeat(envelope)
            payload = self.open_heartbeat(reply, datetime.now(UTC))
        else:
            raise ProtocolError("a transport with neither endpoint nor relay")
        rtt_ms = (time.perf_counter() - started) * 1000
        if payload.echo != nonce:
            raise ProtocolError("heartbeat reply does not echo our nonce")
        received = datetime.now(UTC)
        self.status.last_heartbeat_at = received
        self.status.rtt_ms = rtt_ms
        path.status.rtt_ms = rtt_ms
        self.status.peer_next_expected = payload.next_expected
        self._path_ok(index)
        # The peer signed its reply's time halfway through the round trip, on its clock.
        skew_s = clock_skew_s(
            sent=now,
            received=received,
            peer_time=parse_time(payload.created, what="heartbeat created"),
        )
        with self.store.write() as conn:
            record_link_event(
                conn,
                peer=self.peer.name,
                at_us=to_us(received),
                kind="heartbeat_ok",
                rtt_us=int(rtt_ms * 1000),
                detail=f"clock skew {skew_s:+.3f}s",
                transport=path.status.name,
            )
            self.note_clock_skew(conn, skew_s, received)
        if index < self._active:
            self._switch_to(index)  # the preferred transport is back: use it again
        self.wake.set()  # the peer is reachable: try the outbox now
        return rtt_ms

    async def _heartbeat_via_relay(
        self, relay: RelayClient, envelope: bytes, nonce: str
    ) -> HeartbeatPayload:
        """Deposit the heartbeat; the peer's reply comes back through our pull of that relay."""
        waiter: asyncio.Future[HeartbeatPayload] = asyncio.get_running_loop().create_future()
        self._waiting[nonce] = waiter
        try:
            await relay.deposit([envelope])
            try:
                return await asyncio.wait_for(waiter, timeout=RELAY_HEARTBEAT_TIMEOUT_S)
            except TimeoutError as e:
                raise TransportError(
                    f"{relay.name}: no heartbeat reply from {self.peer.name} within "
                    f"{RELAY_HEARTBEAT_TIMEOUT_S:g}s"
                ) from e
        finally:
            self._waiting.pop(nonce, None)

    def heartbeat_reply_arrived(self, payload: HeartbeatPayload) -> bool:
        """A heartbeat reply came through a relay: hand it to the heartbeat waiting for it."""
        waiter = self._waiting.get(payload.echo or "")
        if waiter is None or waiter.done():
            return False
        waiter.set_result(payload)
        return True

    async def run_heartbeats(self, next_expected: Callable[[], int]) -> None:
        """Heartbeats on every transport, each with its own back-off."""
        await asyncio.gather(
            *(self._heartbeats_over(index, next_expected) for index in range(len(self._paths)))
        )

    async def _heartbeats_over(self, index: int, next_expected: Callable[[], int]) -> None:
        failures = 0
        while True:
            try:
                await self.heartbeat_once(next_expected(), index)
                failures = 0
                await asyncio.sleep(self.heartbeat_interval_s)
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                failures += 1
                self._path_failed(index, e, "heartbeat_failed")
                # A failing transport is probed again soon (a returning path is used at once),
                # at most one heartbeat interval later.
                await asyncio.sleep(
                    min(
                        self.heartbeat_interval_s,
                        backoff_delay(failures, self.retry_cap_s, self._rng),
                    )
                )

    def _direct(self) -> HttpTransport:
        """The direct transport for requests that need an answer (proofs, witnessing): the
        active one if it is direct, else the first direct one."""
        candidates = [self._paths[self._active], *self._paths]
        for path in candidates:
            if path.http is not None:
                return path.http
        raise ProtocolError(f"peer {self.peer.name!r} has no direct endpoint")

    async def fetch(self, path: str, params: dict[str, str | int]) -> bytes:
        """GET from the peer's link API (transcript proofs)."""
        return await self._direct().get(path, params)

    async def post(self, path: str, body: bytes, content_type: str) -> bytes:
        """POST raw bytes to the peer's link API (a restored node's recovery request)."""
        return await self._direct().post(path, body, content_type)

    async def exchange(self, path: str, payload: object) -> tuple[int, bytes]:
        """POST JSON to the peer's link API; status and body (witness requests)."""
        return await self._direct().exchange(path, payload)

    async def close(self) -> None:
        for path in self._paths:
            if path.http is not None:
                await path.http.close()

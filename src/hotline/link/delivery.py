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
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection

from hotline.core.card import Card, Identity
from hotline.core.encoding import b64decode, parse_time, to_us
from hotline.core.envelope import (
    HeartbeatPayload,
    Kind,
    new_id,
    open_envelope,
    seal,
    sign_heartbeat,
)
from hotline.core.keys import SigningPublicKey, peek_statement
from hotline.core.treehead import verify_tree_head
from hotline.errors import ErrorCode, HotlineError, ProtocolError
from hotline.link.inbox import Received
from hotline.link.transport_http import HttpTransport
from hotline.store import Store
from hotline.store.messages import (
    Outgoing,
    State,
    add_events,
    count_attempts,
    dequeue,
    expired_out_seqs,
    next_out_seq,
    pending_outgoing,
    record_link_event,
    record_security_event,
)
from hotline.transcript.heads import current_own_head, record_peer_head

log = logging.getLogger(__name__)

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
#: Heartbeat ids remembered to refuse replays within the skew window.
SEEN_HEARTBEATS = 4096


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


class PeerLink:
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
    ) -> None:
        self.identity = identity
        self.store = store
        self.peer = peer
        self.receive = receive
        self.retry_cap_s = retry_cap_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_clock_skew_s = max_clock_skew_s
        self.status = LinkStatus()
        self.wake = asyncio.Event()
        self._seen_heartbeats: deque[str] = deque(maxlen=SEEN_HEARTBEATS)
        self._rng = random.Random(secrets.randbits(64))  # noqa: S311 (jitter, not secrets)
        # The peer's endpoints in its order of preference: the first that works carries the
        # traffic; heartbeats bring it back to the first as soon as that answers again.
        self._transports = [HttpTransport(endpoint) for endpoint in peer.endpoints]
        self._active = 0
        #: The peer's keys that may sign besides its card's (a key rotated out, during its
        #: overlap), by key id; set by the node from the key history.
        self.other_keys: dict[bytes, SigningPublicKey] = {}
        #: Why nothing may be sealed to the peer now (its key is revoked and no new key is
        #: confirmed yet), or None.
        self.blocked: str | None = None

    # -- delivery --------------------------------------------------------------------------

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

    @property
    def _transport(self) -> HttpTransport | None:
        return self._transports[self._active] if self._transports else None

    def _fail_over(self, error: HotlineError) -> None:
        """The active path failed: use the next endpoint from the next attempt on."""
        if len(self._transports) < 2 or error.code != ErrorCode.PEER_UNREACHABLE:
            return
        old = self._transports[self._active].endpoint
        self._active = (self._active + 1) % len(self._transports)
        new = self._transports[self._active].endpoint
        log.warning("link to %s: %s failed, failing over to %s", self.peer.name, old, new)
        with self.store.write() as conn:
            record_link_event(
                conn,
                peer=self.peer.name,
                at_us=to_us(datetime.now(UTC)),
                kind="failover",
                detail=f"{old} -> {new}",
            )

    async def _try_preferred(self, next_expected: int) -> None:
        """On a fallback path, probe the preferred endpoint; go back to it once it answers."""
        if self._active == 0:
            return
        current = self._active
        self._active = 0
        try:
            await self.heartbeat_once(next_expected)
        except HotlineError:
            self._active = current
            return
        with self.store.write() as conn:
            record_link_event(
                conn,
                peer=self.peer.name,
                at_us=to_us(datetime.now(UTC)),
                kind="fallback",
                detail=f"back on {self._transports[0].endpoint}",
            )

    @staticmethod
    def _record_attempt(conn: Connection, batch: list[Outgoing], now_us: int) -> None:
        """The bytes left this node: count the attempt; the first one is the SENT event."""
        count_attempts(conn, [o.id for o in batch])
        add_events(conn, [(o.id, State.SENT, now_us, "") for o in batch if o.attempts == 0])

    async def deliver_once(self) -> int:
        """Send one batch; return how many envelopes were pending (0: nothing to do)."""
        if self._transport is None:
            return 0
        if self.blocked is not None:
            # Queued envelopes are sealed to a revoked key: they wait, and are sealed again to
            # the new key once its fingerprint is confirmed (hotline peer confirm-key).
            raise ProtocolError(self.blocked, code=ErrorCode.KEY_REVOKED)
        now = datetime.now(UTC)
        now_us = to_us(now)
        with self.store.read() as conn:
            batch = pending_outgoing(conn, self.peer.name, BATCH_SIZE)
        if not batch:
            return 0
        stale = [o for o in batch if o.expires_at_us is not None and o.expires_at_us <= now_us]
        if stale:
            self._expire(stale, now)
            return len(batch)
        log.debug(
            "sending %d envelope(s) to %s from seq %d", len(batch), self.peer.name, batch[0].seq
        )
        try:
            reply = await self._transport.send_batch([o.envelope for o in batch])
        except HotlineError as e:
            with self.store.write() as conn:
                self._record_attempt(conn, batch, now_us)
            self._fail_over(e)
            raise
        # One transaction records the attempt and the receipts (one commit on the hot path).
        await self.receive(
            reply.receipts,
            f"reply:{self.peer.name}",
            lambda conn: self._record_attempt(conn, batch, now_us),
        )
        self.status.peer_next_expected = reply.next_expected
        rejected = [r for r in reply.results if r.get("status") == "rejected"]
        if rejected:
            # The peer refused some of our envelopes: that is a fault someone must look at.
            raise ProtocolError(
                f"peer rejected {len(rejected)} envelope(s): {rejected[:3]}",
                code=ErrorCode.PEER_REFUSED,
            )
        return len(batch)

    async def run_delivery(self) -> None:
        failures = 0
        while True:
            try:
                sent = await self.deliver_once()
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                failures += 1
                self._note_failure(e)
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
                if failures:
                    self._note_recovered()
                failures = 0
                continue
            await self._sleep_or_wake(IDLE_POLL_S)

    async def _sleep_or_wake(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    def _note_failure(self, error: HotlineError, kind: str = "delivery_failed") -> None:
        was = self.status.state
        self.status.consecutive_failures += 1
        self.status.last_error = error.detail[:300]
        self.status.state = (
            LinkState.DOWN
            if self.status.consecutive_failures >= DOWN_AFTER_FAILURES
            else LinkState.DEGRADED
        )
        now_us = to_us(datetime.now(UTC))
        try:
            with self.store.write() as conn:
                record_link_event(
                    conn,
                    peer=self.peer.name,
                    at_us=now_us,
                    kind=kind,
                    detail=f"{error.code}: {error.detail[:300]}",
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
                        detail=f"no working path to {self.peer.name}: {error.detail[:300]}",
                    )
        except HotlineError:
            log.exception("could not record a link event")

    def _note_recovered(self) -> None:
        if self.status.state is LinkState.DOWN:
            log.warning("link to %s is UP again", self.peer.name)
            try:
                with self.store.write() as conn:
                    record_link_event(
                        conn, peer=self.peer.name, at_us=to_us(datetime.now(UTC)), kind="link_up"
                    )
            except HotlineError:
                log.exception("could not record a link event")
        self.status.consecutive_failures = 0
        self.status.state = LinkState.UP
        self.status.last_error = None

    # -- heartbeats ------------------------------------------------------------------------

    def make_heartbeat(
        self, now: datetime, *, nonce: str, echo: str | None, next_expected: int
    ) -> bytes:
        # Expired messages the peer may still be waiting for: from what it told us it expects.
        above = self.status.peer_next_expected or 1
        with self.store.write() as conn:
            last_seq = next_out_seq(conn, self.peer.name) - 1
            expired = expired_out_seqs(conn, self.peer.name, above, limit=1024)
            head = current_own_head(conn, self.identity, now, max_age_s=0.0)
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
            tree_head=head.statement,
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
        if payload.id in self._seen_heartbeats:
            raise ProtocolError(f"heartbeat {payload.id} replayed", code=ErrorCode.REPLAY_CONFLICT)
        self._seen_heartbeats.append(payload.id)
        if payload.tree_head is not None:
            statement = b64decode(payload.tree_head, what="tree head", limit=64 * 1024)
            head = verify_tree_head(
                statement,
                self.other_keys.get(peek_statement(statement)[1], self.peer.signing_key),
                log=self.peer.name,
            )
            with self.store.write() as conn:
                record_peer_head(
                    conn,
                    peer=self.peer.name,
                    size=head.size,
                    root=head.root,
                    kind="tree-head",
                    evidence=head.statement,
                    now_us=to_us(now),
                )
        return payload

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

    async def heartbeat_once(self, next_expected: int) -> float:
        """Send a heartbeat, check the signed echo, record the round-trip time (ms)."""
        if self._transport is None:
            raise ProtocolError(f"peer {self.peer.name!r} has no endpoint")
        now = datetime.now(UTC)
        nonce = secrets.token_hex(16)
        envelope = self.make_heartbeat(now, nonce=nonce, echo=None, next_expected=next_expected)
        started = time.perf_counter()
        reply = await self._transport.send_heartbeat(envelope)
        rtt_ms = (time.perf_counter() - started) * 1000
        payload = self.open_heartbeat(reply, datetime.now(UTC))
        if payload.echo != nonce:
            raise ProtocolError("heartbeat reply does not echo our nonce")
        self.status.last_heartbeat_at = datetime.now(UTC)
        self.status.rtt_ms = rtt_ms
        self.status.peer_next_expected = payload.next_expected
        self._note_recovered()
        # The peer signed its reply's time halfway through the round trip, on its clock.
        skew_s = clock_skew_s(
            sent=now,
            received=self.status.last_heartbeat_at,
            peer_time=parse_time(payload.created, what="heartbeat created"),
        )
        with self.store.write() as conn:
            record_link_event(
                conn,
                peer=self.peer.name,
                at_us=to_us(self.status.last_heartbeat_at),
                kind="heartbeat_ok",
                rtt_us=int(rtt_ms * 1000),
                detail=f"clock skew {skew_s:+.3f}s",
            )
            self.note_clock_skew(conn, skew_s, self.status.last_heartbeat_at)
        self.wake.set()  # the peer is reachable: try the outbox now
        return rtt_ms

    async def run_heartbeats(self, next_expected: Callable[[], int]) -> None:
        failures = 0
        while True:
            try:
                await self.heartbeat_once(next_expected())
                failures = 0
                await self._try_preferred(next_expected())
                await asyncio.sleep(self.heartbeat_interval_s)
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                failures += 1
                self._note_failure(e, "heartbeat_failed")
                self._fail_over(e)
                await asyncio.sleep(
                    min(
                        self.heartbeat_interval_s,
                        backoff_delay(failures, self.retry_cap_s, self._rng),
                    )
                )

    async def fetch(self, path: str, params: dict[str, str | int]) -> bytes:
        """GET from the peer's link API (transcript proofs)."""
        if self._transport is None:
            raise ProtocolError(f"peer {self.peer.name!r} has no endpoint")
        return await self._transport.get(path, params)

    async def exchange(self, path: str, payload: object) -> tuple[int, bytes]:
        """POST JSON to the peer's link API; status and body (witness requests)."""
        if self._transport is None:
            raise ProtocolError(f"peer {self.peer.name!r} has no endpoint")
        return await self._transport.exchange(path, payload)

    async def close(self) -> None:
        for transport in self._transports:
            await transport.close()

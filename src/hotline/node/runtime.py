"""A running node: its identity, store, peer links and background tasks, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from hotline import transcript
from hotline.core.card import Card
from hotline.core.encoding import b64decode, b64encode, decode_json, to_us
from hotline.core.envelope import HeartbeatPayload, Kind, new_id, read_header
from hotline.core.treehead import TreeHead, verify_tree_head
from hotline.core.witness import Cosignature, verify_cosignature
from hotline.deconfliction import Registry, activity_volumes
from hotline.errors import (
    ErrorCode,
    HotlineError,
    InputError,
    NotFoundError,
    ProtocolError,
    TransportError,
    VerificationError,
    WireError,
)
from hotline.link import inbox, keyring, outbox, recovery
from hotline.link.deadlines import Overdue, escalate
from hotline.link.delivery import MAX_LATE_RECEIPTS, PeerLink, backoff_delay
from hotline.link.inbox import Received
from hotline.link.mailbox import Mailbox, MailboxLimits
from hotline.link.status import link_report, transport_reports
from hotline.link.transport_relay import RelayClient
from hotline.node.home import SIGNING_KEY_FILE, NodeHome
from hotline.operators.release import needs_release
from hotline.referrals.cases import list_cases, validate_pending
from hotline.store.messages import (
    MessageView,
    State,
    delivered_receipts_for_seqs,
    fill_gaps,
    get_message,
    message_state,
    pending_outgoing,
    record_link_event,
    record_security_event,
    stale_gaps,
)
from hotline.transcript import hold
from hotline.transcript.heads import (
    OWN_HEAD_MAX_AGE_S,
    PeerHead,
    check_chain,
    check_consistency,
    current_own_head,
    mark_all_checked,
    mark_checked,
    next_check,
    raise_equivocation,
    record_peer_head,
    unchecked_chain,
)
from hotline.transcript.witnessing import (
    cosign_head,
    latest_cosignature,
    latest_witnessed,
    record_cosignature,
    witness_lag,
    witnessed_heads,
)

log = logging.getLogger(__name__)

#: A skipped sequence number is reported lost after this many heartbeat intervals.
GAP_GRACE_INTERVALS = 2.0
#: The deconfliction registry is reloaded from the store when older than this (plans filed
#: through the CLI are seen by the next notification after it).
REGISTRY_MAX_AGE_S = 30.0
#: How often the node looks for messages past their acknowledgement deadline.
ESCALATION_SCAN_S = 5.0
#: How often each peer's new tree heads are proved consistent with the ones checked before.
HEAD_CHECK_INTERVAL_S = 5.0
#: Most heads (the checked baseline included) proved by one consistency-chain request.
CHAIN_LIMIT = 32
#: Longest ``sizes`` parameter of a consistency-chain request (CHAIN_LIMIT sizes of 18 digits).
CHAIN_SIZES_MAX_CHARS = CHAIN_LIMIT * 19
#: Largest consistency-chain reply parsed: 31 proofs of at most 64 hashes, in base64 JSON.
CHAIN_REPLY_LIMIT = 192 * 1024
#: A failed consistency proof is fetched this many times before it counts against the peer.
PROOF_ATTEMPTS = 3
#: Longest a stopping node waits for its cancelled tasks, then for its links to close.
STOP_TASKS_S = 1.0
#: How often a node asks each witness to cosign its latest head (at most; never more often
#: than the heartbeat interval).
WITNESS_INTERVAL_S = 10.0
#: How often a relay forgets envelopes past their hold time.
RELAY_PRUNE_S = 30.0


def check_release(draft: outbox.Draft) -> None:
    """Two-person release, enforced where every send of a running node passes: a message of a
    priority that needs release goes out only with a releaser who is not its author."""
    if not needs_release(draft.priority):
        return
    if draft.released_by is None:
        raise ProtocolError(
            f"a {draft.priority.upper()} message needs a second person's release: submit it "
            "to the release queue (console, or hotline send --operator NAME)",
            code=ErrorCode.RELEASE_REQUIRED,
        )
    if draft.released_by == draft.author:
        raise ProtocolError(
            "the author cannot release their own message", code=ErrorCode.RELEASE_REQUIRED
        )


class _CosignReply(msgspec.Struct, forbid_unknown_fields=True):
    cosignature: str


class _ErrorReply(msgspec.Struct):
    error: dict[str, Any]


def decode_proof_reply(data: bytes) -> list[bytes]:
    """The ``proof`` list of a consistency reply, strictly parsed."""
    reply = decode_json(data, _ProofReply, what="consistency proof reply", limit=64 * 1024)
    return [b64decode(h, what="proof hash", size=32) for h in reply.proof]


def parse_chain_sizes(text: str) -> list[int]:
    """The ``sizes`` of a consistency-chain request: 2 to CHAIN_LIMIT decimal sizes, comma
    separated, strictly increasing (InputError otherwise; sizes beyond the log are the proof's
    NotFoundError)."""
    parts = text.split(",")
    if not 2 <= len(parts) <= CHAIN_LIMIT:
        raise InputError(
            f"a chain has 2 to {CHAIN_LIMIT} sizes, not {len(parts)}", fields={"sizes": text[:80]}
        )
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        raise InputError("sizes are decimal integers", fields={"sizes": text[:80]})
    sizes = [int(p) for p in parts]
    if any(a >= b for a, b in itertools.pairwise(sizes)):
        raise InputError("sizes must be strictly increasing", fields={"sizes": text[:80]})
    return sizes


def decode_chain_reply(data: bytes, sizes: list[int]) -> list[list[bytes]]:
    """The ``proofs`` of a consistency-chain reply for ``sizes``, strictly parsed."""
    reply = decode_json(data, _ChainReply, what="consistency chain reply", limit=CHAIN_REPLY_LIMIT)
    if reply.sizes != sizes or len(reply.proofs) != len(sizes) - 1:
        raise WireError("the chain reply does not answer the sizes asked", code=ErrorCode.BAD_PROOF)
    return [[b64decode(h, what="proof hash", size=32) for h in proof] for proof in reply.proofs]


class _ChainReply(msgspec.Struct, forbid_unknown_fields=True):
    sizes: list[int]
    proofs: list[list[str]]


class _ProofReply(msgspec.Struct, forbid_unknown_fields=True):
    first: int
    second: int
    proof: list[str]


class _InclusionReply(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    size: int
    proof: list[str]


class _LeafRef(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    kind: str
    leaf_hash: str


class _LeavesReply(msgspec.Struct, forbid_unknown_fields=True):
    ref: str
    leaves: list[_LeafRef]


class _HeadReply(msgspec.Struct, forbid_unknown_fields=True):
    size: int
    root: str
    tree_head: str


class HttpPeerLog:
    """A peer's transcript through its link API (``hotline.transcript.crosscheck.PeerLog``)."""

    #: Waits before asking again when the peer answers 429 (its per-source rate limit): an
    #: audit check asks two questions per statement and would otherwise outrun the limit.
    RATE_LIMIT_WAITS_S = (0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(self, link: PeerLink) -> None:
        self.link = link

    async def _fetch_patiently(self, path: str, params: dict[str, str | int]) -> bytes:
        for wait in self.RATE_LIMIT_WAITS_S:
            try:
                return await self.link.fetch(path, params)
            except HotlineError as e:
                if e.code != ErrorCode.RATE_LIMITED:
                    raise
                await asyncio.sleep(wait)
        return await self.link.fetch(path, params)

    async def leaf_indexes(self, ref: str) -> list[int]:
        data = await self._fetch_patiently("/v1/transcript/leaves", {"ref": ref})
        reply = decode_json(data, _LeavesReply, what="leaves reply", limit=256 * 1024)
        return [leaf.index for leaf in reply.leaves]

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        data = await self._fetch_patiently(
            "/v1/transcript/inclusion", {"index": index, "size": size}
        )
        reply = decode_json(data, _InclusionReply, what="inclusion reply", limit=64 * 1024)
        if (reply.index, reply.size) != (index, size):
            raise VerificationError(
                "inclusion reply for another leaf or size", code=ErrorCode.BAD_PROOF
            )
        return [b64decode(h, what="proof hash", size=32) for h in reply.proof]

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        data = await self.link.fetch(
            "/v1/transcript/consistency", {"first": first, "second": second}
        )
        return decode_proof_reply(data)

    async def head(self) -> TreeHead:
        data = await self.link.fetch("/v1/transcript/head", {})
        reply = decode_json(data, _HeadReply, what="head reply", limit=64 * 1024)
        return verify_tree_head(
            b64decode(reply.tree_head, what="tree head", limit=64 * 1024),
            self.link.peer.signing_key,
            log=self.link.peer.name,
        )


class _Change(asyncio.Event):
    """A change notification (``Node.notify_changed``): set once the store has changed.
    ``states`` carries the new state of messages of ours that the change decided, as of its
    commit, so that a long-poll waiting for one of them need not read the store again."""

    def __init__(self) -> None:
        super().__init__()
        self.states: Mapping[str, State] = {}


class Node:
    def __init__(self, home: NodeHome) -> None:
        self.home = home
        self.identity = home.identity
        self.store = home.store
        self.name = home.config.name
        self.peers: dict[str, Card] = {}
        self.links: dict[str, PeerLink] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = _Change()
        self._case_alarms: dict[str, int] = {}
        self._pull_rng = random.Random(secrets.randbits(64))  # noqa: S311 (jitter)
        self._registry: Registry | None = None
        self._registry_loaded = datetime.now(UTC)
        self._key_file_mtime = self._key_mtime()
        #: This node's relays (config ``relays``), each shared by every peer link.
        self.relays: dict[str, RelayClient] = {}
        #: On a relay node: the mailbox it keeps for registered nodes.
        self.mailbox: Mailbox | None = None
        #: Runs the STIX validator on received referrals, one bundle at a time, off the event
        #: loop and outside the inbox's transaction (made on first use).
        self._stix_pool: ThreadPoolExecutor | None = None
        #: When each peer was last asked for a lost tail (monotonic seconds; _recover_if_behind).
        self._recovery_asked: dict[str, float] = {}
        self.reload_peers()

    @property
    def is_relay(self) -> bool:
        return self.home.config.role == "relay"

    def reload_peers(self) -> None:
        self.peers = self.home.peer_cards()
        config = self.home.config
        if self.is_relay:
            # A relay forwards for its registered nodes; it has no links of its own.
            if self.mailbox is None:
                self.mailbox = Mailbox(
                    name=self.name,
                    store=self.store,
                    peers=self.peers,
                    limits=MailboxLimits(
                        hold_s=config.relay_hold_s,
                        max_envelopes=config.relay_max_envelopes,
                        max_bytes=config.relay_max_bytes,
                    ),
                )
            self.mailbox.peers = self.peers
            return
        for relay in config.relays:
            card = self.peers.get(relay)
            if relay not in self.relays and (card is None or card.role != "relay"):
                log.warning("relays: %r is not a peer with role relay; not used", relay)
            if relay not in self.relays and card is not None and card.role == "relay":
                self.relays[relay] = RelayClient(self.identity, card)
                if self._tasks:
                    self._start_pull(relay)
        now = datetime.now(UTC)
        # A restored store appends again once every peer node has confirmed it (hold.py).
        hold_peers = tuple(sorted(n for n, c in self.peers.items() if c.role == "node"))
        witness_keys = {n: c.signing_key for n, c in self.peers.items() if c.role == "witness"}
        for existing in self.links.values():
            existing.hold_peers = hold_peers
            existing.witness_keys = witness_keys
        for name, card in self.peers.items():
            if card.role == "relay":
                continue
            link = self.links.get(name)
            if link is not None:
                # A rotation or a confirmed new key replaced the card: seal to its keys now.
                link.peer = card
                self._refresh_keys(link, now)
            if name not in self.links:
                self.links[name] = PeerLink(
                    identity=self.identity,
                    store=self.store,
                    peer=card,
                    receive=self.receive_async,
                    retry_cap_s=config.retry_cap_s,
                    heartbeat_interval_s=config.heartbeat_interval_s,
                    max_clock_skew_s=config.max_clock_skew_s,
                    # Witnesses are reached directly; nodes also through our relays.
                    relays=[] if card.role == "witness" else list(self.relays.values()),
                    relay_resend_s=config.relay_resend_s,
                )
                self.links[name].hold_peers = hold_peers
                self.links[name].witness_keys = witness_keys
                self._refresh_keys(self.links[name], now)
                if self._tasks:
                    self._start_link(self.links[name])

    def _refresh_keys(self, link: PeerLink, now: datetime) -> None:
        """The peer's keys that may sign now, and whether its key is revoked (docs/protocol.md
        §15): read from the key history."""
        with self.store.read() as conn:
            link.other_keys = keyring.usable_keys(conn, link.peer, now)
            revoked = keyring.revoked_without_successor(conn, link.peer.name)
        link.blocked = (
            f"{link.peer.name}'s key is revoked; nothing is sent until its new key's fingerprint "
            f"is confirmed (hotline peer confirm-key {link.peer.name})"
            if revoked
            else None
        )

    def reload_identity(self) -> None:
        """Pick up new key files (``hotline keys rotate`` or ``revoke`` while the node runs)."""
        mtime = self._key_mtime()
        if mtime == self._key_file_mtime:
            return
        self._key_file_mtime = mtime
        identity = self.home.reload_identity()
        if identity.signing.public.key_id == self.identity.signing.public.key_id:
            return
        log.warning(
            "now signing with key %s (was %s)",
            identity.signing.public.key_id.hex(),
            self.identity.signing.public.key_id.hex(),
        )
        self.identity = identity
        for link in self.links.values():
            link.identity = identity

    def _key_mtime(self) -> int:
        try:
            return (self.home.dir / SIGNING_KEY_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    # -- change notification (live views, long-polls) --------------------------------------

    def notify_changed(self, states: Mapping[str, State] | None = None) -> None:
        """Wake every long-poll and live view. ``states``: the new state of messages of ours
        that the change decided, as of its commit."""
        event, self._changed = self._changed, _Change()
        if states:
            event.states = states
        event.set()

    async def wait_for_state(
        self, message_id: str, states: set[str], timeout: float, *, unchanged: bool = False
    ) -> MessageView:
        """The message once it reaches one of ``states``, or as it is after ``timeout`` s.

        ``unchanged``: the caller has just queued the message (its state is not in ``states``
        yet), so the first read is skipped: on the path of one message, that read would run
        before the delivery worker gets to send it.
        """
        view: MessageView | None = None

        def reached(_news: Mapping[str, State]) -> bool:
            nonlocal view
            view = self.message(message_id)
            return view.state.value in states

        if not await self._wait_until(reached, timeout, unchanged) or view is None:
            view = self.message(message_id)
        return view

    async def wait_for_state_value(
        self, message_id: str, states: set[str], timeout: float, *, unchanged: bool = False
    ) -> State:
        """``wait_for_state`` for a caller that needs the state only (the operator API's
        ``send ... wait=delivered``): each look reads the message's events, not its row."""
        state = State.QUEUED

        def reached(news: Mapping[str, State]) -> bool:
            nonlocal state
            # The state the change that woke us committed, else the store's.
            carried = news.get(message_id)
            state = carried if carried is not None else self.state(message_id)
            return state.value in states

        if not await self._wait_until(reached, timeout, unchanged):
            state = self.state(message_id)
        return state

    async def _wait_until(
        self, reached: Callable[[Mapping[str, State]], bool], timeout: float, unchanged: bool
    ) -> bool:
        """Look (``reached(news)``, ``news``: the states the last change carried) after each
        change notification until it is true (True), or until ``timeout`` s have passed
        (False). ``unchanged``: skip the first look."""
        deadline = asyncio.get_running_loop().time() + timeout
        news: Mapping[str, State] = {}
        while True:
            changed = self._changed
            if not unchanged and reached(news):
                return True
            unchanged = False
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            # asyncio.timeout, not wait_for: wait_for runs the wait as a task of its own, one
            # more hop through the event loop before this request can answer.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()
            news = changed.states

    def state(self, message_id: str) -> State:
        with self.store.read() as conn:
            state = message_state(conn, message_id)
        if state is None:
            raise NotFoundError(f"no message {message_id}", code=ErrorCode.UNKNOWN_MESSAGE)
        return state

    def message(self, message_id: str) -> MessageView:
        with self.store.read() as conn:
            view = get_message(conn, message_id, self.name)
        if view is None:
            raise NotFoundError(f"no message {message_id}", code=ErrorCode.UNKNOWN_MESSAGE)
        return view

    # -- inbound ---------------------------------------------------------------------------

    def receive(
        self,
        envelopes: list[bytes],
        source: str,
        also: Callable[[Connection], None] | None = None,
    ) -> Received:
        result = self._receive_committed(envelopes, source, also)
        if result.key_changes:
            self.reload_peers()
        self._assess_activities(result.activity_ids)
        if result.referral_ids:
            self.validate_referrals(result.referral_ids)
        if result.delivered_ids or result.updated_ids:
            self.notify_changed(result.states)
        return result

    def _receive_committed(
        self,
        envelopes: list[bytes],
        source: str,
        also: Callable[[Connection], None] | None,
    ) -> Received:
        return inbox.receive(
            self.store,
            self.identity,
            self.peers,
            envelopes,
            now=datetime.now(UTC),
            source=source,
            also=also,
        )

    def deconfliction(self) -> Registry:
        """The node's active volumes (own plans and peers' notifications), loaded on first use
        and reloaded when older than ``REGISTRY_MAX_AGE_S`` (the CLI may have filed plans)."""
        now = datetime.now(UTC)
        if self._registry is None or (now - self._registry_loaded).total_seconds() > (
            REGISTRY_MAX_AGE_S
        ):
            self._registry = Registry(self.store.engine, workers=1)
            self._registry.load(to_us(now))
            self._registry_loaded = now
        return self._registry

    def _assess_activities(self, activity_ids: list[str]) -> None:
        """Each received activity notification is checked against every active volume at once;
        conflicts with our own activities are raised to the operators with a draft response."""
        for message_id in activity_ids:
            view = self.message(message_id)
            now = datetime.now(UTC)
            try:
                volumes = activity_volumes(message_id, view.body, owner=view.peer)
                assessment = self.deconfliction().receive_notification(
                    view.peer, volumes, now_us=to_us(now)
                )
            except HotlineError as e:
                detail = f"activity notification {message_id} not assessed: {e.detail}"
                with self.store.write() as conn:
                    record_security_event(
                        conn,
                        at_us=to_us(now),
                        code="deconfliction_failed",
                        peer=view.peer,
                        source=None,
                        detail=detail,
                    )
                continue
            if assessment.actionable:
                log.warning(
                    "ALARM %d conflict(s) with %s's activity notification %s",
                    len(assessment.actionable),
                    view.peer,
                    message_id,
                )
                with self.store.write() as conn:
                    record_security_event(
                        conn,
                        at_us=to_us(now),
                        code="deconfliction_conflict",
                        peer=view.peer,
                        source=None,
                        detail=f"{len(assessment.actionable)} conflict(s) with our activities "
                        f"in {message_id}. Draft response: {assessment.draft_response}",
                    )

    async def receive_async(
        self,
        envelopes: list[bytes],
        source: str,
        also: Callable[[Connection], None] | None = None,
    ) -> Received:
        return self.receive(envelopes, source, also)

    def _open_heartbeat(
        self, data: bytes, source: str, now: datetime
    ) -> tuple[PeerLink, HeartbeatPayload]:
        try:
            sender = read_header(data).sender
            link = self.links.get(sender)
            if link is None:
                raise VerificationError(f"unknown sender {sender!r}", code=ErrorCode.UNKNOWN_SENDER)
            return link, link.open_heartbeat(data, now)
        except Exception as e:
            code = getattr(e, "code", ErrorCode.MALFORMED)
            with self.store.write() as conn:
                record_security_event(
                    conn,
                    at_us=to_us(now),
                    code=str(code),
                    peer=None,
                    source=source,
                    detail=f"heartbeat refused: {e}",
                )
            raise

    def answer_heartbeat(self, data: bytes, source: str) -> bytes:
        """Check a peer's heartbeat and answer with our own, echoing its nonce."""
        now = datetime.now(UTC)
        link, payload = self._open_heartbeat(data, source, now)
        return self._answer(link, payload, now)

    def _answer(self, link: PeerLink, payload: HeartbeatPayload, now: datetime) -> bytes:
        sender = link.peer.name
        late = self._check_gaps(sender, payload, now)
        if late:
            link.send_back_receipts(late)
        link.status.peer_next_expected = payload.next_expected
        link.wake.set()
        return link.make_heartbeat(
            now,
            nonce=payload.nonce,
            echo=payload.nonce,
            next_expected=inbox.next_expected(self.store, sender),
        )

    def _check_gaps(
        self, peer: str, heartbeat: HeartbeatPayload, now: datetime
    ) -> dict[str, bytes]:
        """Messages the peer says it sent that never arrived (and did not expire) are an alarm.
        Return our DELIVERED receipts for those it declared expired but we hold (it gave up on
        them before their receipt reached it): they go back to it (protocol §9.3)."""
        with self.store.write() as conn:
            filled = fill_gaps(conn, peer, heartbeat.expired)
            late = delivered_receipts_for_seqs(
                conn, peer, heartbeat.expired, limit=MAX_LATE_RECEIPTS
            )
            if filled:
                record_link_event(
                    conn,
                    peer=peer,
                    at_us=to_us(now),
                    kind="gap_expired",
                    detail=f"{filled} missing message(s) expired at the sender",
                )
            # A skipped number may still be on its way; one missing for longer than the grace
            # period, and not declared expired by the sender, is a lost message.
            grace_us = int(GAP_GRACE_INTERVALS * self.home.config.heartbeat_interval_s * 1e6)
            unexplained = stale_gaps(conn, peer, to_us(now) - grace_us)
            record_link_event(conn, peer=peer, at_us=to_us(now), kind="heartbeat_received")
            if unexplained:
                record_security_event(
                    conn,
                    at_us=to_us(now),
                    code="sequence_gap",
                    peer=peer,
                    source=None,
                    detail=f"peer sent up to seq {heartbeat.last_seq}; missing {unexplained[:20]}",
                )
            if late:
                record_link_event(
                    conn,
                    peer=peer,
                    at_us=to_us(now),
                    kind="receipts_sent_back",
                    detail=f"{len(late)} receipt(s) for messages {peer} declared expired",
                )
        return late

    # -- relays ----------------------------------------------------------------------------

    async def _pull_forever(self, relay: str) -> None:
        """Pull our mail from ``relay`` (long-polled) and take it in like direct traffic."""
        client = self.relays[relay]
        cursor = 0  # what we hold; the relay deletes it on our next pull
        failures = 0
        while True:
            try:
                envelopes, new_cursor = await client.pull(cursor)
                if envelopes:
                    await self.take_relayed(client, envelopes)
                cursor = new_cursor
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                delay = backoff_delay(failures, self.home.config.retry_cap_s, self._pull_rng)
                if isinstance(e, HotlineError):
                    log.info("pulling from relay %s: %s; again in %.1fs", relay, e, delay)
                else:
                    log.exception("pulling from relay %s", relay)
                await asyncio.sleep(delay)

    async def take_relayed(self, client: RelayClient, envelopes: list[bytes]) -> None:
        """Envelopes a relay handed us: messages and receipts through the inbox (its DELIVERED
        receipts go back through the same relay), heartbeats answered the same way."""
        source = client.name
        heartbeats: list[bytes] = []
        others: list[bytes] = []
        for envelope in envelopes:
            try:
                kind = read_header(envelope).kind
            except HotlineError:
                kind = None  # the inbox refuses it and records why
            (heartbeats if kind is Kind.HEARTBEAT else others).append(envelope)
        if others:
            result = self.receive(others, source)
            for receipts in result.receipts.values():
                with contextlib.suppress(HotlineError):
                    # Lost here, the receipt comes again when the sender resends (a duplicate).
                    await client.deposit(receipts)
        for envelope in heartbeats:
            now = datetime.now(UTC)
            try:
                link, payload = self._open_heartbeat(envelope, source, now)
            except HotlineError as e:
                log.info("relayed heartbeat refused: %s", e)
                continue
            if payload.echo is not None:
                link.heartbeat_reply_arrived(payload)
                continue
            reply = self._answer(link, payload, now)
            with contextlib.suppress(HotlineError):
                await client.deposit([reply])

    async def _prune_forever(self) -> None:
        while True:
            try:
                if self.mailbox is not None:
                    self.mailbox.prune(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning the relay's mailbox")
            await asyncio.sleep(RELAY_PRUNE_S)

    def _start_pull(self, relay: str) -> None:
        self._tasks.append(asyncio.create_task(self._pull_forever(relay), name=f"pull:{relay}"))

    def answer_recovery(self, body: bytes, source: str) -> bytes:
        """A peer restored from an old backup asks for the statements of our link it lost
        (docs/protocol.md §7.11): check the request and answer it, sealed to the peer."""
        now = datetime.now(UTC)
        try:
            return recovery.answer(self.identity, self.store, self.peers, body, now)
        except HotlineError as e:
            if e.code != ErrorCode.TRANSCRIPT_HELD:
                with self.store.write() as conn:
                    record_security_event(
                        conn,
                        at_us=to_us(now),
                        code=str(e.code),
                        peer=None,
                        source=source,
                        detail=f"recovery request refused: {e}",
                    )
            raise

    async def _recover_if_behind(self, peer: str) -> None:
        """While the store is on hold with a lost tail, fetch from each peer node, as verified
        evidence, what it holds of the link beyond this store (hotline.link.recovery), once per
        heartbeat interval. The hold stays: nothing enters our transcript."""
        link = self.links[peer]
        if link.peer.role != "node":
            return
        with self.store.read() as conn:
            state = hold.current(conn)
        if state is None or state.reason != hold.LOST_TAIL:
            return
        now = asyncio.get_running_loop().time()
        last = self._recovery_asked.get(peer)
        if last is not None and now - last < self.home.config.heartbeat_interval_s:
            return
        self._recovery_asked[peer] = now
        await recovery.recover_round(link, self.identity, self.store, lambda: datetime.now(UTC))

    # -- transcript ------------------------------------------------------------------------

    def own_head(self, *, max_age_s: float = OWN_HEAD_MAX_AGE_S, on_hold: bool = False) -> TreeHead:
        """Our current signed head. On hold (transcript/hold.py) it is refused unless
        ``on_hold``: a peer shown a head of a log shorter than one it saw could not get it
        proved consistent, and would call it equivocation; a local audit export may have it."""
        with self.store.write() as conn:
            if not on_hold:
                hold.check(conn)
            return current_own_head(conn, self.identity, datetime.now(UTC), max_age_s=max_age_s)

    async def check_peer_heads(self, peer: str) -> int:
        """Prove every unchecked head of ``peer`` consistent with the last checked one.

        Proofs come from the peer itself; a proof that fails (or a peer that cannot produce one
        for heads it signed) is an equivocation alarm with both signed heads as evidence.
        Returns how many heads were checked.
        """
        link = self.links[peer]
        checked = 0
        pairwise = False
        while True:
            if not pairwise:
                with self.store.read() as conn:
                    chain = unchecked_chain(conn, peer, CHAIN_LIMIT)
                if chain is not None:
                    if await self._chain_holds(link, chain):
                        with self.store.write() as conn:
                            mark_all_checked(conn, [h.id for h in chain if h.checked == 0])
                        checked += len(chain) - 1
                        continue
                    # Some head of the chain fails (or the peer cannot prove chains): one at a
                    # time, with retries, names exactly which head is inconsistent.
                    pairwise = True
            with self.store.read() as conn:
                pair = next_check(conn, peer)
            if pair is None:
                return checked
            baseline, candidate = pair
            if baseline is None or baseline.size == candidate.size:
                # The first head is taken on first use; an equal size with an equal root is
                # stored once, so an equal size here means an equal root.
                with self.store.write() as conn:
                    mark_checked(conn, candidate.id, consistent=True)
                checked += 1
                continue
            failure = await self._consistency_failure(link, baseline, candidate)
            if failure is not None:
                with self.store.write() as conn:
                    mark_checked(conn, candidate.id, consistent=False)
                    raise_equivocation(
                        conn, peer=peer, now_us=to_us(datetime.now(UTC)), detail=failure
                    )
                continue
            with self.store.write() as conn:
                mark_checked(conn, candidate.id, consistent=True)
            checked += 1

    async def _chain_holds(self, link: PeerLink, chain: list[PeerHead]) -> bool:
        """Whether one request proves every head of ``chain`` consistent (§7.6a). False, with no
        verdict, on a refusal, a malformed reply or a proof that fails: the pairwise check
        decides then. An unreachable or rate-limited peer raises: try again later."""
        try:
            data = await link.fetch(
                "/v1/transcript/consistency-chain",
                {"sizes": ",".join(str(h.size) for h in chain)},
            )
        except TransportError as e:
            if e.code != ErrorCode.PEER_REFUSED:
                raise
            log.info("%s gave no chain proof: %s", link.peer.name, e.detail[:200])
            return False
        try:
            check_chain(chain, decode_chain_reply(data, [h.size for h in chain]))
        except HotlineError as e:
            log.info("chain proof from %s does not hold: %s", link.peer.name, e)
            return False
        return True

    async def _consistency_failure(
        self, link: PeerLink, baseline: PeerHead, candidate: PeerHead
    ) -> str | None:
        """Why the peer's proof that ``candidate`` extends ``baseline`` fails, or None if it holds.

        A proof travels unsigned, so one that fails (or a refusal) is fetched again, up to
        ``PROOF_ATTEMPTS`` times: bytes damaged on the way do not fail the same way every time,
        an inconsistent history does (the chaos storm). Unreachable, rate-limited or malformed
        answers raise: no verdict, try again later.
        """
        small, large = sorted((baseline, candidate), key=lambda h: h.size)
        failure = ""
        for _attempt in range(PROOF_ATTEMPTS):
            try:
                data = await link.fetch(
                    "/v1/transcript/consistency", {"first": small.size, "second": large.size}
                )
            except TransportError as e:
                if e.code != ErrorCode.PEER_REFUSED:
                    raise
                # The peer answered but will not prove heads it signed (a truncated log?).
                failure = (
                    f"peer refused to prove its head of size {candidate.size} consistent "
                    f"with its head of size {baseline.size}: {e.detail[:300]}"
                )
                continue
            try:
                check_consistency(baseline, candidate, decode_proof_reply(data))
            except VerificationError as e:
                failure = (
                    f"head of size {candidate.size} (#{candidate.id}, {candidate.kind}) is not "
                    f"consistent with checked head of size {baseline.size} (#{baseline.id}): "
                    f"{e.detail}"
                )
                log.warning("consistency proof from %s failed: %s", link.peer.name, e.detail)
                continue
            return None
        return f"{failure} ({PROOF_ATTEMPTS} attempts)"

    async def refresh_peer_head(self, peer: str) -> TreeHead:
        """Ask the peer for its current head, keep it, and prove it consistent."""
        head = await HttpPeerLog(self.links[peer]).head()
        with self.store.write() as conn:
            record_peer_head(
                conn,
                peer=peer,
                size=head.size,
                root=head.root,
                kind="tree-head",
                evidence=head.statement,
                now_us=to_us(datetime.now(UTC)),
            )
        await self.check_peer_heads(peer)
        return head

    # -- witnessing -------------------------------------------------------------------------

    def cosign(
        self, *, log: str, tree_head: bytes, old_size: int, proof: list[bytes]
    ) -> Cosignature:
        """As a witness: cosign ``log``'s head if it extends the last one cosigned here."""
        card = self.peer(log)
        now = datetime.now(UTC)
        try:
            with self.store.write() as conn:
                return cosign_head(
                    conn,
                    self.identity,
                    card,
                    tree_head=tree_head,
                    old_size=old_size,
                    proof=proof,
                    now=now,
                )
        except VerificationError as e:
            if e.code == ErrorCode.BAD_PROOF:  # the log does not extend what we cosigned
                self._record_refused_head(log, card, tree_head, e, now)
            raise

    def _record_refused_head(
        self, log: str, card: Card, tree_head: bytes, error: VerificationError, now: datetime
    ) -> None:
        """The alarm for a head the witness refused: equivocation, unless it is only an older
        head of the log (a head seen in an earlier request, replayed to make us accuse an honest
        node). A smaller head is equivocation only where we cosigned another root for its size;
        one of a size we never cosigned proves nothing by itself (no proof links it to ours)."""
        head = verify_tree_head(tree_head, card.signing_key, log=log)  # cosign_head checked it
        with self.store.write() as conn:
            last = latest_witnessed(conn, log)
            if last is not None and head.size < last.size:
                cosigned = conn.execute(
                    select(witnessed_heads.c.root).where(
                        witnessed_heads.c.log == log, witnessed_heads.c.size == head.size
                    )
                ).scalar()
                if cosigned is None or bytes(cosigned) == head.root:
                    record_security_event(
                        conn,
                        at_us=to_us(now),
                        code=ErrorCode.REPLAY_CONFLICT.value,
                        peer=log,
                        source=None,
                        detail=f"witness refused an older head of size {head.size} "
                        f"(cosigned up to {last.size}): a replay, not evidence of a fork",
                    )
                    return
            raise_equivocation(
                conn, peer=log, now_us=to_us(now), detail=f"witness refused: {error.detail}"
            )

    async def witness_once(self, witness: str) -> Cosignature | None:
        """Have ``witness`` cosign our current head; None if it already has."""
        link = self.links[witness]
        head = self.own_head(max_age_s=0.0)
        with self.store.read() as conn:
            last = latest_cosignature(conn, witness)
        old_size = 0 if last is None else int(last["size"])
        if last is not None and old_size >= head.size:
            return None
        for _attempt in range(2):
            with self.store.read() as conn:
                proof = transcript.consistency_proof(conn, old_size, head.size) if old_size else []
            status, data = await link.exchange(
                "/v1/witness/cosign",
                {
                    "log": self.name,
                    "tree_head": b64encode(head.statement),
                    "old_size": old_size,
                    "proof": [b64encode(h) for h in proof],
                },
            )
            if status == 200:
                reply = decode_json(data, _CosignReply, what="cosign reply", limit=64 * 1024)
                signature = verify_cosignature(
                    b64decode(reply.cosignature, what="cosignature", limit=64 * 1024),
                    link.peer.signing_key,
                    witness=witness,
                    log=self.name,
                )
                if (signature.size, signature.root) != (head.size, head.root):
                    raise VerificationError("the witness cosigned another head")
                with self.store.write() as conn:
                    record_cosignature(conn, signature, datetime.now(UTC))
                return signature
            error = decode_json(data, _ErrorReply, what="witness error", limit=64 * 1024).error
            witness_size = error.get("fields", {}).get("witness_size")
            if status == 409 and isinstance(witness_size, int) and witness_size <= head.size:
                old_size = witness_size  # the witness saw a head we no longer hold a proof base for
                continue
            raise TransportError(
                f"witness {witness} refused our head: {error}", code=ErrorCode.PEER_REFUSED
            )
        return None

    async def _witness_forever(self, witness: str) -> None:
        interval = min(self.home.config.heartbeat_interval_s, WITNESS_INTERVAL_S)
        alarmed = False
        while True:
            try:
                await self.witness_once(witness)
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                log.warning("witness %s: %s", witness, e)
            except Exception:
                log.exception("witness %s", witness)
            try:
                alarmed = self._check_witness_lag(witness, alarmed)
            except HotlineError as e:
                log.warning("checking witness %s: %s", witness, e)
            await asyncio.sleep(interval)

    def _check_witness_lag(self, witness: str, alarmed: bool) -> bool:
        """Raise ``witness_stale`` once when ``witness`` has left a head of ours uncosigned
        for longer than ``witness_stale_s`` (unreachable, or refusing); note its return.
        Returns whether the alarm stands."""
        now = datetime.now(UTC)
        stale_after = self.home.config.witness_stale_s
        with self.store.read() as conn:
            lag = witness_lag(conn, witness, to_us(now), stale_after)
        if lag["stale"] and not alarmed:
            detail = (
                f"witness {witness} has not cosigned our log for {lag['waiting_s']:.0f} s "
                f"({lag['behind']} entries behind; limit {stale_after:g} s)"
            )
            log.warning("ALARM %s", detail)
            with self.store.write() as conn:
                record_security_event(
                    conn,
                    at_us=to_us(now),
                    code="witness_stale",
                    peer=witness,
                    source=None,
                    detail=detail,
                )
            return True
        if alarmed and not lag["stale"]:
            log.warning("witness %s cosigns our log again", witness)
            with self.store.write() as conn:
                record_link_event(
                    conn,
                    peer=witness,
                    at_us=to_us(now),
                    kind="witness_back",
                    detail=f"{lag['behind']} entries behind",
                )
            return False
        return alarmed

    # -- deadlines -------------------------------------------------------------------------

    def escalate_overdue(self, now: datetime) -> list[Overdue]:
        """Escalate what the peers have not acknowledged in time; wake their delivery."""
        config = self.home.config
        with self.store.write() as conn:
            escalated = escalate(
                conn, to_us(now), config.deadlines_for, config.escalation_interval_s
            )
        for item in escalated:
            log.warning(
                "ALARM %s message %s to %s not acknowledged, %.0fs past its deadline",
                item.priority.upper(),
                item.id,
                item.peer,
                item.overdue_s,
            )
            self.wake(item.peer)
        self._escalate_cases(now)
        if escalated:
            self.notify_changed()
        return escalated

    def _escalate_cases(self, now: datetime) -> None:
        """Cyber referrals we sent that the peer has not acknowledged by their response
        deadline: an alarm each escalation interval, like an overdue message."""
        now_us = to_us(now)
        interval_us = int(self.home.config.escalation_interval_s * 1e6)
        with self.store.read() as conn:
            late = [c for c in list_cases(conn, direction="out", limit=1000) if c.overdue(now_us)]
        due = [c for c in late if now_us - self._case_alarms.get(c.id, 0) >= interval_us]
        if not due:
            return
        with self.store.write() as conn:
            for case in due:
                self._case_alarms[case.id] = now_us
                record_security_event(
                    conn,
                    at_us=now_us,
                    code="case_overdue",
                    peer=case.peer,
                    source=None,
                    detail=f"referral {case.id} not acknowledged, "
                    f"{(now_us - case.deadline_us) / 1e6:.0f}s past its response deadline",
                )
                self.wake(case.peer)

    async def _escalate_forever(self) -> None:
        while True:
            try:
                self.escalate_overdue(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalating overdue messages")
            await asyncio.sleep(ESCALATION_SCAN_S)

    async def _check_heads_forever(self, peer: str) -> None:
        while True:
            try:
                await self.check_peer_heads(peer)
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                log.info("checking %s's tree heads: %s", peer, e)
            except Exception:
                log.exception("checking %s's tree heads", peer)
            try:
                await self._recover_if_behind(peer)
            except asyncio.CancelledError:
                raise
            except HotlineError as e:
                log.info("recovering the lost tail from %s: %s", peer, e)
            except Exception:
                log.exception("recovering the lost tail from %s", peer)
            await asyncio.sleep(HEAD_CHECK_INTERVAL_S)

    # -- outbound --------------------------------------------------------------------------

    def peer(self, name: str) -> Card:
        if name not in self.peers:
            self.reload_peers()
        if name not in self.peers:
            raise NotFoundError(f"no peer named {name!r}")
        return self.peers[name]

    def send(
        self,
        *,
        to: str,
        msg_type: str,
        priority: str,
        body: dict[str, Any],
        in_reply_to: str | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        return self.send_many(
            [
                {
                    "to": to,
                    "msg_type": msg_type,
                    "priority": priority,
                    "body": body,
                    "in_reply_to": in_reply_to,
                    "ttl": ttl,
                }
            ]
        )[0]

    def send_many(self, requests: list[dict[str, Any]]) -> list[str]:
        """Queue several messages in one transaction (all or none), then wake delivery.

        Requests that carry the same content to several peers in one call (the console's
        compose with many recipients) become one notification: a shared id in every copy.
        """
        default_ttl = timedelta(seconds=self.home.config.default_ttl_s)
        if (
            len(requests) > 1
            and len({r["to"] for r in requests}) == len(requests)
            and all(
                (r["msg_type"], r["priority"], r["body"])
                == (requests[0]["msg_type"], requests[0]["priority"], requests[0]["body"])
                for r in requests
            )
        ):
            shared = new_id(datetime.now(UTC))
            requests = [{**r, "notification": r.get("notification") or shared} for r in requests]
        drafts = [
            outbox.Draft(
                peer=self.peer(r["to"]),
                msg_type=r["msg_type"],
                priority=r["priority"],
                body=r["body"],
                ttl=r.get("ttl") or default_ttl,
                in_reply_to=r.get("in_reply_to"),
                author=r.get("author"),
                released_by=r.get("released_by"),
                notification=r.get("notification"),
            )
            for r in requests
        ]
        for draft in drafts:
            check_release(draft)
        links = {
            n: link
            for n in {d.peer.name for d in drafts}
            if (link := self.links.get(n)) is not None and link.takes_hand_over
        }
        with self.store.write() as conn:
            ids = outbox.queue_messages(conn, self.identity, drafts, now=datetime.now(UTC))
            # What each link sends next, read under this transaction's write lock: its delivery
            # worker need not read the store again before sending (PeerLink.hand_over).
            handed = {
                n: pending_outgoing(conn, n, link.outbox_limit()) for n, link in links.items()
            }
        for name, link in links.items():
            link.hand_over(handed[name])
        for name in {d.peer.name for d in drafts}:
            self.wake(name)
        self.notify_changed()
        return ids

    def acknowledge(
        self,
        message_id: str,
        *,
        operator: str,
        lang: str | None = None,
        tz: str | None = None,
        text_hash: str | None = None,
    ) -> str:
        view = self.message(message_id)
        card = self.peer(view.peer)
        receipt_id = outbox.acknowledge(
            self.store,
            self.identity,
            card,
            message_id,
            now=datetime.now(UTC),
            ttl=timedelta(seconds=self.home.config.default_ttl_s),
            operator=operator,
            lang=lang,
            tz=tz,
            text_hash=text_hash,
        )
        self.wake(view.peer)
        self.notify_changed()
        return receipt_id

    def wake(self, peer: str | None = None) -> None:
        """Look at the outbox now (after a write by this process or by the CLI)."""
        if peer is None:
            self.reload_identity()
            self.reload_peers()
        for name, link in self.links.items():
            if peer is None or name == peer:
                link.wake.set()

    # -- lifecycle -------------------------------------------------------------------------

    def _start_link(self, link: PeerLink) -> None:
        name = link.peer.name
        if link.peer.role == "witness" and self.home.config.role != "witness":
            self._tasks.append(
                asyncio.create_task(self._witness_forever(name), name=f"witness:{name}")
            )
        self._tasks.append(
            asyncio.create_task(self._check_heads_forever(name), name=f"heads:{name}")
        )
        self._tasks.append(asyncio.create_task(link.run_delivery(), name=f"deliver:{name}"))
        self._tasks.append(
            asyncio.create_task(
                link.run_heartbeats(lambda: inbox.next_expected(self.store, name)),
                name=f"heartbeat:{name}",
            )
        )

    async def start(self) -> None:
        with self.store.read() as conn:
            on_hold = hold.current(conn)
        if on_hold is not None:
            log.warning(
                "the transcript is on hold (%s): nothing is appended, sent or receipted: %s",
                on_hold.reason,
                on_hold.detail,
            )
        self._tasks.append(asyncio.create_task(self._watch_changes(), name="watch"))
        if self.is_relay:
            self._tasks.append(asyncio.create_task(self._prune_forever(), name="prune"))
            return
        self._tasks.append(asyncio.create_task(self._escalate_forever(), name="escalate"))
        for relay in self.relays:
            self._start_pull(relay)
        for link in self.links.values():
            self._start_link(link)

    async def _watch_changes(self) -> None:
        # Another process (the CLI) may change the store; wake long-polls now and then.
        while True:
            await asyncio.sleep(1.0)
            try:
                self.reload_identity()
            except HotlineError as e:
                log.warning("reading new key files: %s", e)
            self.notify_changed()

    def validate_referrals(self, ids: list[str] | None = None) -> Future[int]:
        """Validate the STIX bundles of received referrals waiting for it (``ids``, or all) in
        the background: seconds of a hostile bundle's validation hold no transaction and do not
        stop the event loop. A bundle left pending by a stop is validated at the next start."""
        if self._stix_pool is None:
            self._stix_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stix")
        future = self._stix_pool.submit(validate_pending, self.store, ids)
        future.add_done_callback(_log_validation_failure)
        return future

    async def stop(self) -> None:
        if self._stix_pool is not None:
            self._stix_pool.shutdown(wait=False, cancel_futures=True)
            self._stix_pool = None
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_TASKS_S)
            for task in late:  # a defect: the process deadline (STOP_DEADLINE_S) ends them
                log.error("task %s did not stop within %g s", task.get_name(), STOP_TASKS_S)
        self._tasks.clear()
        closing = [link.close() for link in self.links.values()]
        closing += [client.close() for client in self.relays.values()]
        try:
            async with asyncio.timeout(STOP_TASKS_S):
                await asyncio.gather(*closing, return_exceptions=True)
        except TimeoutError:
            log.warning("closing the links' connections took over %g s", STOP_TASKS_S)

    def link_report(self) -> list[dict[str, Any]]:
        """Each peer's link as the CLI's ``hotline link`` shows it (derived from the store, so
        the API, the console and the CLI agree), with its endpoint."""
        now_us = to_us(datetime.now(UTC))
        interval = self.home.config.heartbeat_interval_s
        with self.store.read() as conn:
            reports = [
                (
                    link_report(conn, name, now_us, interval).to_dict(),
                    transport_reports(
                        conn, name, [t.name for t in link.transports], now_us, interval
                    ),
                    link,
                )
                for name, link in sorted(self.links.items())
            ]
        return [
            {
                **report,
                "consecutive_failures": report["failures_since_ok"],
                "endpoint": link.peer.endpoints[0] if link.peer.endpoints else None,
                "active_transport": link.active_transport,
                "transports": [t.to_dict() for t in transports],
            }
            for report, transports, link in reports
        ]


def _log_validation_failure(future: Future[int]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:  # a storage failure: the case stays pending for the next start
        log.error("validating received referrals failed: %r", error)


__all__ = ["Node"]

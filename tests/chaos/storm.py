"""The chaos harness: a storm over a link between two real node processes, then the checks.

washington and moscow run as ``hotline serve`` processes; each one's card names a
``FaultProxy`` as its endpoint, so every exchange between them crosses a proxy that drops,
duplicates, reorders, delays, truncates, corrupts and hangs. Meanwhile traffic flows both ways
through the operator API, received messages are acknowledged, and a node is killed with SIGKILL
at random moments and restarted. One seed drives the proxies' faults, the kills and the traffic:
``HOTLINE_CHAOS_SEED=N`` replays a storm (the seed is printed first).

After the storm the faults stop and the link drains; then ``Storm.check`` returns every problem:
a message the API accepted that was not delivered, or delivered twice, or without its receipt;
an acknowledgement that did not arrive; transcripts that do not verify or disagree
(``hotline audit check``, ``audit export`` + ``audit verify``); a security event the faults do
not explain (an equivocation alarm never is); a traceback in a node's log.

Used by tests/chaos/ and by benchmarks/chaos.py (which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from faultproxy import CLEAN, FaultProxy, Faults
from sqlalchemy import func, select

from hotline.cli import main
from hotline.link.mailbox import relay_mailbox
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.schema import (
    inbound_gaps,
    link_events,
    message_events,
    messages,
    outbox_queue,
    receipt_items,
    receipts,
    security_events,
)

SEED_ENV = "HOTLINE_CHAOS_SEED"
RELAY = "geneva"
#: A cut direct path: every request is refused before it reaches the node (the connection is
#: reset), as when the cable is down; the sender fails over to the relay at once.
CUT = Faults(drop=1.0, side="request")
#: A restarted node answering later than this is a problem (a loaded machine takes 20 s).
RESTART_TIMEOUT_S = 120.0
NAMES = ("washington", "moscow")

#: Security event codes a corrupted or cut envelope can cause at its receiver: bytes that do not
#: parse, decrypt or verify. A rejected envelope in a batch opens a sequence gap until it is sent
#: again, so gaps are explained too. Nothing forged can come of it: no replay, no equivocation.
CORRUPTION_CODES = frozenset(
    {
        "malformed",
        "bad_version",
        "too_large",
        "unknown_sender",
        "wrong_recipient",
        "decrypt_failed",
        "bad_signature",
        "wrong_purpose",
        "unknown_key",
        "header_mismatch",
        "sequence_gap",
    }
)


def _load_integration_helpers() -> ModuleType:
    # tests/ is not a package: the integration tests' node-process helpers, loaded by path.
    path = Path(__file__).parents[1] / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("hotline_chaos_integration_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


integration = _load_integration_helpers()


def storm_seed() -> int:
    """The seed from ``HOTLINE_CHAOS_SEED``, or a fresh one."""
    text = os.environ.get(SEED_ENV)
    return int(text) if text else random.SystemRandom().randrange(1, 2**31)


@dataclass(frozen=True)
class StormPlan:
    seed: int
    faults: Faults
    #: Messages the API must accept in each direction.
    messages: int
    #: Seconds over which they are submitted (the storm lasts at least this long).
    duration_s: float
    #: Mean seconds between SIGKILLs of a node; None: no kills.
    kill_every_s: float | None = None
    #: Run a relay (``hotline relay serve``) as each peer's second transport, after the direct
    #: path through the fault proxies.
    relay: bool = False
    #: Mean seconds between SIGKILLs of the relay (restarted after 0.5..2 s); None: no kills.
    relay_kill_every_s: float | None = None
    #: Mean seconds between cuts of the direct path (both proxies refuse every request, so only
    #: the relay carries anything), and how long a cut lasts (drawn from 0.5x..1.5x); None: no
    #: cuts.
    cut_every_s: float | None = None
    cut_s: float = 4.0
    #: Each interval between kills is drawn from (1 - jitter)x .. (1 + jitter)x the mean.
    kill_jitter: float = 0.5
    #: Acknowledge one received message in this many (0: none).
    ack_one_in: int = 5
    #: Messages per API call, drawn between these bounds.
    batch: tuple[int, int] = (1, 16)
    #: The nodes' retry back-off cap and heartbeat interval.
    retry_cap_s: float = 1.0
    heartbeat_interval_s: float = 2.0
    #: How long the link may take to deliver everything once the faults stop.
    drain_timeout_s: float = 120.0
    #: Check the transcripts after the storm (``audit check`` from both sides, ``audit export``
    #: and ``audit verify`` from one, chosen by the seed, or from both with ``export_both``).
    #: They fetch two proofs per statement from the peer: minutes for tens of thousands.
    audit: bool = True
    export_both: bool = False

    def expected_codes(self) -> set[str]:
        """Security event codes the faults of this plan explain."""
        enabled = self.faults.enabled()
        codes = set()
        # Three failed exchanges in a row make the link DOWN, whatever failed them.
        if enabled & {"drop", "hang", "truncate", "corrupt"} or self.kill_every_s:
            codes.add("link_down")
        # A cut direct path while the relay is down leaves no transport.
        if self.cut_every_s and (self.relay_kill_every_s or not self.relay):
            codes.add("link_down")
        if enabled & {"corrupt", "truncate"}:
            codes |= CORRUPTION_CODES
        return codes


@dataclass
class Direction:
    sender: str
    receiver: str
    #: API-accepted message id -> (its text, when the API call was made: time.time()).
    accepted: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: Texts of submissions whose API call failed: the node may or may not have queued them.
    uncertain: set[str] = field(default_factory=set)


@dataclass
class StormReport:
    seed: int
    faults: dict[str, int]
    kills: list[str]
    accepted: dict[str, int]
    uncertain: dict[str, int]
    delivered: dict[str, int]
    lost: int
    duplicates: int
    acks: int
    submit_s: float
    drain_s: float
    worst_delay_s: float
    p50_delay_s: float
    p99_delay_s: float
    out_of_order: dict[str, int]
    events: dict[str, dict[str, int]]
    problems: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    #: Relay outages (kill -9), direct path cuts, failovers to the relay by node, and the
    #: messages seen held at the relay (sampled every 0.1 s) by direction.
    relay_kills: list[str] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)
    failovers: dict[str, int] = field(default_factory=dict)
    relayed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"seed {self.seed} (replay: {SEED_ENV}={self.seed})",
            f"faults injected: {dict(sorted(self.faults.items()))}",
            f"kills: {len(self.kills)} ({', '.join(self.kills)})",
            f"relay kills: {len(self.relay_kills)} ({', '.join(self.relay_kills)}); "
            f"direct path cuts: {len(self.cuts)} ({', '.join(self.cuts)})",
            f"failovers to the relay: {self.failovers}; messages seen at the relay: {self.relayed}",
            f"accepted by the API: {self.accepted}; uncertain (call failed): {self.uncertain}",
            f"delivered: {self.delivered}; acknowledgements: {self.acks}",
            f"messages lost: {self.lost}; duplicates delivered: {self.duplicates}",
            f"submitting took {self.submit_s:.1f} s; drain after the storm {self.drain_s:.1f} s",
            f"delivery delay: p50 {self.p50_delay_s:.2f} s, p99 {self.p99_delay_s:.2f} s, "
            f"worst {self.worst_delay_s:.2f} s",
            f"committed out of sequence order: {self.out_of_order}",
            f"security events: {self.events}",
            "phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()),
        ]
        lines += [f"PROBLEM: {p}" for p in self.problems] or ["no problems"]
        return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]


class Storm:
    """Two linked nodes behind fault proxies in ``base``; a context manager."""

    def __init__(self, base: Path, plan: StormPlan) -> None:
        self.base = base
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self._exporter = self.rng.choice(NAMES)
        self.homes: dict[str, NodeHome] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self.nodes: dict[str, Any] = {}
        self.kills: list[str] = []
        self.relay_kills: list[str] = []
        self.cuts: list[str] = []
        self.relay: Any = None
        #: Envelope ids of messages seen held at the relay, by (sender, recipient).
        self.relayed: dict[tuple[str, str], set[str]] = {}
        self.directions = {(a, b): Direction(a, b) for a in NAMES for b in NAMES if a != b}
        #: Seconds each phase took: start, storm, drain, checks.
        self.timings: dict[str, float] = {}
        #: What went wrong in the harness's own threads (a node that would not restart...).
        self._harness_problems: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one kill or restart at a time, and none during checks

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> Storm:
        started = time.monotonic()
        now = datetime.now(UTC)
        for name in NAMES:
            home = NodeHome.init(
                self.base / name,
                name=name,
                listen=f"127.0.0.1:{integration.free_port()}",
                display_names={"en": name.capitalize()},
                # Plain HTTP: the fault proxy parses and rewrites HTTP messages, which TLS (with
                # the certificate pinned in the card) exists to prevent.
                tls=False,
            )
            proxy = FaultProxy(
                f"to-{name}",
                (home.config.listen_host, home.config.listen_port),
                seed=self.plan.seed,
            ).start()
            # Peers reach this node only through its proxy: the card names the proxy.
            config = dataclasses.replace(
                home.config,
                endpoint=proxy.url,
                retry_cap_s=self.plan.retry_cap_s,
                heartbeat_interval_s=self.plan.heartbeat_interval_s,
                # Each peer's transports: the direct path (the proxy), then the relay.
                relays=[RELAY] if self.plan.relay else [],
                relay_resend_s=3.0,
            )
            (home.dir / CONFIG_FILE).write_text(config.to_toml())
            self.homes[name] = NodeHome(home.dir)
            self.proxies[name] = proxy
        for name, home in self.homes.items():
            for other_name, other in self.homes.items():
                if other_name != name:
                    card = other.card(now)
                    home.add_peer(card, card.fingerprint, now)
        for name, home in self.homes.items():
            self.nodes[name] = integration.NodeProcess(home, self.base)
        processes = list(self.nodes.values())
        if self.plan.relay:
            # A neutral party's relay (TLS, pinned by both nodes), registered with each node.
            relay_home = integration.make_relay(self.base, self.homes, RELAY)
            self.relay = integration.NodeProcess(relay_home, self.base, command=("relay", "serve"))
            processes.append(self.relay)
        # All at once: starting a node is mostly Python importing, one core each.
        starters = [threading.Thread(target=n.start, args=(RESTART_TIMEOUT_S,)) for n in processes]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        for node in processes:
            if node.process is None or node.process.poll() is not None:
                raise RuntimeError(f"node did not start: {node.log_path.read_text()[-2000:]}")
        self.timings["start"] = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for node in self.nodes.values():
            node.stop()
        if self.relay is not None:
            self.relay.stop()
            self.relay.home.close()
        for proxy in self.proxies.values():
            proxy.stop()
        for home in self.homes.values():
            home.close()

    def _api(self, name: str, timeout: float = 10.0) -> httpx.Client:
        home = self.homes[name]
        return httpx.Client(
            base_url=self.nodes[name].local_url,
            headers={"authorization": f"Bearer {home.api_token}"},
            timeout=timeout,
        )

    # -- the storm ---------------------------------------------------------------------------

    def run(self) -> StormReport:
        plan = self.plan
        print(f"chaos storm: seed {plan.seed} (replay with {SEED_ENV}={plan.seed})", flush=True)
        for proxy in self.proxies.values():
            proxy.set_faults(plan.faults)
        # Each thread gets its own generator, seeded from the storm's, so that one thread's
        # pace does not change what another draws.
        seeds = {
            key: self.rng.randrange(2**32)
            for key in ("killer", "relay killer", "cutter", *self.directions)
        }
        threads = [
            self._thread(self._submit, d, random.Random(seeds[key]))
            for key, d in self.directions.items()
        ]
        threads.append(self._thread(self._ack))
        if plan.kill_every_s:
            threads.append(self._thread(self._kill, random.Random(seeds["killer"])))
        if plan.relay:
            threads.append(self._thread(self._watch_relay))
            if plan.relay_kill_every_s:
                threads.append(self._thread(self._kill_relay, random.Random(seeds["relay killer"])))
        if plan.cut_every_s:
            threads.append(self._thread(self._cut, random.Random(seeds["cutter"])))
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads[:2]:
            t.join()
        submit_s = time.monotonic() - started
        self._stop.set()
        for t in threads[2:]:
            t.join(timeout=60)
        # The storm is over: clean paths, both nodes up, then wait for the link to drain.
        for proxy in self.proxies.values():
            proxy.set_faults(CLEAN)
        for node in [*self.nodes.values(), *([self.relay] if self.relay else [])]:
            if node.process is None or node.process.poll() is not None:
                node.start(timeout=RESTART_TIMEOUT_S)
        drain_started = time.monotonic()
        problems = self._harness_problems + self._drain()
        drain_s = time.monotonic() - drain_started
        checks_started = time.monotonic()
        report = self._report(submit_s, drain_s, problems)
        self.timings.update(storm=submit_s, drain=drain_s, checks=time.monotonic() - checks_started)
        report.timings = dict(self.timings)
        return report

    def _thread(self, target: Callable[..., None], *args: object) -> threading.Thread:
        """A daemon thread whose failure is reported as a problem of the storm, not lost."""

        def run() -> None:
            try:
                target(*args)
            except Exception as e:
                self._harness_problems.append(f"harness thread {target.__name__} failed: {e!r}")
                self._stop.set()

        return threading.Thread(target=run, daemon=True, name=target.__name__)

    def _submit(self, d: Direction, rng: random.Random) -> None:
        """Submit ``plan.messages`` accepted messages from d.sender to d.receiver, paced."""
        plan = self.plan
        pace = plan.duration_s / plan.messages
        started = time.monotonic()
        attempt = 0
        with self._api(d.sender) as api:
            while len(d.accepted) < plan.messages and not self._stop.is_set():
                count = min(rng.randint(*plan.batch), plan.messages - len(d.accepted))
                first = len(d.accepted)
                attempt += 1
                texts = [
                    f"storm {plan.seed} {d.sender}->{d.receiver} #{first + i} call {attempt}"
                    for i in range(count)
                ]
                body = [{"to": d.receiver, "priority": "routine", "text": t} for t in texts]
                called = time.time()
                try:
                    reply = api.post("/api/v1/messages/batch", json=body)
                    reply.raise_for_status()
                    ids = reply.json()["ids"]
                except (httpx.HTTPError, ValueError, KeyError):
                    d.uncertain.update(texts)  # the node may have died after committing them
                    time.sleep(0.5)
                    continue
                for message_id, text in zip(ids, texts, strict=True):
                    d.accepted[message_id] = (text, called)
                # Keep to the plan's pace: ahead of schedule, wait.
                ahead = started + len(d.accepted) * pace - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def _ack(self) -> None:
        """Acknowledge one received storm message in ``ack_one_in``, as an operator would."""
        if not self.plan.ack_one_in:
            return
        while not self._stop.wait(0.5):
            for d in self.directions.values():
                for message_id in self._unacknowledged(d)[:20]:
                    try:
                        with self._api(d.receiver) as api:
                            api.post(
                                f"/api/v1/messages/{message_id}/ack", json={"operator": "chaos"}
                            )
                    except httpx.HTTPError:
                        break  # the receiver is down; its store says later what was done

    def _unacknowledged(self, d: Direction) -> list[str]:
        home = self.homes[d.receiver]
        acked = select(message_events.c.message_id).where(message_events.c.state == "acknowledged")
        with home.store.read() as conn:
            rows = conn.execute(
                select(messages.c.id, messages.c.seq).where(
                    messages.c.direction == "in",
                    messages.c.peer == d.sender,
                    messages.c.kind == "message",
                    messages.c.seq % self.plan.ack_one_in == 0,
                    messages.c.id.not_in(acked),
                )
            ).all()
        return [r.id for r in rows]

    def _kill(self, rng: random.Random) -> None:
        every, jitter = self.plan.kill_every_s or 0.0, self.plan.kill_jitter
        while not self._stop.wait(rng.uniform((1 - jitter) * every, (1 + jitter) * every)):
            name = rng.choice(NAMES)
            down_s = rng.uniform(0.0, 1.0)
            with self._lock:
                self.kills.append(f"{name}@{time.strftime('%H:%M:%S')}")
                self.nodes[name].kill9()
                time.sleep(down_s)
                self.nodes[name].start(timeout=RESTART_TIMEOUT_S)

    def _kill_relay(self, rng: random.Random) -> None:
        """Relay outages: kill -9 of the relay at random moments, restarted after 0.5..2 s."""
        every = self.plan.relay_kill_every_s or 0.0
        while not self._stop.wait(rng.uniform(0.5 * every, 1.5 * every)):
            down_s = rng.uniform(0.5, 2.0)
            self.relay_kills.append(f"{time.strftime('%H:%M:%S')} for {down_s:.1f} s")
            self.relay.kill9()
            time.sleep(down_s)
            self.relay.start(timeout=RESTART_TIMEOUT_S)

    def _cut(self, rng: random.Random) -> None:
        """Cut the direct path (both ways) for a while at random moments: only the relay can
        carry anything then (when it is up), and each node must fail over to it and back."""
        every, length = self.plan.cut_every_s or 0.0, self.plan.cut_s
        # The first cut comes early, so that even a short storm sends through the relay.
        wait = rng.uniform(0.1 * every, 0.5 * every)
        while not self._stop.wait(wait):
            cut_s = rng.uniform(0.5 * length, 1.5 * length)
            self.cuts.append(f"{time.strftime('%H:%M:%S')} for {cut_s:.1f} s")
            for proxy in self.proxies.values():
                proxy.set_faults(CUT)
            self._stop.wait(cut_s)
            for proxy in self.proxies.values():
                proxy.set_faults(self.plan.faults)
            wait = rng.uniform(0.5 * every, 1.5 * every)

    def _watch_relay(self) -> None:
        """Note every message the relay holds (sampled): proof that traffic went through it."""
        home = self.relay.home
        while not self._stop.wait(0.1):
            try:
                with home.store.read() as conn:
                    rows = conn.execute(
                        select(
                            relay_mailbox.c.sender,
                            relay_mailbox.c.recipient,
                            relay_mailbox.c.envelope_id,
                        ).where(relay_mailbox.c.kind == "message")
                    ).all()
            except Exception:  # the relay died mid-read (its store is fine): sample again
                continue
            for r in rows:
                self.relayed.setdefault((r.sender, r.recipient), set()).add(r.envelope_id)

    def _relay_problems(self) -> tuple[dict[str, int], list[str]]:
        """Failovers to the relay per node; a problem when the plan cut the direct path and no
        message went through the relay (the storm would not have tested the relay at all)."""
        failovers = {}
        for name, home in self.homes.items():
            with home.store.read() as conn:
                failovers[name] = conn.execute(
                    select(func.count())
                    .select_from(link_events)
                    .where(
                        link_events.c.kind == "failover",
                        link_events.c.transport == f"relay:{RELAY}",
                    )
                ).scalar_one()
        problems = []
        if self.plan.relay and self.cuts:
            if not any(failovers.values()):
                problems.append("the direct path was cut but no node failed over to the relay")
            if not any(self.relayed.values()):
                problems.append("the direct path was cut but no message went through the relay")
        return failovers, problems

    # -- after the storm -----------------------------------------------------------------------

    def _pending(self, name: str) -> int:
        with self.homes[name].store.read() as conn:
            return conn.execute(select(func.count()).select_from(outbox_queue)).scalar_one()

    def _drain(self) -> list[str]:
        deadline = time.monotonic() + self.plan.drain_timeout_s
        while time.monotonic() < deadline:
            if all(self._pending(n) == 0 for n in NAMES) and self._acks_settled():
                return []
            time.sleep(0.2)
        return [
            f"not drained {self.plan.drain_timeout_s:.0f} s after the storm: "
            + ", ".join(f"{n} has {self._pending(n)} envelope(s) queued" for n in NAMES)
        ]

    def _acks_settled(self) -> bool:
        return self._ack_problems() == []

    def _inbound(self, d: Direction) -> list[Any]:
        with self.homes[d.receiver].store.read() as conn:
            return conn.execute(
                select(messages.c.id, messages.c.seq, messages.c.body).where(
                    messages.c.direction == "in",
                    messages.c.peer == d.sender,
                    messages.c.kind == "message",
                )
            ).all()

    def _inbound_seqs(self, d: Direction) -> list[int]:
        with self.homes[d.receiver].store.read() as conn:
            return list(
                conn.execute(
                    select(messages.c.seq).where(
                        messages.c.direction == "in", messages.c.peer == d.sender
                    )
                ).scalars()
            )

    def _events(self, name: str, ids: list[str], state: str) -> list[Any]:
        rows = []
        with self.homes[name].store.read() as conn:
            for i in range(0, len(ids), 500):
                rows += conn.execute(
                    select(
                        message_events.c.message_id, message_events.c.at_us, message_events.c.id
                    ).where(
                        message_events.c.message_id.in_(ids[i : i + 500]),
                        message_events.c.state == state,
                    )
                ).all()
        return sorted(rows, key=lambda r: r.id)  # in the order the node recorded them

    def _ack_problems(self) -> list[str]:
        """Every acknowledgement an operator made arrived, and its own receipt came back."""
        problems = []
        for d in self.directions.values():
            acked = self._events(d.receiver, [r.id for r in self._inbound(d)], "acknowledged")
            ids = sorted({r.message_id for r in acked})
            at_sender = {r.message_id for r in self._events(d.sender, ids, "acknowledged")}
            missing = [i for i in ids if i not in at_sender]
            if missing:
                problems.append(
                    f"{len(missing)} acknowledgement(s) by {d.receiver} never reached "
                    f"{d.sender}: {missing[:5]}"
                )
        return problems

    def _report(self, submit_s: float, drain_s: float, problems: list[str]) -> StormReport:
        lost = duplicates = 0
        delays: list[float] = []
        delivered: dict[str, int] = {}
        out_of_order: dict[str, int] = {}
        for d in self.directions.values():
            key = f"{d.sender}->{d.receiver}"
            inbound = self._inbound(d)
            delivered[key] = len(inbound)
            by_id = {r.id: r for r in inbound}
            texts = Counter(json.loads(r.body).get("text") for r in inbound)
            # Lost: accepted by the sender's API, never committed by the receiver.
            missing = [i for i in d.accepted if i not in by_id]
            lost += len(missing)
            if missing:
                problems.append(f"{key}: {len(missing)} accepted message(s) lost: {missing[:5]}")
            # Duplicates: one submission delivered as two messages, or delivered twice.
            twice = [t for t, n in texts.items() if n > 1]
            events = self._events(d.receiver, list(by_id), "delivered")
            per_id = Counter(r.message_id for r in events)
            twice += [i for i, n in per_id.items() if n > 1]
            duplicates += len(twice)
            if twice:
                problems.append(f"{key}: {len(twice)} delivered more than once: {twice[:5]}")
            known = {t for t, _ in d.accepted.values()} | d.uncertain
            phantoms = [t for t in texts if t not in known]
            if phantoms:
                problems.append(f"{key}: {len(phantoms)} delivered but never sent: {phantoms[:3]}")
            # Messages and acknowledgements share a direction's sequence numbers.
            seqs = sorted(self._inbound_seqs(d))
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{key}: sequence numbers are not 1..{len(seqs)} once each")
            # Receipts: every accepted message is DELIVERED at its sender, by exactly one receipt.
            at_sender = Counter(
                r.message_id for r in self._events(d.sender, list(d.accepted), "delivered")
            )
            unreceipted = [i for i in d.accepted if at_sender[i] == 0 and i in by_id]
            if unreceipted:
                problems.append(
                    f"{key}: {len(unreceipted)} delivered without a receipt at the sender: "
                    f"{unreceipted[:5]}"
                )
            receipted_twice = [i for i, n in at_sender.items() if n > 1]
            if receipted_twice:
                problems.append(
                    f"{key}: {len(receipted_twice)} marked DELIVERED twice at the sender: "
                    f"{receipted_twice[:5]}"
                )
            delivered_at = {r.message_id: r.at_us / 1e6 for r in events}
            delays += [
                delivered_at[i] - called
                for i, (_t, called) in d.accepted.items()
                if i in delivered_at
            ]
            order = [by_id[r.message_id].seq for r in events]
            out_of_order[key] = sum(1 for a, b in itertools.pairwise(order) if b < a)
        problems += self._ack_problems()
        problems += self._gap_problems()
        if self.plan.audit:
            problems += self._transcript_problems()
        events_by_node, event_problems = self._security_events()
        problems += event_problems
        problems += self._log_problems()
        failovers, relay_problems = self._relay_problems()
        problems += relay_problems
        acks = sum(
            len(self._events(d.sender, list(d.accepted), "acknowledged"))
            for d in self.directions.values()
        )
        faults: Counter[str] = Counter()
        for proxy in self.proxies.values():
            faults.update(proxy.counts)
        return StormReport(
            seed=self.plan.seed,
            faults=dict(faults),
            kills=self.kills,
            accepted={
                f"{d.sender}->{d.receiver}": len(d.accepted) for d in self.directions.values()
            },
            uncertain={
                f"{d.sender}->{d.receiver}": len(d.uncertain) for d in self.directions.values()
            },
            delivered=delivered,
            lost=lost,
            duplicates=duplicates,
            acks=acks,
            submit_s=submit_s,
            drain_s=drain_s,
            worst_delay_s=max(delays, default=0.0),
            p50_delay_s=_percentile(delays, 50),
            p99_delay_s=_percentile(delays, 99),
            out_of_order=out_of_order,
            events=events_by_node,
            problems=problems,
            relay_kills=self.relay_kills,
            cuts=self.cuts,
            failovers=failovers,
            relayed={f"{a}->{b}": len(ids) for (a, b), ids in sorted(self.relayed.items())},
        )

    def _gap_problems(self) -> list[str]:
        problems = []
        for name, home in self.homes.items():
            with home.store.read() as conn:
                gaps = conn.execute(select(inbound_gaps.c.peer, inbound_gaps.c.seq)).all()
                unreceipted = conn.execute(
                    select(func.count())
                    .select_from(messages)
                    .where(
                        messages.c.direction == "in",
                        messages.c.id.not_in(select(receipt_items.c.message_id)),
                    )
                ).scalar_one()
                out_receipts = conn.execute(
                    select(func.count()).select_from(receipts).where(receipts.c.direction == "out")
                ).scalar_one()
            if gaps:
                problems.append(f"{name}: sequence gaps still open after the drain: {gaps[:10]}")
            if unreceipted:
                problems.append(f"{name}: {unreceipted} received message(s) never receipted")
            if not out_receipts:
                problems.append(f"{name}: signed no receipt at all")
        return problems

    @staticmethod
    def _hotline(*args: str) -> tuple[int, str]:
        """Run a ``hotline`` command in this process; its exit code and output."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(list(args))
        return code, out.getvalue()

    def _transcript_problems(self) -> list[str]:
        """Both transcripts verify and agree: audit check each way, and a verified bundle each."""
        problems = []
        for name in NAMES:
            peer = next(n for n in NAMES if n != name)
            home = self.homes[name]
            started = time.monotonic()
            code, out = self._hotline(
                "audit", "check", "--dir", str(home.dir), "--peer", peer, "--json"
            )
            self.timings[f"audit check {name}"] = time.monotonic() - started
            try:
                result = json.loads(out)
            except ValueError:
                result = None
            if code != 0 or result is None:
                problems.append(f"{name}: audit check --peer {peer} exited {code}: {out[-1500:]}")
            elif result["unproved"] or result["items"] == 0:
                problems.append(
                    f"{name}: audit check: {len(result['unproved'])} of {result['items']} "
                    "statements not provable in the peer's log"
                )
            if name != self._exporter and not self.plan.export_both:
                continue
            bundle = self.base / f"{name}.bundle"
            started = time.monotonic()
            code, out = self._hotline(
                "audit", "export", "--dir", str(home.dir), "--peer", peer, "--out", str(bundle)
            )
            self.timings[f"audit export {name}"] = time.monotonic() - started
            if code != 0:
                problems.append(f"{name}: audit export failed: {out[-1500:]}")
                continue
            # One worker: this process runs the proxies' threads, so it must not fork.
            started = time.monotonic()
            code, out = self._hotline("audit", "verify", str(bundle), "--json", "--workers", "1")
            self.timings[f"audit verify {name}"] = time.monotonic() - started
            if code != 0:
                problems.append(f"{name}: audit verify failed: {out[-1500:]}")
        return problems

    def _security_events(self) -> tuple[dict[str, dict[str, int]], list[str]]:
        """Security events by node and code; those the plan's faults do not explain."""
        expected = self.plan.expected_codes()
        duplicates = self.plan.faults.enabled() & {"duplicate", "reorder"}
        counts: dict[str, dict[str, int]] = {}
        problems = []
        for name, home in self.homes.items():
            with home.store.read() as conn:
                rows = conn.execute(select(security_events.c.code, security_events.c.detail)).all()
            counts[name] = dict(Counter(r.code for r in rows))
            for row in rows:
                # A duplicated or held-back heartbeat is a replay the receiver rightly refuses.
                replayed_heartbeat = (
                    duplicates
                    and row.code == "replay_conflict"
                    and row.detail.startswith("heartbeat refused")
                )
                if row.code in expected or replayed_heartbeat:
                    continue
                problems.append(f"{name}: unexplained security event {row.code}: {row.detail}")
        return counts, problems

    def _log_problems(self) -> list[str]:
        problems = []
        processes = {**self.nodes, **({RELAY: self.relay} if self.relay else {})}
        for name, node in processes.items():
            text = node.log_path.read_text(errors="replace")
            if "Traceback" in text:
                at = text.index("Traceback")
                problems.append(
                    f"{name}'s log has a traceback: {text[max(0, at - 300) : at + 1500]}"
                )
        return problems

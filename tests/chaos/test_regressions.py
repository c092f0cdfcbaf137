"""Bugs the chaos storm found, each pinned by a test named after it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import time
from datetime import UTC, datetime

import pytest
from faultproxy import FaultProxy
from sqlalchemy import select
from starlette.requests import Request
from storm import integration

from hotline.errors import ErrorCode, WireError
from hotline.node.app import read_body
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.schema import security_events
from hotline.transcript.heads import peer_heads


def test_a_request_cut_mid_body_is_a_malformed_refusal_not_an_internal_error():
    """A path that broke mid-request made the node log "unexpected error" with a traceback and
    answer 500 internal (storm seed 1684538997, a truncated request)."""
    parts = [
        {"type": "http.request", "body": b"HLB1\x00\x01", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return parts.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/v1/envelopes", "headers": []}
    with pytest.raises(WireError) as caught:
        asyncio.run(read_body(Request(scope, receive), 1024))
    assert caught.value.code == ErrorCode.MALFORMED
    assert "after 6 bytes" in caught.value.detail


def _equivocations(node) -> list[str]:
    with node.home.store.read() as conn:
        return list(
            conn.execute(
                select(security_events.c.detail).where(security_events.c.code == "equivocation")
            ).scalars()
        )


#: A proof request (one proof, or a chain of them) answered 429, in moscow's log.
LIMITED = re.compile(r"/v1/transcript/consistency(-chain)?\S*: HTTP 429")


@pytest.mark.integration
@pytest.mark.slow
def test_a_rate_limited_proof_request_is_not_an_equivocation(tmp_path):
    """A peer answering 429 to a consistency-proof request (its rate limit, reached by our own
    checks) was taken for a peer refusing to prove its heads: an equivocation alarm, and the
    head marked inconsistent for good."""
    homes = integration.make_linked_homes(
        tmp_path, ["washington", "moscow"], retry_cap_s=1.0, heartbeat_interval_s=1.0
    )
    # washington answers moscow's link requests at one a second: proofs must wait their turn.
    w = homes["washington"]
    config = dataclasses.replace(w.config, rate_limit_per_s=1.0, rate_limit_burst=2.0)
    (w.dir / CONFIG_FILE).write_text(config.to_toml())
    homes["washington"] = NodeHome(w.dir)
    nodes = {n: integration.NodeProcess(h, tmp_path) for n, h in homes.items()}
    try:
        for node in nodes.values():
            node.start()
        # moscow checks washington's new heads every few seconds, asking for one proof of all
        # the new ones, between heartbeats that take most of the budget: whether a proof request
        # finds the budget spent is a matter of milliseconds. New heads keep coming (a message a
        # second) so that moscow keeps asking, until one of its proof requests is refused.
        deadline = time.monotonic() + 40
        log = nodes["moscow"].log_path
        with nodes["washington"].api() as api:
            sent = 0
            while time.monotonic() < deadline:
                if LIMITED.search(log.read_text()) or _equivocations(nodes["moscow"]):
                    break
                api.post("/api/v1/messages", json={"to": "moscow", "text": f"head {sent}"})
                sent += 1
                time.sleep(1.0)
        assert LIMITED.search(log.read_text()), "the test did not hit the limit"
        time.sleep(6)  # another round of head checks
        assert _equivocations(nodes["moscow"]) == []
    finally:
        for node in nodes.values():
            node.stop()
        for home in homes.values():
            home.close()


@pytest.mark.integration
@pytest.mark.slow
def test_a_consistency_proof_damaged_on_the_way_is_fetched_again_not_an_equivocation(tmp_path):
    """A proof travels unsigned: one damaged on the way failed to verify and raised an
    equivocation alarm at once, marking the peer's head inconsistent for good."""
    listen = {n: f"127.0.0.1:{integration.free_port()}" for n in ("washington", "moscow")}
    proxies = {
        n: FaultProxy(f"to-{n}", ("127.0.0.1", int(a.rsplit(":", 1)[1])), seed=0).start()
        for n, a in listen.items()
    }
    damaged: list[str] = []

    def damage_first_proof(path: str, body: bytes) -> bytes:
        # The first chain of proofs washington sends moscow, and then the first single proof
        # (moscow's fallback after the chain failed): one hash changed, still valid base64.
        kind = path.split("?", maxsplit=1)[0]
        if not kind.startswith("/v1/transcript/consistency") or any(
            d.split("?")[0] == kind for d in damaged
        ):
            return body
        reply = json.loads(body)
        proofs = reply["proofs"] if "proofs" in reply else [reply["proof"]]
        proof = next((p for p in proofs if p), None)
        if proof is None:
            return body
        proof[0] = base64.b64encode(bytes(32)).decode()
        damaged.append(path)
        return json.dumps(reply).encode()

    proxies["washington"].rewrite_answer = damage_first_proof
    homes = {}
    for name, address in listen.items():
        # Plain HTTP: the fault proxy reads and rewrites the proof replies it carries.
        home = NodeHome.init(
            tmp_path / name, name=name, listen=address, display_names={"en": name}, tls=False
        )
        config = dataclasses.replace(
            home.config, endpoint=proxies[name].url, retry_cap_s=1.0, heartbeat_interval_s=1.0
        )
        (home.dir / CONFIG_FILE).write_text(config.to_toml())
        homes[name] = NodeHome(home.dir)
    now = datetime.now(UTC)
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    nodes = {n: integration.NodeProcess(h, tmp_path) for n, h in homes.items()}
    try:
        for node in nodes.values():
            node.start()
        with nodes["washington"].api() as api:
            deadline = time.monotonic() + 40
            while len(damaged) < 2 and time.monotonic() < deadline:
                api.post("/api/v1/messages", json={"to": "moscow", "text": "a new head"})
                time.sleep(1.0)
        assert len(damaged) == 2, f"proofs damaged on the way: {damaged}"
        time.sleep(6)  # the next round of head checks
        assert _equivocations(nodes["moscow"]) == []
        with homes["moscow"].store.read() as conn:
            states = {h.checked for h in peer_heads(conn, "washington")}
        assert 2 not in states, "a head was marked inconsistent"
    finally:
        for node in nodes.values():
            node.stop()
        for proxy in proxies.values():
            proxy.stop()
        for home in homes.values():
            home.close()

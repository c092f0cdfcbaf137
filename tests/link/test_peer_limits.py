"""The per-peer rate limit of the link endpoints (threat model F9): keyed by the sender a routing
header claims, looked at before any cryptography, charged only for requests that proved to come
from that peer. Driven through the node's ASGI app with a distinct client address per request,
as a peer with many addresses (or a spoofer) would send."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hotline.core.card import Identity
from hotline.core.encoding import b64encode, encode_json
from hotline.core.envelope import encode_batch, new_id
from hotline.core.relay import sign_deposit
from hotline.link.transport_http import BATCH_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE
from hotline.node.app import create_app
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.node.runtime import Node


def _homes(base: Path, names: tuple[str, ...]) -> dict[str, NodeHome]:
    now = datetime.now(UTC)
    homes = {
        name: NodeHome.init(
            base / name, name=name, listen=f"127.0.0.1:{18600 + i}", display_names={"en": name}
        )
        for i, name in enumerate(names)
    }
    for home in homes.values():
        for other in homes.values():
            if other is not home and other.config.name != "mallory":
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    return homes


@pytest.fixture
def trio(tmp_path: Path):
    """washington and beijing are moscow's peers; mallory is no one's (it only forges)."""
    homes = _homes(tmp_path, ("washington", "moscow", "beijing", "mallory"))
    moscow = homes["moscow"]
    config = dataclasses.replace(
        moscow.config, peer_rate_limit_per_s=0.001, peer_rate_limit_burst=3.0
    )
    (moscow.dir / CONFIG_FILE).write_text(config.to_toml())
    moscow.close()
    homes["moscow"] = NodeHome(moscow.dir)
    yield homes
    for home in homes.values():
        home.close()


class _Sender:
    """Posts each request from a new client address (a peer with many addresses)."""

    def __init__(self, app) -> None:
        self.app = app
        self.count = 0

    async def post(self, path: str, body: bytes, content_type: str) -> httpx.Response:
        self.count += 1
        transport = httpx.ASGITransport(app=self.app, client=(f"192.0.2.{self.count}", 1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(path, content=body, headers={"content-type": content_type})

    async def batch(self, envelopes: list[bytes]) -> httpx.Response:
        return await self.post("/v1/envelopes", encode_batch(envelopes), BATCH_CONTENT_TYPE)

    async def heartbeat(self, envelope: bytes) -> httpx.Response:
        return await self.post("/v1/heartbeat", envelope, ENVELOPE_CONTENT_TYPE)


def _delivered(home: NodeHome) -> int:
    from sqlalchemy import func, select

    from hotline.store.schema import messages

    with home.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())


def test_a_peer_over_its_budget_gets_429_from_any_address_while_another_peer_is_served(
    trio, forge, forge_beat, caplog
):
    w, m, b = trio["washington"], trio["moscow"], trio["beijing"]

    async def run() -> list[httpx.Response]:
        send = _Sender(create_app(Node(m)))
        replies = [await send.batch([forge(w, m, seq=seq)]) for seq in (1, 2)]
        replies.append(await send.heartbeat(forge_beat(w, m)))  # a heartbeat costs one too
        replies.append(await send.batch([forge(w, m, seq=3)]))  # a fourth address, same peer
        replies.append(await send.heartbeat(forge_beat(w, m)))
        replies.append(await send.batch([forge(b, m, seq=1)]))  # another peer
        return replies

    with caplog.at_level(logging.INFO, logger="hotline.node.app"):
        replies = asyncio.run(run())
    assert [r.status_code for r in replies] == [200, 200, 200, 429, 429, 200]
    for refused in replies[3:5]:
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "peer washington" in refused.json()["error"]["detail"]
    assert [o["status"] for o in replies[5].json()["results"]] == ["accepted"]
    # Refused before the envelope was opened: washington's third message was never stored.
    assert _delivered(m) == 3
    assert any("peer washington is over its rate limit" in r.message for r in caplog.records)


def test_forged_sender_headers_do_not_spend_the_real_peers_budget(trio, forge, forge_beat):
    w, m, mallory = trio["washington"], trio["moscow"], trio["mallory"]

    async def run() -> tuple[list[httpx.Response], list[httpx.Response]]:
        send = _Sender(create_app(Node(m)))
        forged = []
        for seq in range(1, 11):  # far more than washington's burst of 3
            forged.append(
                await send.batch([forge(mallory, m, seq=seq, header_sender="washington")])
            )
            forged.append(await send.heartbeat(forge_beat(mallory, m, header_sender="washington")))
        real = [await send.batch([forge(w, m, seq=seq)]) for seq in (1, 2, 3, 4)]
        return forged, real

    forged, real = asyncio.run(run())
    # The forgeries were refused one by one (never as over the limit: they cost washington
    # nothing), and washington still has its whole budget afterwards.
    batches, heartbeats = forged[0::2], forged[1::2]
    for reply in batches:
        assert reply.status_code == 200
        assert [o["status"] for o in reply.json()["results"]] == ["rejected"]
    assert {r.json()["error"]["code"] for r in heartbeats} == {"unknown_key"}
    assert [r.status_code for r in real] == [200, 200, 200, 429]
    assert [[o["status"] for o in r.json()["results"]] for r in real[:3]] == [["accepted"]] * 3


def test_relay_deposits_are_limited_per_node_and_forged_ones_spend_nothing(tmp_path: Path, forge):
    now = datetime.now(UTC)
    homes = {
        name: NodeHome.init(
            tmp_path / name,
            name=name,
            listen="127.0.0.1:1",
            display_names={},
            role="relay" if name == "geneva" else "node",
        )
        for name in ("washington", "moscow", "geneva", "mallory")
    }
    geneva = homes["geneva"]
    for name in ("washington", "moscow"):
        card = homes[name].card(now)
        geneva.add_peer(card, card.fingerprint, now)
    config = dataclasses.replace(
        geneva.config, peer_rate_limit_per_s=0.001, peer_rate_limit_burst=2.0
    )
    (geneva.dir / CONFIG_FILE).write_text(config.to_toml())
    geneva.close()
    homes["geneva"] = geneva = NodeHome(geneva.dir)
    w, mallory = homes["washington"], homes["mallory"]
    # mallory's keys under washington's name: the request claims washington, signed by mallory.
    posing = Identity("washington", mallory.identity.signing, mallory.identity.decryption)

    def deposit(identity: Identity) -> bytes:
        envelope = forge(w, homes["moscow"], seq=1)
        statement = sign_deposit(
            identity, relay="geneva", request_id=new_id(now), created=now, envelopes=[envelope]
        )
        return encode_json({"request": b64encode(statement), "envelopes": [b64encode(envelope)]})

    async def run() -> tuple[list[int], list[int]]:
        send = _Sender(create_app(Node(geneva)))
        path = "/v1/relay/deposit"
        forged = [
            (await send.post(path, deposit(posing), "application/json")).status_code
            for _ in range(5)
        ]
        real = [
            (await send.post(path, deposit(w.identity), "application/json")).status_code
            for _ in range(3)
        ]
        return forged, real

    try:
        forged, real = asyncio.run(run())
    finally:
        for home in homes.values():
            home.close()
    assert set(forged) == {403}
    assert real == [200, 200, 429]

"""A partition between two node processes: the link goes DOWN loudly, messages wait durably,
and everything is delivered once the path heals.

Two mechanisms: network namespaces joined by a veth cable whose end is taken down (where the
machine allows ``ip netns``; skipped with the reason elsewhere), and the fault proxy dropping
every exchange (anywhere). docs/chaos.md says which is which.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import netlab
import pytest
from faultproxy import CLEAN, FaultProxy, Faults
from sqlalchemy import select
from storm import integration

from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.schema import security_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = ("washington", "moscow")
#: Inside a fresh namespace every port is free; one fixed port keeps the addresses simple.
NETNS_PORT = 8400


@dataclass
class Pair:
    nodes: dict[str, Any]
    cut: Callable[[], None]
    heal: Callable[[], None]


def _homes(base: Path, listen: dict[str, str], endpoint: dict[str, str]) -> dict[str, NodeHome]:
    homes = {}
    for name in NAMES:
        home = NodeHome.init(
            base / name,
            name=name,
            listen=listen[name],
            display_names={"en": name},
            # Plain HTTP: the endpoints below are http:// (the fault proxy rewrites HTTP).
            tls=False,
        )
        config = dataclasses.replace(
            home.config, endpoint=endpoint[name], retry_cap_s=1.0, heartbeat_interval_s=1.0
        )
        (home.dir / CONFIG_FILE).write_text(config.to_toml())
        homes[name] = NodeHome(home.dir)
    now = datetime.now(UTC)
    for name, home in homes.items():
        other = homes[NAMES[1 - NAMES.index(name)]]
        card = other.card(now)
        home.add_peer(card, card.fingerprint, now)
    return homes


@contextlib.contextmanager
def _running(nodes: dict[str, Any]) -> Iterator[None]:
    try:
        for node in nodes.values():
            node.start()
        yield
    finally:
        for node in nodes.values():
            node.stop()
        for node in nodes.values():
            node.home.close()


@pytest.fixture
def netns_pair(tmp_path: Path) -> Iterator[Pair]:
    if os.environ.get("HOTLINE_TEST_STORE", "").startswith("postgres"):
        pytest.skip(
            "nodes in their own network namespaces cannot reach the PostgreSQL server on the "
            "host's loopback; the SQLite pass runs this, test_partition_by_the_proxy covers both"
        )
    reason = netlab.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no network namespaces: {reason}; test_partition_by_the_proxy covers this")
    net = netlab.NetnsPair().create()
    try:
        homes = _homes(
            tmp_path,
            {n: f"0.0.0.0:{NETNS_PORT}" for n in NAMES},
            {n: f"http://{net.cable_ip[n]}:{NETNS_PORT}" for n in NAMES},
        )
        nodes = {
            n: integration.NodeProcess(
                homes[n],
                tmp_path,
                wrapper=net.wrapper(n),
                local_url=f"http://{net.mgmt_ip[n]}:{NETNS_PORT}",
            )
            for n in NAMES
        }
        with _running(nodes):
            yield Pair(nodes, net.cut, net.heal)
    finally:
        net.destroy()


@pytest.fixture
def proxy_pair(tmp_path: Path) -> Iterator[Pair]:
    listen = {n: f"127.0.0.1:{integration.free_port()}" for n in NAMES}
    proxies = {
        n: FaultProxy(f"to-{n}", ("127.0.0.1", int(listen[n].rsplit(":", 1)[1])), seed=0).start()
        for n in NAMES
    }
    try:
        homes = _homes(tmp_path, listen, {n: proxies[n].url for n in NAMES})
        nodes = {n: integration.NodeProcess(homes[n], tmp_path) for n in NAMES}

        def set_all(faults: Faults) -> None:
            for proxy in proxies.values():
                proxy.set_faults(faults)

        with _running(nodes):
            yield Pair(nodes, lambda: set_all(Faults(drop=1.0)), lambda: set_all(CLEAN))
    finally:
        for proxy in proxies.values():
            proxy.stop()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _alarms(node: Any) -> list[str]:
    with node.home.store.read() as conn:
        return list(
            conn.execute(
                select(security_events.c.code).where(security_events.c.code == "link_down")
            ).scalars()
        )


def _partition_then_heal(pair: Pair) -> None:
    w, m = pair.nodes["washington"], pair.nodes["moscow"]
    with w.api() as api_w, m.api() as api_m:
        apis = {"washington": api_w, "moscow": api_m}

        def link_state(name: str) -> str:
            return str(apis[name].get("/api/v1/links").json()[0]["state"])

        _wait(lambda: link_state("washington") == "up", 20, "the first heartbeat")
        first = api_w.post(
            "/api/v1/messages",
            params={"wait": "delivered", "timeout": 20},
            json={"to": "moscow", "text": "before the cut"},
        ).json()
        assert first["state"] == "delivered"

        # (A node started before its peer may have raised one already: count from here.)
        before = {name: len(_alarms(node)) for name, node in pair.nodes.items()}
        pair.cut()
        sent = {
            (a, b): [
                api.post(
                    "/api/v1/messages", json={"to": b, "text": f"{a} during the cut {i}"}
                ).json()["id"]
                for i in range(3)
            ]
            for (a, api), b in zip(apis.items(), reversed(NAMES), strict=True)
        }
        # Never silent: each side raises the alarm and reports the link down ...
        _wait(
            lambda: len(_alarms(w)) > before["washington"] and len(_alarms(m)) > before["moscow"],
            40,
            "link_down alarms on both sides",
        )
        _wait(
            lambda: link_state("washington") == "down" and link_state("moscow") == "down",
            20,
            "both link reports to say down",
        )
        # ... and the messages wait in the outboxes, durable, undelivered.
        for (a, _b), ids in sent.items():
            states = {apis[a].get(f"/api/v1/messages/{i}").json()["state"] for i in ids}
            assert states <= {"queued", "sent"}, states

        pair.heal()
        for (a, _b), ids in sent.items():
            for i in ids:
                view = (
                    apis[a]
                    .get(f"/api/v1/messages/{i}", params={"wait": "delivered", "timeout": 30})
                    .json()
                )
                assert view["state"] == "delivered", view
        _wait(
            lambda: link_state("washington") == "up" and link_state("moscow") == "up",
            20,
            "both link reports to say up again",
        )
        # One alarm per outage, not one per failed attempt.
        assert len(_alarms(w)) == before["washington"] + 1
        assert len(_alarms(m)) == before["moscow"] + 1


def test_partition_by_network_namespaces(netns_pair):
    _partition_then_heal(netns_pair)


def test_partition_by_the_proxy(proxy_pair):
    _partition_then_heal(proxy_pair)

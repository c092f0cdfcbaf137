"""Real node processes on 127.0.0.1 for integration tests."""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, insert, text

from hotline import transcript
from hotline.core import merkle
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.store.db import normalize_url
from hotline.transcript._log import node_position
from hotline.transcript._schema import transcript_leaves, transcript_nodes

START_TIMEOUT_S = 60.0  # a loaded machine (load 20+) starts a node slowly


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NodeProcess:
    """One ``hotline serve`` process; can be stopped, killed with SIGKILL and restarted.

    ``wrapper`` prefixes the command (``ip netns exec NS`` runs it in a network namespace);
    ``local_url`` is where this machine reaches its API when that is not the listen address;
    ``command`` is the ``hotline`` command that runs it (``("relay", "serve")`` for a relay).
    """

    def __init__(
        self,
        home: NodeHome,
        log_dir: Path,
        *,
        wrapper: list[str] | None = None,
        local_url: str | None = None,
        command: tuple[str, ...] = ("serve",),
    ) -> None:
        self.home = home
        self.command = command
        self.log_path = log_dir / f"{home.config.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.wrapper = wrapper or []
        self._local_url = local_url

    @property
    def endpoint(self) -> str:
        """The URL in the node's card: where peers reach it (maybe through a proxy)."""
        return self.home.config.endpoint

    @property
    def local_url(self) -> str:
        """Where the operator API is reached from this machine: the listen address."""
        if self._local_url is not None:
            return self._local_url
        host = self.home.config.listen_host
        scheme = "https" if self.home.config.tls else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.home.config.listen_port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.wrapper,
                    sys.executable,
                    "-m",
                    "hotline",
                    *self.command,
                    "--dir",
                    str(self.home.dir),
                    "--log-level",
                    "info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited: {self.log_path.read_text()[-2000:]}")
            try:
                with self.client(timeout=0.5) as client:
                    if client.get("/healthz").status_code == 200:
                        return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"node did not start: {self.log_path.read_text()[-2000:]}")

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """A client of this node's address, trusting its own pinned certificate (TLS nodes)."""
        return httpx.Client(
            base_url=self.local_url, timeout=timeout, verify=self.home.local_verify()
        )

    def api(self) -> httpx.Client:
        client = self.client()
        client.headers["authorization"] = f"Bearer {self.home.api_token}"
        return client


def make_linked_homes(
    base: Path, names: list[str], *, tls: bool = True, **config_changes: object
) -> dict[str, NodeHome]:
    """Nodes that have each other as peers: TLS 1.3 with pinned certificates unless ``tls`` is
    False (tests that drive a browser or a third-party client, which would not know the pin)."""
    homes: dict[str, NodeHome] = {}
    now = datetime.now(UTC)
    for name in names:
        home = NodeHome.init(
            base / name,
            name=name,
            listen=f"127.0.0.1:{free_port()}",
            display_names={"en": name.capitalize()},
            tls=tls,
        )
        if config_changes:
            config = dataclasses.replace(home.config, **config_changes)  # type: ignore[arg-type]
            (home.dir / CONFIG_FILE).write_text(config.to_toml())
            home = NodeHome(home.dir)
        homes[name] = home
    for name, home in homes.items():
        for other_name, other in homes.items():
            if other_name != name:
                card = other.card(now)
                home.add_peer(card, card.fingerprint, now)
    return homes


def running_nodes(tmp_path: Path, names: list[str]) -> Iterator[dict[str, NodeProcess]]:
    """Nodes linked to each other, with fast retries and heartbeats, started; stopped after."""
    homes = make_linked_homes(tmp_path, names, retry_cap_s=1.0, heartbeat_interval_s=2.0)
    nodes = {name: NodeProcess(home, tmp_path) for name, home in homes.items()}
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()
        for home in homes.values():
            home.close()


@pytest.fixture
def exposed_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """washington (moscow is its peer, not started), with rate limits high enough that every
    request reaches its handler (tests/link covers the 429s) and a 2 s request deadline. Plain
    HTTP: schemathesis and raw-socket clients do not know the pinned certificate."""
    homes = make_linked_homes(
        tmp_path,
        ["washington", "moscow"],
        tls=False,
        rate_limit_per_s=10_000.0,
        rate_limit_burst=10_000.0,
        request_timeout_s=2.0,
    )
    node = NodeProcess(homes["washington"], tmp_path)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        for home in homes.values():
            home.close()


@pytest.fixture
def low_file_limit_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """washington (plain HTTP, moscow not started) started with a soft limit of 1,024 open
    files, what service managers often give a process."""
    homes = make_linked_homes(tmp_path, ["washington", "moscow"], tls=False)
    node = NodeProcess(homes["washington"], tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, soft), hard))
    try:
        node.start()  # the child inherits the limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield node
    finally:
        node.stop()
        for home in homes.values():
            home.close()


@pytest.fixture
def linked_nodes(tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    """washington and moscow."""
    yield from running_nodes(tmp_path, ["washington", "moscow"])


def rewrite_log(home: NodeHome) -> None:
    """What a dishonest party could do to its own store: rebuild its log in another order
    (same entries, first two swapped: same size, another root)."""
    with home.store.read() as conn:
        entries = [transcript.leaf(conn, i) for i in range(transcript.size(conn))]
    url = home.store_url
    home.close()
    entries[0], entries[1] = entries[1], entries[0]
    grown = merkle.append_leaves(0, [], [e.leaf_hash for e in entries])
    # A plain engine, none of hotline's hooks: the owner of the database can do anything.
    engine = create_engine(normalize_url(url))
    with engine.begin() as db:
        for table in ("transcript_leaves", "transcript_nodes"):
            if db.dialect.name == "sqlite":
                for action in ("update", "delete"):
                    db.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
            else:
                db.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            db.execute(text(f"DELETE FROM {table}"))
        db.execute(
            insert(transcript_leaves),
            [
                {"idx": i, "leaf_hash": e.leaf_hash, "kind": e.kind, "ref": e.ref}
                for i, e in enumerate(entries)
            ],
        )
        db.execute(
            insert(transcript_nodes),
            [{"pos": node_position(lv, ix), "hash": h} for lv, ix, h in grown.nodes if lv],
        )
    engine.dispose()


@pytest.fixture
def log_rewriter():
    """What a dishonest party could do to its own store (see ``rewrite_log``)."""
    return rewrite_log


@pytest.fixture
def nodes_with_witness(tmp_path):
    homes = make_linked_homes(
        tmp_path, ["washington", "moscow"], retry_cap_s=1.0, heartbeat_interval_s=1.0
    )
    witness = NodeHome.init(
        tmp_path / "helsinki",
        name="helsinki",
        listen=f"127.0.0.1:{free_port()}",
        display_names={"en": "Helsinki"},
        role="witness",
    )
    config = dataclasses.replace(witness.config, heartbeat_interval_s=1.0)
    (witness.dir / CONFIG_FILE).write_text(config.to_toml())
    witness = NodeHome(witness.dir)
    now = datetime.now(UTC)
    for home in homes.values():
        card = witness.card(now)
        home.add_peer(card, card.fingerprint, now)
        node_card = home.card(now)
        witness.add_peer(node_card, node_card.fingerprint, now)
    homes["helsinki"] = witness
    processes = {name: NodeProcess(home, tmp_path) for name, home in homes.items()}
    try:
        for process in processes.values():
            process.start()
        yield processes
    finally:
        for process in processes.values():
            process.stop()
        for home in homes.values():
            home.close()


@pytest.fixture
def linked_trio(tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    """washington, moscow and beijing."""
    yield from running_nodes(tmp_path, ["washington", "moscow", "beijing"])


def make_relay(base: Path, homes: dict[str, NodeHome], name: str = "geneva") -> NodeHome:
    """A relay registered with every node of ``homes`` (fingerprints checked both ways)."""
    relay = NodeHome.init(
        base / name, name=name, listen=f"127.0.0.1:{free_port()}", display_names={}, role="relay"
    )
    now = datetime.now(UTC)
    for home in homes.values():
        card = relay.card(now)
        home.add_peer(card, card.fingerprint, now)
        node_card = home.card(now)
        relay.add_peer(node_card, node_card.fingerprint, now)
    return relay


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    """washington and moscow, linked directly and through the relay geneva; not started."""
    homes = make_linked_homes(
        tmp_path,
        ["washington", "moscow"],
        retry_cap_s=1.0,
        heartbeat_interval_s=2.0,
        relays=["geneva"],
        relay_resend_s=3.0,
    )
    homes["geneva"] = make_relay(tmp_path, homes)
    processes = {name: NodeProcess(home, tmp_path) for name, home in homes.items()}
    try:
        yield processes
    finally:
        for process in processes.values():
            process.stop()
        for home in homes.values():
            home.close()

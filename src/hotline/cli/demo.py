"""``hotline demo``: two live nodes on localhost exchanging a FLASH message and its receipts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from hotline.cli import _demo_content as content
from hotline.cli._app import app, quoted
from hotline.cli.node import _wake_node as wake
from hotline.cli.release import send_released
from hotline.core.card import parse_card_file
from hotline.core.encoding import to_us
from hotline.deconfliction import OWN, Registry, parse_geojson
from hotline.errors import TransportError
from hotline.link import outbox
from hotline.node.home import NodeHome
from hotline.operators import OperatorRegistry, Role
from hotline.operators.release import ReleaseQueue
from hotline.referrals.cases import open_referral, prepare_referral
from hotline.store.messages import get_message

console = Console(highlight=False)

#: Password of the demo's operator accounts (demo only; real accounts choose their own).
DEMO_PASSWORD = "demo password 1963"  # noqa: S105
#: How long the demo waits for a node to start or a state to be reached.
STEP_TIMEOUT_S = 30.0


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise TransportError("no free port on 127.0.0.1")


def start_node(directory: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "hotline", "serve", "--dir", str(directory)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(endpoint: str, timeout: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{endpoint}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TransportError(f"node at {endpoint} did not start within {timeout:.0f}s")


class LocalApi:
    """The local operator API of one node, as the CLI and scripts use it."""

    def __init__(self, home: NodeHome) -> None:
        self.home = home
        self.client = httpx.Client(
            base_url=home.config.endpoint,
            headers={"authorization": f"Bearer {home.api_token}"},
            timeout=STEP_TIMEOUT_S + 5,
            trust_env=False,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code != 200:
            raise TransportError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()


def _link_nodes(base: Path, ports: dict[str, int]) -> dict[str, NodeHome]:
    names = {"washington": "Вашингтон", "moscow": "Москва"}
    homes = {
        name: NodeHome.init(
            base / name,
            name=name,
            listen=f"127.0.0.1:{ports[name]}",
            display_names={"en": name.capitalize(), "ru": ru},
            # Plain HTTP on loopback, so that a browser opens the consoles without a
            # certificate warning; real nodes serve TLS 1.3 with pinned certificates.
            tls=False,
        )
        for name, ru in names.items()
    }
    now = datetime.now(UTC)
    for name, home in homes.items():
        card_path = base / f"{name}.card.json"
        card_path.write_bytes(home.card(now).to_file_bytes())
    for name, home in homes.items():
        other = "moscow" if name == "washington" else "washington"
        card = parse_card_file((base / f"{other}.card.json").read_bytes())
        console.print(
            f"  {name}: card of {other} verifies; fingerprint read out: [bold]{card.fingerprint}[/]"
        )
        home.add_peer(card, card.fingerprint, now)
    return homes


def _demo_operators(homes: dict[str, NodeHome]) -> list[tuple[str, str, str, str]]:
    """Console accounts on both nodes: (node, name, role, TOTP secret)."""
    plan = {
        "washington": (
            ("smith", Role.OPERATOR),
            ("jones", Role.RELEASER),
            ("walker", Role.AUDITOR),
        ),
        "moscow": (("ivanov", Role.OPERATOR), ("petrov", Role.RELEASER)),
    }
    out = []
    for node, people in plan.items():
        registry = OperatorRegistry(homes[node].store, issuer=f"hotline {node}")
        for name, role in people:
            made = registry.add(name, role, DEMO_PASSWORD, now=datetime.now(UTC))
            out.append((node, name, role.value, made.totp_secret))
    return out


def _example_traffic(homes: dict[str, NodeHome]) -> None:
    """One message of each catalog type both ways, our own plan meeting moscow's notified
    activity (a conflict raised on arrival and drawn on the map), and a cyber referral."""
    now = datetime.now(UTC)
    washington, moscow = homes["washington"], homes["moscow"]
    Registry.open(washington.store_url, now_us=to_us(now)).add(
        parse_geojson(content.own_plan_geojson(now), owner=OWN), now_us=to_us(now)
    )
    to_moscow = [
        ("exercise_notification", "routine", content.exercise(now)),
        ("incident_report", "immediate", content.incident(now)),
        ("request_for_information", "priority", content.request_for_information()),
        (
            "free_text",
            "routine",
            {"text": "Прошу подтвердить получение тестового сообщения.", "lang": "ru"},
        ),
    ]
    send_drafts(washington, "moscow", to_moscow, now)
    send_drafts(
        moscow,
        "washington",
        [("activity_notification", "immediate", content.air_activity(now))],
        now,
    )
    body = prepare_referral(
        content.referral_bundle(now),
        narrative="Ransomware staging server hosted in your "
        "jurisdiction; encrypted a hospital network on 24 November.",
        actions=content.REFERRAL_ACTIONS,
        deadline=now + timedelta(hours=72),
        tlp=content.REFERRAL_TLP,
        now=now,
    )
    open_referral(
        washington.store,
        washington.identity,
        washington.peer_card("moscow"),
        body,
        now=now,
        ttl=timedelta(days=1),
    )
    for home in homes.values():
        wake(home)
    console.print(
        "  sent: exercise, incident, request for information, free text (ru), "
        "an air activity that meets our sortie box, a ransomware referral"
    )


def send_drafts(
    home: NodeHome, to: str, items: list[tuple[str, str, dict[str, Any]]], now: datetime
) -> None:
    outbox.submit_messages(
        home.store,
        home.identity,
        [
            outbox.Draft(
                peer=home.peer_card(to), msg_type=t, priority=p, body=b, ttl=timedelta(days=1)
            )
            for t, p, b in items
        ],
        now=now,
    )


def _flash_with_release(home: NodeHome, *, to: str, text: str) -> str:
    """The two-person rule as a duty officer meets it: smith writes, jones releases."""
    registry = OperatorRegistry(home.store, issuer=f"hotline {home.config.name}")
    now = datetime.now(UTC)
    queue = ReleaseQueue(home.store)
    request = queue.submit(
        registry.get_required("smith"),
        msg_type="free_text",
        priority="flash",
        recipients=[to],
        body={"text": text, "lang": "en"},
        in_reply_to=None,
        now=now,
    )
    console.print(f"  smith's FLASH is held for release ({request.id[:8]}…)")
    done = queue.approve(
        request.id,
        registry.get_required("jones"),
        now=datetime.now(UTC),
        send=lambda r: send_released(home, r),
    )
    console.print("  jones releases it: author and releaser are signed into the message")
    return done.message_ids[0]


def _watch(home: NodeHome, message_id: str, seen: set[str], started: float) -> None:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    if view is None:
        return
    for event in view.events:
        key = f"{event.state}:{event.at_us}"
        if key not in seen:
            seen.add(key)
            elapsed = (time.monotonic() - started) * 1000
            console.print(
                f"  [cyan]{elapsed:8.1f} ms[/]  washington sees {message_id[:8]}… "
                f"[bold]{event.state.upper()}[/] {quoted(event.detail)}"
            )


def _wait_state(
    home: NodeHome, message_id: str, state: str, seen: set[str], started: float
) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        _watch(home, message_id, seen, started)
        if any(s.startswith(state + ":") for s in seen):
            return
        time.sleep(0.02)
    raise TransportError(f"message {message_id} did not reach {state} in {STEP_TIMEOUT_S:.0f}s")


@app.command()
def demo(
    dir: Annotated[
        Path, typer.Option("--dir", help="Scratch folder for the two nodes (recreated).")
    ] = Path("demo-nodes"),
    exit_after: Annotated[
        bool, typer.Option(help="Stop the nodes after the exchange instead of waiting.")
    ] = False,
) -> None:
    """Start washington and moscow on localhost; exchange a FLASH message with receipts."""
    if dir.exists():
        if not (dir / ".hotline-demo").exists():
            raise typer.BadParameter(f"{dir} exists and is not a demo folder; choose another")
        shutil.rmtree(dir)
    dir.mkdir(parents=True)
    (dir / ".hotline-demo").write_text("made by hotline demo\n")
    ports = {"washington": free_port(8401), "moscow": free_port(8402)}

    console.rule("[bold]hotline demo")
    console.print("1. Creating two nodes, each with its own keys and store, and exchanging cards")
    homes = _link_nodes(dir, ports)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        console.print("2. Starting both nodes")
        for name, home in homes.items():
            processes[name] = start_node(home.dir, dir / f"{name}.log")
        for name, home in homes.items():
            wait_healthy(home.config.endpoint)
            console.print(f"  {name} is up at {home.config.endpoint}")
        moscow = LocalApi(homes["moscow"])
        accounts = _demo_operators(homes)

        console.print(
            "3. washington's duty officer writes a FLASH message; a second person releases it; "
            "moscow's duty officer answers"
        )
        started = time.monotonic()
        message_id = _flash_with_release(
            homes["washington"],
            to="moscow",
            text="FLASH. Unannounced launch detected at 03:12 UTC. Confirm it is your "
            "scheduled test.",
        )
        seen: set[str] = set()
        _wait_state(homes["washington"], message_id, "delivered", seen, started)

        got = moscow.call(
            "GET", f"/api/v1/messages/{message_id}", params={"wait": "delivered", "timeout": 10}
        )
        console.print(
            f"  moscow's inbox shows: [bold]{got['priority'].upper()}[/] {got['text']!r}",
            markup=True,
        )
        moscow.call("POST", f"/api/v1/messages/{message_id}/ack", json={"operator": "ivanov"})
        _wait_state(homes["washington"], message_id, "acknowledged", seen, started)
        answer = moscow.call(
            "POST",
            "/api/v1/messages",
            json={
                "to": "washington",
                "type": "response",
                "priority": "immediate",
                "in_reply_to": message_id,
                "body": {
                    "in_reply_to": message_id,
                    "text": "Confirmed: scheduled test launch, notified on 20 November.",
                    "action_taken": "Launch notification re-sent over the hotline.",
                },
            },
        )
        _wait_state(homes["washington"], message_id, "answered", seen, started)
        console.print(f"  moscow's answer {answer['id'][:8]}… is in washington's inbox")

        console.print("4. A message of every type, a conflict on the map, a cyber referral")
        _example_traffic(homes)

        console.rule("[bold green]the link works")
        for name, home in homes.items():
            console.print(f"  {name}: {home.config.endpoint}   logs: {dir / (name + '.log')}")
        console.print("\nTry the CLI against the running nodes, for example:")
        console.print(f"  export HOTLINE_DIR={homes['washington'].dir}")
        console.print("  .venv/bin/hotline outbox")
        console.print(f"  .venv/bin/hotline status {message_id}")
        console.print("  .venv/bin/hotline send --to moscow --priority immediate --text 'Hello'")
        console.print(f"  .venv/bin/hotline inbox --dir {homes['moscow'].dir}")
        console.print("  .venv/bin/hotline link")
        console.print(
            "\nThe duty officers' consoles (password for every demo account: "
            f"[bold]{DEMO_PASSWORD}[/]):"
        )
        for node, name, role, secret in accounts:
            console.print(
                f"  {homes[node].config.endpoint}/  {name} ({role})  TOTP secret {secret}",
                highlight=False,
            )
        console.print(
            '  A current code for an account: .venv/bin/python -c "import pyotp; '
            "print(pyotp.TOTP('SECRET').now())\"",
            highlight=False,
        )
        if exit_after:
            return
        console.print("\nThe nodes keep running. Ctrl-C stops them.")
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        console.print("[red]a node stopped; see its log[/]")
    except KeyboardInterrupt:
        console.print("\nstopping")
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

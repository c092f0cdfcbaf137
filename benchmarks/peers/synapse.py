"""Matrix Synapse as the peer for hotline's message-latency benchmark.

What is measured: one user (A) sends a text message into a room while both members hold a
``/sync`` long-poll open. Two latencies per message, from just before A's send request:

- **arrival**: until B's ``/sync`` returns the event (matched on a nonce at the start of the
  body);
- **receipt**: until A's ``/sync`` returns B's read receipt for it. B's client posts the
  receipt (``POST /rooms/{room}/receipt/m.read/{event}``) as soon as the event arrives, as a
  client that shows the message does. This is the like-for-like figure for hotline's, which
  runs from ``send`` to the DELIVERED receipt back at the sender.

Messages go one at a time.

Synapse runs from its own venv (``.bench/synapse-venv``, never the project's) on 127.0.0.1 only,
with a throw-away config and SQLite database in a temporary directory: one client listener, no
federation listener, no key servers, presence off and rate limits raised out of the way.

Run alone::

    .venv/bin/python benchmarks/peers/synapse.py --messages 200
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

if __package__ in (None, ""):  # run as a script: make ``benchmarks/`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _stats import print_table, summarize

__all__ = [
    "SYNAPSE_VERSION",
    "SynapseError",
    "SynapseServer",
    "SynapseUser",
    "ensure_synapse_venv",
    "measure_synapse",
    "timed_rounds",
]

# The version installed and measured; bump it deliberately and re-run the benchmark.
SYNAPSE_VERSION = "1.163.2"

# Default home of the Synapse venv: the repository's git-ignored ``.bench/`` folder.
DEFAULT_BENCH_DIR = Path(__file__).resolve().parents[2] / ".bench"

# A cold ``pip install matrix-synapse`` pulls ~60 wheels; bound it generously but finitely.
INSTALL_TIMEOUT_S = 900.0
# Config generation makes a signing key and imports Synapse: a few seconds on 2 busy cores.
GENERATE_TIMEOUT_S = 120.0
# First start creates and migrates the SQLite schema, ~10 s here; allow for a loaded machine.
STARTUP_TIMEOUT_S = 120.0
STARTUP_POLL_S = 0.25
# After SIGTERM, how long Synapse gets to shut down before SIGKILL.
STOP_GRACE_S = 10.0
# Every ordinary client request (register, login, send, ...) must finish within this.
REQUEST_TIMEOUT_S = 30.0
# The long-poll timeout B asks Synapse for, and the client-side read limit a little above it.
SYNC_LONGPOLL_MS = 30_000
SYNC_READ_TIMEOUT_S = SYNC_LONGPOLL_MS / 1000 + 15.0
# A message not seen by B within this is a failed run, not a slow sample.
DELIVERY_TIMEOUT_S = 15.0
# After B's next sync request has been issued, A waits this long before sending so that the
# request has reached Synapse and is parked: each sample then measures the long-poll wake-up.
SYNC_SETTLE_S = 0.020
# Messages sent and discarded before measuring (JIT-free Python, but caches, SQLite pages and
# connection pools warm up).
WARMUP_MESSAGES = 20
# Upper bounds on what a caller may ask for, so a typo cannot run for hours.
MAX_MESSAGES = 100_000
MAX_BODY_BYTES = 60_000  # Synapse rejects events above 64 KiB

# A rate limit that never triggers in a benchmark.
_UNLIMITED: dict[str, float] = {"per_second": 1_000_000, "burst_count": 1_000_000}

# Run with the Synapse venv's python (it has PyYAML): merge JSON settings into the YAML config.
_CONFIGURE_SCRIPT = """\
import json, sys, yaml
path, settings = sys.argv[1], json.loads(sys.argv[2])
with open(path, encoding="utf-8") as f:
    config = yaml.safe_load(f)
config.update(settings)
with open(path, "w", encoding="utf-8") as f:
    yaml.safe_dump(config, f, sort_keys=False)
"""


class SynapseError(RuntimeError):
    """Installing, starting, or talking to the Synapse peer failed."""


# --- installation ---------------------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_synapse_venv(base: Path) -> Path:
    """Return ``base/synapse-venv`` with matrix-synapse ``SYNAPSE_VERSION`` installed in it.

    Creates the venv and installs on first use; afterwards a stamp file makes this a file read.
    """
    venv = base / "synapse-venv"
    stamp = venv / ".hotline-synapse-version"
    python = _venv_python(venv)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == SYNAPSE_VERSION:
        return venv
    base.mkdir(parents=True, exist_ok=True)
    try:
        if not python.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                check=True,
                timeout=GENERATE_TIMEOUT_S,
            )
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"matrix-synapse=={SYNAPSE_VERSION}",
            ],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise SynapseError(f"could not install matrix-synapse {SYNAPSE_VERSION} in {venv}") from e
    stamp.write_text(SYNAPSE_VERSION + "\n")
    return venv


# --- server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(slots=True, frozen=True)
class SynapseUser:
    """A logged-in local user."""

    user_id: str
    access_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != httpx.codes.OK:
        raise SynapseError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


class SynapseServer:
    """A throw-away Synapse on 127.0.0.1 with two users, A and B, joined to one room.

    Use as a context manager; leaving it stops the server and deletes its directory, also on
    error or Ctrl-C.
    """

    def __init__(self, venv: Path, *, port: int | None = None) -> None:
        self.venv = venv
        self.port = port if port is not None else _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(32)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.user_a: SynapseUser | None = None
        self.user_b: SynapseUser | None = None
        self.room_id: str | None = None
        self.version: str = "unknown"

    # context manager

    def __enter__(self) -> SynapseServer:
        try:
            self.start()
            self._set_up_room()
        except httpx.HTTPError as e:
            self.stop()
            raise SynapseError(f"talking to Synapse during setup failed: {e!r}") from e
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def directory(self) -> Path:
        if self._tmp is None:
            raise SynapseError("server not started")
        return Path(self._tmp.name)

    # lifecycle

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="hotline-synapse-")
        self._write_config()
        python = str(_venv_python(self.venv))
        self._log = (self.directory / "stdout.log").open("wb")
        self._proc = subprocess.Popen(
            [python, "-m", "synapse.app.homeserver", "--config-path", "homeserver.yaml"],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches any children
        )
        self._wait_ready()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_GRACE_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of Synapse's own log and its stdout, for error messages."""
        out = []
        for name in ("homeserver.log", "stdout.log"):
            path = self.directory / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def _write_config(self) -> None:
        python = str(_venv_python(self.venv))
        directory = self.directory
        try:
            subprocess.run(
                [
                    python,
                    "-m",
                    "synapse.app.homeserver",
                    "--server-name",
                    "localhost",
                    "--config-path",
                    "homeserver.yaml",
                    "--data-directory",
                    str(directory),
                    "--generate-config",
                    "--report-stats=no",
                ],
                cwd=directory,
                check=True,
                capture_output=True,
                timeout=GENERATE_TIMEOUT_S,
            )
            subprocess.run(
                [python, "-c", _CONFIGURE_SCRIPT, "homeserver.yaml", json.dumps(self._settings())],
                cwd=directory,
                check=True,
                capture_output=True,
                timeout=GENERATE_TIMEOUT_S,
            )
        except subprocess.CalledProcessError as e:
            detail = e.stderr.decode(errors="replace")[-2000:]
            raise SynapseError(f"generating Synapse config failed:\n{detail}") from e
        except (subprocess.TimeoutExpired, OSError) as e:
            raise SynapseError("generating Synapse config failed") from e

    def _settings(self) -> dict[str, Any]:
        """What we change in the generated config (everything else stays Synapse's default)."""
        return {
            # One plain-HTTP client listener on loopback; no federation or other resources.
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.directory / "homeserver.db")},
            },
            "registration_shared_secret": self.shared_secret,
            "report_stats": False,
            "enable_metrics": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],  # refuse federation with anyone
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "rc_message": _UNLIMITED,
            "rc_registration": _UNLIMITED,
            "rc_login": {
                "address": _UNLIMITED,
                "account": _UNLIMITED,
                "failed_attempts": _UNLIMITED,
            },
            "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
            "rc_joins_per_room": _UNLIMITED,
            "rc_invites": {
                "per_room": _UNLIMITED,
                "per_user": _UNLIMITED,
                "per_issuer": _UNLIMITED,
            },
            "rc_admin_redaction": _UNLIMITED,
            "rc_3pid_validation": _UNLIMITED,
            "rc_room_creation": _UNLIMITED,
            "rc_registration_token_validity": _UNLIMITED,
            "rc_presence": {"per_user": _UNLIMITED},
            "rc_delayed_event_mgmt": _UNLIMITED,
            "rc_profile": _UNLIMITED,
        }

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = f"{self.base_url}/_matrix/client/versions"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise SynapseError(f"Synapse exited during startup\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url).status_code == httpx.codes.OK:
                        return
                time.sleep(STARTUP_POLL_S)
        raise SynapseError(f"Synapse not ready after {STARTUP_TIMEOUT_S:.0f} s\n{self.log_tail()}")

    # users and room

    def _register(self, client: httpx.Client, name: str, password: str, admin: bool) -> None:
        """Register through the shared-secret admin API (nonce, then HMAC-SHA1 of the fields)."""
        url = f"{self.base_url}/_synapse/admin/v1/register"
        nonce = _check(client.get(url), "get registration nonce")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    name.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        body = {
            "nonce": nonce,
            "username": name,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        _check(client.post(url, json=body), f"register {name}")

    def _login(self, client: httpx.Client, name: str, password: str) -> SynapseUser:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": name},
            "password": password,
            "initial_device_display_name": "hotline-bench",
        }
        reply = _check(
            client.post(f"{self.base_url}/_matrix/client/v3/login", json=body), f"login {name}"
        )
        return SynapseUser(user_id=reply["user_id"], access_token=reply["access_token"])

    def _set_up_room(self) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            users: list[SynapseUser] = []
            for name, admin in (("alice", True), ("bob", False)):
                password = secrets.token_urlsafe(24)
                self._register(client, name, password, admin)
                users.append(self._login(client, name, password))
            a, b = users
            room = _check(
                client.post(
                    f"{self.base_url}/_matrix/client/v3/createRoom",
                    headers=a.headers,
                    json={"preset": "private_chat", "invite": [b.user_id], "name": "bench"},
                ),
                "create room",
            )
            room_id: str = room["room_id"]
            _check(
                client.post(
                    f"{self.base_url}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/join",
                    headers=b.headers,
                    json={},
                ),
                "join room",
            )
            version = client.get(
                f"{self.base_url}/_synapse/admin/v1/server_version", headers=a.headers
            )
            if version.status_code == httpx.codes.OK:
                # Synapse appends `git describe` output of whatever repository its package
                # directory sits in; under .bench/ that is hotline's own, so keep the number only.
                reported = str(version.json().get("server_version", "unknown"))
                self.version = reported.split(" ", 1)[0]
        self.user_a, self.user_b, self.room_id = a, b, room_id


# --- measurement ----------------------------------------------------------------------------


def _sync_filter(room_id: str, *, timeline: list[str], ephemeral: list[str]) -> str:
    """Only this room: the timeline and ephemeral event types asked for, nothing else."""
    return json.dumps(
        {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": [room_id],
                "timeline": {"limit": 50, "types": timeline},
                "state": {"lazy_load_members": True},
                "ephemeral": {"types": ephemeral},
                "account_data": {"types": []},
            },
        },
        separators=(",", ":"),
    )


def _arrived_messages(room: dict[str, Any]) -> list[tuple[str, str]]:
    """(nonce, event id) of each text message in a room's sync timeline."""
    found = []
    for event in room.get("timeline", {}).get("events", []):
        body = event.get("content", {}).get("body")
        if isinstance(body, str):
            found.append((body.split(" ", 1)[0], str(event.get("event_id", ""))))
    return found


class _LongPoll:
    """One user's ``/sync`` long-poll loop on a thread; records when each key first arrives.

    ``extract`` reads the keys a sync reply brings (and a detail kept with each); ``on_arrival``
    runs on the loop's thread for each new key, before the next poll (the user's client acting
    on what it received)."""

    def __init__(
        self,
        server: SynapseServer,
        user: SynapseUser,
        sync_filter: str,
        extract: Callable[[dict[str, Any]], list[tuple[str, str]]],
        max_polls: int,
        on_arrival: Callable[[httpx.Client, str, str], None] | None = None,
    ) -> None:
        if server.room_id is None:
            raise SynapseError("server has no room set up")
        self._url = f"{server.base_url}/_matrix/client/v3/sync"
        self._headers = user.headers
        self._room_id = server.room_id
        self._filter = sync_filter
        self._extract = extract
        self._on_arrival = on_arrival
        self._max_polls = max_polls
        self._client = httpx.Client(
            timeout=httpx.Timeout(REQUEST_TIMEOUT_S, read=SYNC_READ_TIMEOUT_S)
        )
        self._cond = threading.Condition()
        self._arrivals: dict[str, tuple[float, int, str]] = {}
        self._polls_started = 0
        self._stop_key: str | None = None
        self._stop_next = False
        self._error: BaseException | None = None
        try:
            self._since = self._poll(timeout_ms=0, initial=True)
        except BaseException:
            self._client.close()
            raise
        self._thread = threading.Thread(target=self._run, name="synapse-sync", daemon=True)

    def _poll(self, timeout_ms: int, since: str | None = None, *, initial: bool = False) -> str:
        params = {"filter": self._filter, "timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        reply = _check(self._client.get(self._url, params=params, headers=self._headers), "sync")
        now = time.perf_counter()
        room = reply.get("rooms", {}).get("join", {}).get(self._room_id, {})
        new: list[tuple[str, str]] = []
        with self._cond:
            for key, detail in self._extract(room):
                if key not in self._arrivals:
                    self._arrivals[key] = (now, self._polls_started, detail)
                    new.append((key, detail))
            self._cond.notify_all()
        if self._on_arrival is not None and not initial:
            for key, detail in new:
                self._on_arrival(self._client, key, detail)
        next_batch: str = reply["next_batch"]
        return next_batch

    def _done(self) -> bool:
        return self._stop_next or (self._stop_key is not None and self._stop_key in self._arrivals)

    def _run(self) -> None:
        try:
            since = self._since
            for _ in range(self._max_polls):
                with self._cond:
                    if self._done():
                        return
                    self._polls_started += 1
                    self._cond.notify_all()
                since = self._poll(SYNC_LONGPOLL_MS, since)
        except BaseException as e:  # reported to the sending thread
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def start(self) -> None:
        self._thread.start()

    def wait_for_poll(self, after: int, timeout: float) -> None:
        """Wait until the user has issued a sync request beyond the ``after``-th one."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._polls_started > after or self._error is not None, timeout
            )
            self._raise_if_failed()
            if not ok:
                raise SynapseError("a sync loop stalled")

    def wait_for(self, key: str, timeout: float) -> tuple[float, int]:
        """Block until ``key`` has arrived; return its perf_counter arrival time and the number
        of the poll that brought it."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: key in self._arrivals or self._error is not None, timeout
            )
            self._raise_if_failed()
            if not ok:
                raise SynapseError(f"{key} not seen within {timeout:.0f} s")
            arrived, poll, _detail = self._arrivals[key]
            return arrived, poll

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise SynapseError("a sync loop failed") from self._error

    def stop(self, key: str | None = None) -> None:
        """End the loop once ``key`` has arrived (None: once the poll in progress returns)."""
        with self._cond:
            self._stop_key = key
            self._stop_next = key is None

    def close(self) -> None:
        self._thread.join(timeout=SYNC_READ_TIMEOUT_S if self._done() else 0.5)
        self._client.close()


class _Room:
    """B reading the room (and sending a read receipt for each message as it arrives, as a
    client that shows it does) and A watching for B's receipts."""

    def __init__(self, server: SynapseServer, max_polls: int) -> None:
        if server.user_a is None or server.user_b is None or server.room_id is None:
            raise SynapseError("server has no room set up")
        room = quote(server.room_id, safe="")
        receipt_url = f"{server.base_url}/_matrix/client/v3/rooms/{room}/receipt/m.read/"
        reader = server.user_b

        def send_receipt(client: httpx.Client, _nonce: str, event_id: str) -> None:
            url = receipt_url + quote(event_id, safe="")
            _check(client.post(url, headers=reader.headers, json={}), "read receipt")

        def receipts_by_b(room_data: dict[str, Any]) -> list[tuple[str, str]]:
            found = []
            for event in room_data.get("ephemeral", {}).get("events", []):
                if event.get("type") != "m.receipt":
                    continue
                for event_id, kinds in event.get("content", {}).items():
                    if reader.user_id in kinds.get("m.read", {}):
                        found.append((str(event_id), ""))
            return found

        self.b = _LongPoll(
            server,
            server.user_b,
            _sync_filter(server.room_id, timeline=["m.room.message"], ephemeral=[]),
            _arrived_messages,
            max_polls,
            on_arrival=send_receipt,
        )
        try:
            self.a = _LongPoll(
                server,
                server.user_a,
                _sync_filter(
                    server.room_id, timeline=["org.hotline.none"], ephemeral=["m.receipt"]
                ),
                receipts_by_b,
                max_polls,
            )
        except BaseException:
            self.b.close()
            raise
        #: The polls that brought the last message to B and its receipt to A.
        self.last_b = 0
        self.last_a = 0

    def start(self) -> None:
        self.b.start()
        self.a.start()

    def close(self) -> None:
        self.b.close()
        self.a.close()


@contextlib.contextmanager
def _listening(server: SynapseServer, max_polls: int) -> Iterator[_Room]:
    room = _Room(server, max_polls)
    try:
        room.start()
        yield room
    finally:
        room.close()


@dataclass(slots=True)
class _Samples:
    arrival: list[float]  # send -> the message in B's sync
    receipt: list[float]  # send -> B's read receipt in A's sync


def _send_and_time(
    server: SynapseServer,
    sender: httpx.Client,
    room: _Room,
    run: str,
    count: int,
    size: int,
    first_index: int,
    samples: _Samples,
) -> None:
    """Send ``count`` messages one at a time, each once both long-polls are open."""
    if server.user_a is None or server.room_id is None:
        raise SynapseError("server has no room set up")
    room_path = quote(server.room_id, safe="")
    headers = server.user_a.headers
    for i in range(first_index, first_index + count):
        nonce = f"{run}-{i:06d}"
        body = (nonce + " ").ljust(size, "x")
        # Let both users' next long-polls reach Synapse before sending, so each sync is open.
        room.b.wait_for_poll(after=room.last_b, timeout=DELIVERY_TIMEOUT_S)
        room.a.wait_for_poll(after=room.last_a, timeout=DELIVERY_TIMEOUT_S)
        time.sleep(SYNC_SETTLE_S)
        url = f"{server.base_url}/_matrix/client/v3/rooms/{room_path}/send/m.room.message/{nonce}"
        started = time.perf_counter()
        sent = _check(
            sender.put(url, headers=headers, json={"msgtype": "m.text", "body": body}), "send"
        )
        arrived, room.last_b = room.b.wait_for(nonce, DELIVERY_TIMEOUT_S)
        receipted, room.last_a = room.a.wait_for(str(sent["event_id"]), DELIVERY_TIMEOUT_S)
        samples.arrival.append(arrived - started)
        samples.receipt.append(receipted - started)


class Rounds:
    """A room kept open for several rounds of timed messages: ``send(count)`` times ``count``
    more, one at a time. benchmarks/link.py runs hotline's rounds between these, so that both
    systems are timed under the same machine load."""

    def __init__(
        self,
        server: SynapseServer,
        room: _Room,
        sender: httpx.Client,
        run: str,
        size: int,
        first_index: int,
    ) -> None:
        self._server = server
        self._room = room
        self._sender = sender
        self._run = run
        self._size = size
        self._next = first_index
        self.samples = _Samples([], [])

    def send(self, count: int) -> None:
        try:
            _send_and_time(
                self._server,
                self._sender,
                self._room,
                self._run,
                count,
                self._size,
                self._next,
                self.samples,
            )
        except httpx.HTTPError as e:
            raise SynapseError(f"talking to Synapse failed: {e!r}") from e
        self._next += count


@contextlib.contextmanager
def timed_rounds(
    server: SynapseServer, messages: int, size: int = 1024, warmup: int = WARMUP_MESSAGES
) -> Iterator[Rounds]:
    """Warm up, then yield ``Rounds`` for at most ``messages`` timed sends in all; on leaving,
    one last message wakes both open long-polls so that their threads end promptly."""
    if not 1 <= messages <= MAX_MESSAGES:
        raise ValueError(f"messages must be within 1..{MAX_MESSAGES}, got {messages}")
    if not 32 <= size <= MAX_BODY_BYTES:
        raise ValueError(f"size must be within 32..{MAX_BODY_BYTES} bytes, got {size}")
    run = secrets.token_hex(4)
    total = warmup + messages + 1
    with (
        _listening(server, max_polls=4 * total + 100) as room,
        httpx.Client(timeout=REQUEST_TIMEOUT_S) as sender,
    ):
        Rounds(server, room, sender, run, size, 0).send(warmup)
        rounds = Rounds(server, room, sender, run, size, warmup)
        yield rounds
        last = Rounds(server, room, sender, run, size, total - 1)
        room.b.stop(f"{run}-{total - 1:06d}")
        room.a.stop()
        last.send(1)


def run_against(
    server: SynapseServer, messages: int, size: int, warmup: int = WARMUP_MESSAGES
) -> _Samples:
    """Warm up, then time ``messages`` sends from A to B; return latencies in seconds."""
    with timed_rounds(server, messages, size, warmup) as rounds:
        rounds.send(messages)
    return rounds.samples


def measure_synapse(
    messages: int = 200,
    size: int = 1024,
    *,
    base: Path | None = None,
    warmup: int = WARMUP_MESSAGES,
) -> dict[str, Any]:
    """Install (once), start Synapse, and measure A-to-B message latency through ``/sync``:
    to the message's arrival at B, and to B's read receipt arriving back at A (what hotline's
    figure is: send to the DELIVERED receipt back at the sender).

    Returns ``{"p50_ms", "p99_ms", "receipt_p50_ms", "receipt_p99_ms", "n", "synapse_version"}``
    (the first two: arrival at B).
    """
    venv = ensure_synapse_venv(base if base is not None else DEFAULT_BENCH_DIR)
    with SynapseServer(venv) as server:
        samples = run_against(server, messages, size, warmup)
        version = server.version
    arrival, receipt = summarize(samples.arrival), summarize(samples.receipt)
    return {
        "p50_ms": arrival.p50_ms,
        "p99_ms": arrival.p99_ms,
        "receipt_p50_ms": receipt.p50_ms,
        "receipt_p99_ms": receipt.p99_ms,
        "n": arrival.n,
        "synapse_version": version,
    }


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200, help="timed messages (default 200)")
    parser.add_argument("--size", type=int, default=1024, help="body bytes (default 1024)")
    parser.add_argument("--warmup", type=int, default=WARMUP_MESSAGES, help="untimed messages")
    parser.add_argument(
        "--bench-dir", type=Path, default=DEFAULT_BENCH_DIR, help="where synapse-venv lives"
    )
    args = parser.parse_args(argv)
    # SIGTERM takes the same path as Ctrl-C, so Synapse is stopped either way.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    started = time.monotonic()
    try:
        venv = ensure_synapse_venv(args.bench_dir)
        installed = time.monotonic()
        with SynapseServer(venv) as server:
            ready = time.monotonic()
            samples = run_against(server, args.messages, args.size, args.warmup)
            version = server.version
    except SynapseError as e:
        print(f"synapse benchmark failed: {e}", file=sys.stderr)
        if e.__cause__ is not None:
            print(f"  caused by: {e.__cause__!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; Synapse stopped", file=sys.stderr)
        return 130
    print(
        f"Synapse {version}: {args.size}-byte messages A -> B via /sync long-poll "
        f"({args.warmup} warm-up; venv {installed - started:.1f} s, "
        f"server ready {ready - installed:.1f} s)"
    )
    rows = []
    for what, values in (("arrival at B", samples.arrival), ("receipt at A", samples.receipt)):
        s = summarize(values)
        rows.append([what, s.n, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms])
    print_table(["send ->", "n", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A node's directory: config file, private key files, API token, store and peers.

Layout of ``DIR``::

    node.toml          name, listen address, endpoint, display names, timings
    keys/signing.key   Ed25519 seed (32) || ML-DSA-65 seed (32)         mode 0600
    keys/encryption.key ML-KEM-768 seed (64) || X25519 private key (32)  mode 0600
    keys/previous/KEYID.encryption.key  decryption keys of earlier generations (rotation)
    keys/tls.key       TLS key (ECDSA P-256, PKCS#8 PEM, encrypted under the passphrase) 0600
    tls.crt            the self-signed TLS certificate its card carries (PEM)
    api.token          bearer token of the local API (CLI -> running node)  mode 0600
    store.sqlite       the store (unless ``store_url`` names another)
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import secrets
import ssl
import sys
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from hotline.core.card import Card, Identity, check_name, make_card, parse_card_statement
from hotline.core.encoding import to_us
from hotline.core.keyevents import KeyState
from hotline.core.keys import DecryptionKey, SigningKey
from hotline.errors import ConfigError, ErrorCode, InputError, NotFoundError, VerificationError
from hotline.link import keyring
from hotline.link.deadlines import default_deadlines
from hotline.link.tls import (
    cert_pem,
    key_pem,
    make_certificate,
    make_tls_key,
    pinned_client_context,
    server_context,
)
from hotline.node.keyfile import is_encrypted, open_key, seal_key
from hotline.store import Store
from hotline.store.db import sqlite_url
from hotline.store.schema import peers

log = logging.getLogger(__name__)

CONFIG_FILE = "node.toml"
SIGNING_KEY_FILE = "keys/signing.key"
ENCRYPTION_KEY_FILE = "keys/encryption.key"
#: Decryption keys of earlier generations: envelopes peers sealed before they learnt of a
#: rotation still open. Old signing keys are not kept (nothing needs them once rotated out).
PREVIOUS_KEYS_DIR = "keys/previous"
#: A rotation writes the new keys beside the current ones first; they replace them once the
#: store has committed the rotation (and at the next start if the node stopped in between).
NEXT_SUFFIX = ".next"
TLS_KEY_FILE = "keys/tls.key"
TLS_CERT_FILE = "tls.crt"
API_TOKEN_FILE = "api.token"  # noqa: S105 (a file name, not a secret)
STORE_FILE = "store.sqlite"
MAX_CONFIG_BYTES = 64 * 1024
DEFAULT_HEARTBEAT_INTERVAL_S = 60.0
#: Environment variable that may hold the key files' passphrase (for services and scripts).
PASSPHRASE_ENV = "HOTLINE_PASSPHRASE"  # noqa: S105 (a variable's name, not a secret)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8400
    endpoint: str = ""
    display_names: dict[str, str] = field(default_factory=dict)
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    #: Retry back-off cap: a peer that comes back is reached within this long.
    retry_cap_s: float = 60.0
    #: How long an undelivered message keeps being retried before it expires.
    default_ttl_s: float = 24 * 3600.0
    store_url: str = ""
    role: str = "node"
    #: Seconds a person on the other side has to acknowledge, by priority.
    ack_deadlines_s: dict[str, float] = field(default_factory=default_deadlines)
    #: How often an unacknowledged message past its deadline is escalated again.
    escalation_interval_s: float = 60.0
    #: Deadlines agreed with particular peers, by priority (override ``ack_deadlines_s``).
    peer_ack_deadlines_s: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Further URLs peers may use when ``endpoint`` fails (another network path), in order.
    alternate_endpoints: list[str] = field(default_factory=list)
    #: Clock difference to a peer tolerated before an alarm (deadlines use our own clock).
    max_clock_skew_s: float = 30.0
    #: How long our log may grow past what a witness last cosigned before it counts as stale:
    #: an alarm, and ``stale`` in ``hotline transcript``.
    witness_stale_s: float = 120.0
    #: Longest one request (line, headers and body) may take to arrive before its connection is
    #: closed: slow-loris clients and bodies that never end (hotline.node.limits).
    request_timeout_s: float = 30.0
    #: Requests per second each source address may make to the link endpoints, and the burst.
    rate_limit_per_s: float = 200.0
    rate_limit_burst: float = 400.0
    #: Requests per second each peer (the sender named in a routing header, charged once the
    #: request proved authentic) may make to the link endpoints, whatever its addresses.
    peer_rate_limit_per_s: float = 200.0
    peer_rate_limit_burst: float = 400.0
    #: Requests per second each source address may make to the operator API (``/api/v1``),
    #: the console and TAXII, and the burst (the benchmark drives ``/api/v1`` at ~600/s).
    api_rate_limit_per_s: float = 2000.0
    api_rate_limit_burst: float = 4000.0
    #: Named groups of peers for notifications to many ("all" is every peer node).
    groups: dict[str, list[str]] = field(default_factory=dict)
    #: Serve TLS 1.3 with the certificate in ``tls.crt`` (its card carries it for pinning).
    #: False only for nodes made with ``--unsafe-plain-http`` (loopback tests and demos).
    tls: bool = False
    #: Relays (peers with role ``relay``) this node uses, in order: after the peer's direct
    #: endpoints, envelopes go through the first relay that works; mail is pulled from each.
    relays: list[str] = field(default_factory=list)
    #: An envelope handed to a relay is handed again after this long without its receipt.
    relay_resend_s: float = 30.0
    #: On a relay: how long an envelope is held for its recipient, and how much per recipient.
    relay_hold_s: float = 7 * 24 * 3600.0
    relay_max_envelopes: int = 10_000
    relay_max_bytes: int = 256 * 1024 * 1024

    def deadlines_for(self, peer: str) -> dict[str, float]:
        return {**self.ack_deadlines_s, **self.peer_ack_deadlines_s.get(peer, {})}

    def to_toml(self) -> str:
        q = _toml_string

        lines = [
            f"name = {q(self.name)}",
            f"role = {q(self.role)}",
            f"listen = {q(f'{self.listen_host}:{self.listen_port}')}",
            f"endpoint = {q(self.endpoint)}",
            f"heartbeat_interval_s = {self.heartbeat_interval_s}",
            f"retry_cap_s = {self.retry_cap_s}",
            f"default_ttl_s = {self.default_ttl_s}",
            f"store_url = {q(self.store_url)}",
            f"escalation_interval_s = {self.escalation_interval_s}",
            f"max_clock_skew_s = {self.max_clock_skew_s}",
            f"witness_stale_s = {self.witness_stale_s}",
            f"alternate_endpoints = [{', '.join(q(e) for e in self.alternate_endpoints)}]",
            f"request_timeout_s = {self.request_timeout_s}",
            f"rate_limit_per_s = {self.rate_limit_per_s}",
            f"rate_limit_burst = {self.rate_limit_burst}",
            f"peer_rate_limit_per_s = {self.peer_rate_limit_per_s}",
            f"peer_rate_limit_burst = {self.peer_rate_limit_burst}",
            f"api_rate_limit_per_s = {self.api_rate_limit_per_s}",
            f"api_rate_limit_burst = {self.api_rate_limit_burst}",
            f"tls = {'true' if self.tls else 'false'}",
            f"relays = [{', '.join(q(r) for r in self.relays)}]",
            f"relay_resend_s = {self.relay_resend_s}",
            f"relay_hold_s = {self.relay_hold_s}",
            f"relay_max_envelopes = {self.relay_max_envelopes}",
            f"relay_max_bytes = {self.relay_max_bytes}",
            "",
            "[display_names]",
        ]
        # Keys are quoted too: a display-name language or a group name may hold any character.
        lines += [f"{q(k)} = {q(v)}" for k, v in sorted(self.display_names.items())]
        lines += ["", "[ack_deadlines_s]"]
        lines += [f"{q(k)} = {float(v)}" for k, v in sorted(self.ack_deadlines_s.items())]
        for peer, table in sorted(self.peer_ack_deadlines_s.items()):
            lines += ["", f"[peer_ack_deadlines_s.{peer}]"]
            lines += [f"{q(k)} = {float(v)}" for k, v in sorted(table.items())]
        if self.groups:
            lines += ["", "[groups]"]
            lines += [
                f"{q(name)} = [{', '.join(q(p) for p in members)}]"
                for name, members in sorted(self.groups.items())
            ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeConfig:
        """The settings in the bytes of a node.toml file (UTF-8, at most MAX_CONFIG_BYTES)."""
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{CONFIG_FILE}: not UTF-8 text (byte {e.start})") from e
        return cls.from_toml(text)

    @classmethod
    def from_toml(cls, text: str) -> NodeConfig:
        try:
            raw: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{CONFIG_FILE}: {e}") from e
        known = {
            "name",
            "role",
            "listen",
            "endpoint",
            "heartbeat_interval_s",
            "retry_cap_s",
            "default_ttl_s",
            "store_url",
            "display_names",
            "ack_deadlines_s",
            "escalation_interval_s",
            "peer_ack_deadlines_s",
            "groups",
            "rate_limit_per_s",
            "rate_limit_burst",
            "peer_rate_limit_per_s",
            "peer_rate_limit_burst",
            "api_rate_limit_per_s",
            "api_rate_limit_burst",
            "request_timeout_s",
            "max_clock_skew_s",
            "witness_stale_s",
            "alternate_endpoints",
            "tls",
            "relays",
            "relay_hold_s",
            "relay_resend_s",
            "relay_max_envelopes",
            "relay_max_bytes",
        }
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{CONFIG_FILE}: unknown settings {sorted(unknown)}")
        try:
            host, port = parse_listen(str(raw.get("listen", "127.0.0.1:8400")))
            role = str(raw.get("role", "node"))
            if role not in ROLES:
                raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
            deadlines = _table(raw, "ack_deadlines_s")
            peer_tables = _table(raw, "peer_ack_deadlines_s")
            groups = _table(raw, "groups")
            burst = _seconds(raw, "rate_limit_burst", 400.0)
            peer_burst = _seconds(raw, "peer_rate_limit_burst", 400.0)
            api_burst = _seconds(raw, "api_rate_limit_burst", 4000.0)
            for key, value in (
                ("rate_limit_burst", burst),
                ("peer_rate_limit_burst", peer_burst),
                ("api_rate_limit_burst", api_burst),
            ):
                if value < 1:
                    raise ValueError(f"{key} must be at least 1, got {value:g}")
            return cls(
                name=check_name(str(raw["name"])),
                role=role,
                listen_host=host,
                listen_port=port,
                endpoint=str(raw.get("endpoint", "")),
                display_names={str(k): str(v) for k, v in _table(raw, "display_names").items()},
                heartbeat_interval_s=_seconds(raw, "heartbeat_interval_s", 60.0),
                retry_cap_s=_seconds(raw, "retry_cap_s", 60.0),
                default_ttl_s=_seconds(raw, "default_ttl_s", 24 * 3600.0),
                store_url=str(raw.get("store_url", "")),
                ack_deadlines_s={
                    **default_deadlines(),
                    **{str(k): _seconds(deadlines, k) for k in deadlines},
                },
                escalation_interval_s=_seconds(raw, "escalation_interval_s", 60.0),
                max_clock_skew_s=_seconds(raw, "max_clock_skew_s", 30.0),
                witness_stale_s=_seconds(raw, "witness_stale_s", 120.0),
                alternate_endpoints=[str(e) for e in _list(raw, "alternate_endpoints")],
                request_timeout_s=_seconds(raw, "request_timeout_s", 30.0),
                rate_limit_per_s=_seconds(raw, "rate_limit_per_s", 200.0),
                rate_limit_burst=burst,
                peer_rate_limit_per_s=_seconds(raw, "peer_rate_limit_per_s", 200.0),
                peer_rate_limit_burst=peer_burst,
                api_rate_limit_per_s=_seconds(raw, "api_rate_limit_per_s", 2000.0),
                api_rate_limit_burst=api_burst,
                tls=_boolean(raw.get("tls", False), "tls"),
                relays=[check_name(str(r)) for r in _list(raw, "relays")],
                relay_resend_s=_seconds(raw, "relay_resend_s", 30.0),
                relay_hold_s=_seconds(raw, "relay_hold_s", 7 * 24 * 3600.0),
                relay_max_envelopes=int(_seconds(raw, "relay_max_envelopes", 10_000)),
                relay_max_bytes=int(_seconds(raw, "relay_max_bytes", 256 * 1024 * 1024)),
                peer_ack_deadlines_s={
                    check_name(str(peer)): {
                        str(k): _seconds(_table(peer_tables, peer), k)
                        for k in _table(peer_tables, peer)
                    }
                    for peer in peer_tables
                },
                groups={
                    str(name): [check_name(str(p)) for p in _list(groups, name)] for name in groups
                },
            )
        except (KeyError, TypeError, ValueError, InputError) as e:
            raise ConfigError(f"{CONFIG_FILE}: {e}") from e


ROLES = ("node", "witness", "relay")


def _toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be a table, got {type(value).__name__}")
    return value


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list, got {type(value).__name__}")
    return value


def _seconds(raw: dict[str, Any], key: str, default: float | None = None) -> float:
    """A positive, finite number (durations and rates): NaN, infinities, 0 and less refused."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key} must be a number, got {type(value).__name__}")
    number = float(value)
    if not 0 < number < 1e12:
        raise ValueError(f"{key} must be a positive number below 10^12, got {value!r}")
    return number


def _boolean(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be true or false, not {value!r}")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"listen address must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port_text)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (a file added or removed) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_private(path: Path, size: int, passphrase: str | None = None) -> bytes:
    """A private file's bytes: refused if others can read it; decrypted when encrypted."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(f"key file missing: {path}") from e
    if mode & 0o077:
        raise ConfigError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
    if is_encrypted(data):
        if not passphrase:
            raise ConfigError(
                f"{path} is encrypted: give the passphrase (HOTLINE_PASSPHRASE, "
                "--passphrase-stdin, or the prompt)"
            )
        data = open_key(data, passphrase)
    if len(data) != size:
        raise ConfigError(f"key file {path} has {len(data)} bytes, expected {size}")
    return data


class NodeHome:
    """Everything a node keeps in its directory. Opening reads config and keys, nothing else."""

    def __init__(self, directory: Path, *, passphrase: str | None = None) -> None:
        self.dir = directory
        # The passphrase of encrypted key files: given, or HOTLINE_PASSPHRASE, or asked for on a
        # terminal when the keys are first needed.
        self._passphrase = passphrase or os.environ.get(PASSPHRASE_ENV)
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"no hotline node in {directory} (missing {CONFIG_FILE}); run init")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
        self.config = NodeConfig.from_bytes(path.read_bytes())
        self._identity: Identity | None = None
        self._store: Store | None = None

    # -- creation --------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        name: str,
        listen: str,
        display_names: dict[str, str],
        role: str = "node",
        passphrase: str | None = None,
        store_url: str = "",
        tls: bool = True,
    ) -> NodeHome:
        """Create a node directory. Without ``passphrase`` the key files are stored in the clear
        (``--no-passphrase``: tests and demos); a node says so in its log at every start.
        ``store_url`` names the store (a PostgreSQL database, docs/operations.md); by default it
        is ``store.sqlite`` in the directory.

        With ``tls`` (the default) the node gets a TLS key and self-signed certificate, serves
        ``https://`` and its card carries the certificate for peers to pin; without it, plain
        HTTP (``--unsafe-plain-http``: loopback tests and demos)."""
        check_name(name)
        host, port = parse_listen(listen)
        if (directory / CONFIG_FILE).exists():
            raise InputError(f"{directory} already holds a node; refusing to overwrite its keys")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        signing = SigningKey.generate()
        decryption = DecryptionKey.generate()
        for path, key in (
            (SIGNING_KEY_FILE, b"".join(signing.private_bytes())),
            (ENCRYPTION_KEY_FILE, b"".join(decryption.private_bytes())),
        ):
            _write_private(directory / path, seal_key(key, passphrase) if passphrase else key)
        _write_private(directory / API_TOKEN_FILE, secrets.token_hex(32).encode("ascii"))
        if tls:
            tls_key = make_tls_key()
            _write_private(directory / TLS_KEY_FILE, key_pem(tls_key, passphrase))
            (directory / TLS_CERT_FILE).write_bytes(cert_pem(make_certificate(name, tls_key)))
        config = NodeConfig(
            name=name,
            role=role,
            listen_host=host,
            listen_port=port,
            endpoint=f"{'https' if tls else 'http'}://"
            f"{host if ':' not in host else f'[{host}]'}:{port}",
            display_names=display_names,
            store_url=store_url,
            tls=tls,
        )
        (directory / CONFIG_FILE).write_text(config.to_toml(), encoding="utf-8")
        home = cls(directory, passphrase=passphrase)
        home.store.close()  # creates and migrates the store now: init fails loudly if it cannot
        home._store = None
        return home

    # -- identity and card -----------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            if self.keys_encrypted and not self._passphrase and sys.stdin.isatty():
                self._passphrase = getpass.getpass(f"passphrase of {self.config.name}'s keys: ")
            self._finish_key_change()
            self._identity = self._load_identity()
        return self._identity

    def _load_identity(self, suffix: str = "") -> Identity:
        signing = _read_private(self.dir / (SIGNING_KEY_FILE + suffix), 64, self._passphrase)
        enc = _read_private(self.dir / (ENCRYPTION_KEY_FILE + suffix), 96, self._passphrase)
        previous = []
        folder = self.dir / PREVIOUS_KEYS_DIR
        if not suffix and folder.is_dir():
            # Newest first: an envelope is most likely sealed to the generation just retired.
            files = sorted(folder.glob("*.encryption.key"), key=lambda p: -p.stat().st_mtime_ns)
            for path in files:
                old = _read_private(path, 96, self._passphrase)
                previous.append(DecryptionKey(old[:64], old[64:]))
        try:
            return Identity(
                self.config.name,
                SigningKey(signing[:32], signing[32:]),
                DecryptionKey(enc[:64], enc[64:]),
                tuple(previous),
            )
        except ValueError as e:
            raise ConfigError(f"key files in {self.dir} are invalid: {e}") from e

    @property
    def previous_keys_kept(self) -> timedelta:
        """How long a retired decryption key is kept by default (``retire_previous_keys``): an
        envelope sealed to it may still come within a message's default lifetime, or from a
        relay that holds mail for ``relay_hold_s``."""
        return timedelta(seconds=self.config.relay_hold_s + self.config.default_ttl_s)

    def retire_previous_keys(self, now: datetime, older_than: timedelta) -> list[str]:
        """Delete the decryption keys of earlier generations archived more than ``older_than``
        before ``now`` (threat model K2): what was sealed to them can no longer be opened, by us
        or by whoever later copies this directory. Returns the key ids deleted (of the signing
        keys that served with them). The current keys are never touched; a running node holds
        the deleted keys in memory until it restarts or its keys change."""
        if older_than < timedelta(0):
            raise InputError("the age of the keys to delete must not be negative")
        folder = self.dir / PREVIOUS_KEYS_DIR
        if not folder.is_dir():
            return []
        deleted = []
        cutoff = (now - older_than).timestamp()
        for path in sorted(folder.glob("*.encryption.key")):
            # Archived when the key retired (_install_next): the file's time is that moment.
            stat = path.stat()
            if stat.st_mtime > cutoff:
                continue
            # Overwritten before it is unlinked: a file system that rewrites in place forgets the
            # bytes (a copy-on-write one or a flash disk may keep them: they are sealed under the
            # passphrase unless the node was made without one).
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"\0" * stat.st_size)
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
            deleted.append(path.name.removesuffix(".encryption.key"))
        if deleted:
            _fsync_dir(folder)
            self._identity = None  # read again without them
        return deleted

    def reload_identity(self) -> Identity:
        """Read the key files again (a rotation by the CLI while the node runs)."""
        self._identity = None
        return self.identity

    def _finish_key_change(self) -> None:
        """Key files of a rotation or revocation replace the current ones if (and only if) the
        store committed that change: the key history's active own key is theirs."""
        nxt = self.dir / (SIGNING_KEY_FILE + NEXT_SUFFIX)
        if not nxt.exists():
            return
        new = self._load_identity(NEXT_SUFFIX)
        with self.store.read() as conn:
            committed = any(
                r.state is KeyState.ACTIVE and r.key_id == new.signing.public.key_id.hex()
                for r in keyring.history(conn, self.config.name)
            )
        if committed:
            self._install_next()
        else:  # the change never committed: the new keys were never announced
            for name in (SIGNING_KEY_FILE, ENCRYPTION_KEY_FILE):
                (self.dir / (name + NEXT_SUFFIX)).unlink(missing_ok=True)

    def _install_next(self) -> None:
        current = self._load_identity()
        key_id = current.signing.public.key_id.hex()
        folder = self.dir / PREVIOUS_KEYS_DIR
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        archived = folder / f"{key_id}.encryption.key"
        if not archived.exists():
            _write_private(archived, (self.dir / ENCRYPTION_KEY_FILE).read_bytes())
        for name in (ENCRYPTION_KEY_FILE, SIGNING_KEY_FILE):  # signing last: it names the change
            # Another process (the running node at start, or the CLI) may have finished the
            # move first: a missing .next file is then already in place.
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.dir / (name + NEXT_SUFFIX), self.dir / name)

    def change_keys(
        self, now: datetime, *, overlap: timedelta | None = None, compromised_at: datetime | None
    ) -> keyring.OwnEvent:
        """Rotate (``overlap``) or revoke (``compromised_at``) this node's keys: new keys, the
        signed key event recorded and queued to every peer in one transaction, then the new key
        files in place (docs/protocol.md §15)."""
        old = self.identity
        old_card = self.card(now)
        new = Identity(self.config.name, SigningKey.generate(), DecryptionKey.generate())
        new_card = self.card(now, identity=new)
        passphrase = self._passphrase if self.keys_encrypted else None
        if self.keys_encrypted and not passphrase:
            raise ConfigError("the passphrase is needed to write the new key files")
        for path, key in (
            (SIGNING_KEY_FILE, b"".join(new.signing.private_bytes())),
            (ENCRYPTION_KEY_FILE, b"".join(new.decryption.private_bytes())),
        ):
            sealed = seal_key(key, passphrase) if passphrase else key
            _write_private(self.dir / (path + NEXT_SUFFIX), sealed)
        cards = self.peer_cards()
        ttl = timedelta(seconds=self.config.default_ttl_s)
        try:
            with self.store.write() as conn:
                if compromised_at is None:
                    event = keyring.record_own_rotation(
                        conn, old, old_card, new, new_card, cards, now=now,
                        overlap=overlap or timedelta(days=7),
                    )  # fmt: skip
                else:
                    event = keyring.record_own_revocation(
                        conn, old, old_card, new, new_card, cards, now=now,
                        compromised_at=min(compromised_at, now), ttl=ttl,
                    )  # fmt: skip
        except BaseException:
            for name in (SIGNING_KEY_FILE, ENCRYPTION_KEY_FILE):
                (self.dir / (name + NEXT_SUFFIX)).unlink(missing_ok=True)
            raise
        self._install_next()
        self._identity = None
        return event

    @property
    def keys_encrypted(self) -> bool:
        try:
            with (self.dir / SIGNING_KEY_FILE).open("rb") as f:
                return is_encrypted(f.read(4))
        except FileNotFoundError:
            return False

    def card(self, now: datetime, *, identity: Identity | None = None) -> Card:
        endpoints = [self.config.endpoint] if self.config.endpoint else []
        endpoints += [e for e in self.config.alternate_endpoints if e not in endpoints]
        role = self.config.role if self.config.role in ("node", "witness", "relay") else "node"
        return make_card(
            identity or self.identity,
            display_names=self.config.display_names,
            endpoints=endpoints,
            created=now,
            role=role,  # type: ignore[arg-type]
            tls_cert=self.tls_cert if self.config.tls else None,
        )

    @property
    def tls_cert(self) -> bytes:
        """The DER of this node's TLS certificate (``tls.crt``)."""
        path = self.dir / TLS_CERT_FILE
        try:
            return ssl.PEM_cert_to_DER_cert(path.read_text(encoding="ascii"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"TLS certificate {path} missing or unreadable: {e}") from e

    def server_tls(self) -> ssl.SSLContext:
        """The context ``hotline serve`` listens with (TLS 1.3 only)."""
        key_path = self.dir / TLS_KEY_FILE
        try:
            mode = key_path.stat().st_mode & 0o777
        except FileNotFoundError as e:
            raise ConfigError(f"key file missing: {key_path}") from e
        if mode & 0o077:
            raise ConfigError(f"key file {key_path} is readable by others (mode {mode:o})")
        if self.keys_encrypted and not self._passphrase and sys.stdin.isatty():
            self._passphrase = getpass.getpass(f"passphrase of {self.config.name}'s keys: ")
        try:
            return server_context(str(self.dir / TLS_CERT_FILE), str(key_path), self._passphrase)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot load the TLS key and certificate of {self.dir}: {e}") from e

    def local_verify(self) -> ssl.SSLContext | bool:
        """What a client on this machine (the CLI, tests) verifies this node's endpoint with:
        its own pinned certificate when it serves TLS."""
        return pinned_client_context(self.tls_cert) if self.config.tls else True

    @property
    def api_token(self) -> str:
        return _read_private(self.dir / API_TOKEN_FILE, 64).decode("ascii")

    # -- store and peers -------------------------------------------------------------------

    @property
    def store_url(self) -> str:
        return self.config.store_url or sqlite_url(self.dir / STORE_FILE)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.store_url)
        return self._store

    def add_peer(self, card: Card, confirmed_fingerprint: str, now: datetime) -> None:
        """Add a peer whose card verified and whose fingerprint the operator confirmed."""
        if card.fingerprint != confirmed_fingerprint:
            raise VerificationError(
                f"fingerprint of {card.name!r} is {card.fingerprint}, "
                f"not the confirmed {confirmed_fingerprint}",
                code=ErrorCode.FINGERPRINT_MISMATCH,
            )
        if card.name == self.config.name:
            raise InputError("a node cannot add itself as a peer")
        with self.store.write() as conn:
            existing = conn.execute(
                select(peers.c.fingerprint).where(peers.c.name == card.name)
            ).first()
            if existing is not None:
                if existing[0] == card.fingerprint:
                    conn.execute(
                        peers.update().where(peers.c.name == card.name).values(card=card.statement)
                    )
                    return
                raise InputError(
                    f"peer {card.name!r} exists with other keys; key changes need rotation"
                )
            conn.execute(
                insert(peers).values(
                    name=card.name,
                    card=card.statement,
                    fingerprint=card.fingerprint,
                    added_at_us=to_us(now),
                )
            )
            keyring.add_key(conn, card, state=KeyState.ACTIVE, now_us=to_us(now), confirmed=True)

    def peer_cards(self) -> dict[str, Card]:
        with self.store.read() as conn:
            rows = list(conn.execute(select(peers.c.name, peers.c.card)))
        return {row.name: parse_card_statement(bytes(row.card)) for row in rows}

    def peer_card(self, name: str) -> Card:
        cards = self.peer_cards()
        if name not in cards:
            raise NotFoundError(f"no peer named {name!r}; add it with 'hotline peer add'")
        return cards[name]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

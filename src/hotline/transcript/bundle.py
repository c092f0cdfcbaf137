"""Audit bundles: the whole record of one link, verifiable offline by anyone.

A bundle file (docs/audit.md) is a stream of lines: a header (both nodes' cards, each log's
signed tree heads and the consistency proofs between them, the witnesses' cosignatures), then
one record per signed statement exchanged on the link (messages and receipts, as signed by their
authors, so no decryption key is needed) with the inclusion proof of each log entry that holds
it, then the exporter's signed statement (purpose ``audit-bundle``) of the SHA-256 of every byte
before it, so no byte can change unnoticed. ``verify_bundle`` checks all of it with no node and
no store; it is pure apart from reading the file and spreading the records over processes.

Why records on lines: each worker process reads, parses and checks its own run of records, so
the main process never parses the whole file (a 100,000-message bundle is 700 MB), and no
record's bytes cross a process boundary. A record is a JSON array (positional, so no key can be
repeated or misread by another parser); the header is small and parsed strictly.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import mmap
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from hotline.core import merkle
from hotline.core.card import Card, Identity, parse_card_statement
from hotline.core.encoding import b64decode, b64encode, decode_json, format_time, parse_time
from hotline.core.keyevents import KeyPeriod, replay_history
from hotline.core.keys import Purpose, SigningPublicKey, peek_statement, verify_statement
from hotline.core.treehead import TreeHead, verify_tree_head
from hotline.core.witness import verify_cosignature
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

BUNDLE_VERSION = 2
#: Largest bundle accepted: about 500,000 statements with their proofs.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024 * 1024
MAX_STATEMENTS = 2_000_000
#: The header holds every signed head of both logs and every cosignature (about 5.5 KB each):
#: 64 MiB is over 10,000 of them.
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: One record: a statement (at most 1 MiB, 1.4 MB in base64) and its entries.
MAX_RECORD_BYTES = 2 * 1024 * 1024
#: Bytes of records per worker task at most; smaller tasks balance the processes' load.
_SHARD_BYTES = 32 * 1024 * 1024
#: Below this many records, starting processes costs more than it saves.
_PARALLEL_MIN_RECORDS = 2000

_PURPOSES = {p.value: p for p in (Purpose.MESSAGE, Purpose.RECEIPT)}
#: Key events per party in one bundle: generous for decades of yearly rotations.
MAX_KEY_EVENTS = 1_000
#: A key event statement in a bundle (a rotation is about 17 KB).
MAX_EVENT_BYTES = 64 * 1024


class _Consistency(msgspec.Struct, forbid_unknown_fields=True):
    first: int
    second: int
    proof: list[str]


class _Log(msgspec.Struct, forbid_unknown_fields=True):
    heads: list[str]
    consistency: list[_Consistency]


class _Witness(msgspec.Struct, forbid_unknown_fields=True):
    card: str
    cosignatures: list[str]  # cosignatures of heads of the exporter's log


class _KeyHistory(msgspec.Struct, forbid_unknown_fields=True):
    first_card: str  # the party's first card (its first key), base64 of the statement
    events: list[str]  # its rotation and revocation statements, oldest first, base64


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    hotline_audit_bundle: int
    link: list[str]
    exported_by: str
    exported_at: str
    cards: dict[str, str]
    logs: dict[str, _Log]
    witnesses: dict[str, _Witness]
    records: int
    #: Per party whose keys changed: its key history (docs/audit.md). A party without one has
    #: had only the key of its card.
    key_history: dict[str, _KeyHistory] = msgspec.field(default_factory=dict)


#: A record line: [statement (base64), [[log, index, kind, ref, proof (base64)], ...]].
_Record = tuple[str, list[tuple[str, int, str, str, str]]]


class BundleError(VerificationError):
    """A bundle item that does not verify; ``item`` names it exactly."""

    def __init__(self, item: str, detail: str) -> None:
        super().__init__(f"{item}: {detail}", code=ErrorCode.BAD_PROOF, fields={"item": item})
        self.item = item


@dataclass(slots=True)
class LogReport:
    owner: str
    size: int
    heads: int
    entries: int
    unproved: list[str] = field(default_factory=list)


@dataclass(slots=True)
class BundleReport:
    link: tuple[str, str]
    exported_by: str
    statements: int
    messages: int
    receipts: int
    senders: dict[str, int]
    first: datetime | None
    last: datetime | None
    logs: dict[str, LogReport]
    signature_checks: int
    witnessed: dict[str, int] = field(default_factory=dict)
    #: Per party, how many keys its history shows (1: never rotated).
    keys: dict[str, int] = field(default_factory=dict)
    #: Statements signed by a key outside its valid period (a revoked key at or after the
    #: compromise, a rotated key after its overlap): "records[N]: why". The receiver accepted
    #: them before it knew, or they are forgeries made with a stolen key; shown, not fatal.
    suspect: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "link": list(self.link),
            "exported_by": self.exported_by,
            "statements": self.statements,
            "messages": self.messages,
            "receipts": self.receipts,
            "senders": self.senders,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "logs": {
                name: {
                    "size": r.size,
                    "heads": r.heads,
                    "entries": r.entries,
                    "not_in_this_log": len(r.unproved),
                }
                for name, r in self.logs.items()
            },
            "signature_checks": self.signature_checks,
            "witnessed": self.witnessed,
            "keys": self.keys,
            "suspect": self.suspect,
        }


class _ExportPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    bundle_sha256: str
    exported_by: str
    exported_at: str


# -- writing ----------------------------------------------------------------------------------


def sign_bundle(identity: Identity, body: bytes, exported_at: str) -> bytes:
    """The bundle file: ``body`` (header and record lines, each ending in a newline), then the
    exporter's signature statement over the SHA-256 of those exact bytes, and a newline."""
    payload = msgspec.json.encode(
        {
            "v": BUNDLE_VERSION,
            "bundle_sha256": hashlib.sha256(body).hexdigest(),
            "exported_by": identity.name,
            "exported_at": exported_at,
        }
    )
    statement = identity.signing.sign(Purpose.AUDIT_BUNDLE, payload)
    return body + b64encode(statement).encode("ascii") + b"\n"


def statement_key(statement: bytes) -> str:
    return hashlib.sha256(statement).hexdigest()


def _join_proof(proof: list[str]) -> str:
    """One base64 text of the proof's hashes concatenated (the byte form of merkle.encode_proof)."""
    return b64encode(b"".join(base64.b64decode(h, validate=True) for h in proof))


def encode_bundle(
    *,
    link: tuple[str, str],
    exported_by: str,
    exported_at: str,
    cards: dict[str, str],
    statements: dict[str, str],
    logs: dict[str, dict[str, Any]],
    witnesses: dict[str, dict[str, Any]] | None = None,
    key_history: dict[str, dict[str, Any]] | None = None,
) -> bytes:
    """The bundle's header and record lines (``sign_bundle`` adds the signature line).

    ``statements`` maps the SHA-256 hex of each statement to its base64; each of ``logs`` has
    ``heads``, ``consistency`` and ``entries`` (``index``, ``kind``, ``ref``, ``statement``: the
    key of a statement, ``proof``: a list of base64 hashes). Records come in the order of the
    exporter's log (then any others), so nearby records share the top of their proofs."""
    entries_of: dict[str, list[list[Any]]] = {key: [] for key in statements}
    position: dict[str, int] = {}
    for owner, log in logs.items():
        for entry in log.get("entries", []):
            key = entry["statement"]
            if key not in entries_of:
                raise ValueError(f"entry {entry['index']} of {owner} names no statement")
            entries_of[key].append(
                [owner, entry["index"], entry["kind"], entry["ref"], _join_proof(entry["proof"])]
            )
            if owner == exported_by:
                position[key] = min(position.get(key, entry["index"]), entry["index"])
    order = sorted(statements, key=lambda k: (k not in position, position.get(k, 0)))
    fields: dict[str, Any] = {
        "hotline_audit_bundle": BUNDLE_VERSION,
        "link": list(link),
        "exported_by": exported_by,
        "exported_at": exported_at,
        "cards": cards,
        "logs": {
            owner: {"heads": log["heads"], "consistency": log["consistency"]}
            for owner, log in logs.items()
        },
        "witnesses": witnesses or {},
        "records": len(statements),
    }
    if key_history:
        fields["key_history"] = key_history
    header = msgspec.json.encode(fields)
    lines = [header]
    lines.extend(msgspec.json.encode([statements[key], entries_of[key]]) for key in order)
    lines.append(b"")
    return b"\n".join(lines)


# -- verifying: one run of records, in a worker process -----------------------------------------

# What a worker returns per record: leaf hash, purpose label, author, recipient, seq (None for
# DELIVERED receipts), and the logs that list it. Plain values: results cross process boundaries.
_Row = tuple[bytes, str, str, str, int | None, tuple[str, ...]]
# A failure: record number, item, detail.
_Failure = tuple[int, str, str]


@dataclass(slots=True)
class _ShardResult:
    rows: list[_Row]
    indexes: dict[str, list[tuple[int, int]]]  # log -> (leaf index, record number)
    first: datetime | None
    last: datetime | None
    failure: _Failure | None
    suspect: list[tuple[int, str]] = field(default_factory=list)  # (record number, why)


@dataclass(frozen=True, slots=True)
class _ShardTask:
    source: str | bytes  # a file path (the worker maps it) or the bytes themselves
    start: int
    end: int
    # party -> key id -> (Ed25519, ML-DSA-65) public keys: every key of its history
    keys: dict[str, dict[bytes, tuple[bytes, bytes]]]
    heads: dict[str, tuple[int, bytes]]  # log -> (size, root) of its last head
    # party -> key id -> (end of its overlap, compromise time): when each key could sign
    periods: dict[str, dict[bytes, tuple[datetime | None, datetime | None]]]


def _lines(task: _ShardTask) -> Iterator[bytes]:
    if isinstance(task.source, bytes):
        view = task.source
        yield from view[task.start : task.end].split(b"\n")[:-1]
        return
    with open(task.source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        yield from m[task.start : task.end].split(b"\n")[:-1]


def _check_shard(task: _ShardTask) -> _ShardResult:
    """Check one run of records: each statement signed by its author (a party to the link) for
    a message or receipt; each entry's ref and kind agree with the statement, and its inclusion
    proof holds against its log's last head. Stops at the first failure."""
    checkers = {
        owner: merkle.InclusionChecker(size=size, root=root)
        for owner, (size, root) in task.heads.items()
    }
    signers = {
        n: {k: SigningPublicKey(ed25519=ed, mldsa65=ml) for k, (ed, ml) in keys.items()}
        for n, keys in task.keys.items()
    }
    decoder = msgspec.json.Decoder(_Record)
    result = _ShardResult([], {o: [] for o in task.heads}, None, None, None)
    number = 0
    try:
        for number, line in enumerate(_lines(task)):
            row, created = _check_record(
                number, line, decoder, signers, checkers, result.indexes, task.periods, result
            )
            result.rows.append(row)
            if created is not None:
                if result.first is None or created < result.first:
                    result.first = created
                if result.last is None or created > result.last:
                    result.last = created
    except BundleError as e:
        result.failure = (number, e.item, e.detail)
    return result


def _check_record(
    number: int,
    line: bytes,
    decoder: msgspec.json.Decoder[_Record],
    signers: dict[str, dict[bytes, SigningPublicKey]],
    checkers: dict[str, merkle.InclusionChecker],
    indexes: dict[str, list[tuple[int, int]]],
    periods: dict[str, dict[bytes, tuple[datetime | None, datetime | None]]],
    result: _ShardResult,
) -> tuple[_Row, datetime | None]:
    item = f"records[{number}]"
    if len(line) > MAX_RECORD_BYTES:
        raise BundleError(item, f"{len(line)} bytes, limit {MAX_RECORD_BYTES}")
    try:
        encoded, entries = decoder.decode(line)
        statement = b64decode(encoded, what="statement", limit=1 << 20)
        label, key_id, unverified = peek_statement(statement)
        purpose = _PURPOSES.get(label)
        if purpose is None:
            raise BundleError(item, f"purpose {label!r} does not belong in a bundle")
        fields = msgspec.json.decode(unverified, type=dict)
        author = fields.get("from")
        keys = signers.get(author) if isinstance(author, str) else None
        if keys is None:
            raise BundleError(item, f"author {author!r} is not a party to the link")
        signer = keys.get(key_id)
        if signer is None:  # a key of the author's history signs, or nothing does
            raise BundleError(item, f"signed by key {key_id.hex()}, not one of {author}'s keys")
        verify_statement(statement, purpose, signer)
    except BundleError:
        raise
    except (HotlineError, ValueError) as e:  # msgspec raises UnicodeDecodeError for bad UTF-8
        raise BundleError(item, str(e)) from e
    seq = fields.get("seq")
    message_id = fields.get("id")
    leaf = merkle.leaf_hash(statement)
    noun = "message" if purpose is Purpose.MESSAGE else "receipt"
    owners: list[str] = []
    for owner, index, kind, ref, proof in entries:
        where = f"logs.{owner}.entries[{index}] ({kind} {ref})"
        checker = checkers.get(owner)
        if checker is None:
            raise BundleError(where, f"{owner!r} is not a log of this bundle")
        if ref != message_id:
            raise BundleError(where, f"ref {ref!r} is not the statement's id")
        direction = "out" if author == owner else "in"
        if kind != f"{noun}.{direction}":
            raise BundleError(where, f"kind {kind!r}; the statement is a {noun}.{direction}")
        try:
            hashes = base64.b64decode(proof, validate=True)
            checker.check(leaf, index, hashes)
        except ValueError as e:  # binascii.Error, or text that is not ASCII
            raise BundleError(where, f"proof is not valid base64 ({e})") from e
        except HotlineError as e:
            raise BundleError(where, e.detail) from e
        indexes[owner].append((index, number))
        owners.append(owner)
    created: datetime | None = None
    text = fields.get("created")
    if isinstance(text, str):
        try:
            created = parse_time(text, what="created")
        except HotlineError:
            created = None
        if created is not None and created.tzinfo is None:
            created = None  # not a hotline time; a naive one would not compare with the others
    why = _outside_period(periods[str(author)].get(key_id), created, key_id)
    if why is not None and fields.get("type") != "key_revocation":
        # (The carrier of a revocation is signed by the revoked key by design.)
        result.suspect.append((number, why))
    row: _Row = (
        leaf,
        label,
        str(author),
        str(fields.get("to")),
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        tuple(owners),
    )
    return row, created


def _outside_period(
    period: tuple[datetime | None, datetime | None] | None, signed_at: datetime | None, key: bytes
) -> str | None:
    """Why a statement signed at ``signed_at`` by a key with this period is doubtful, if it is:
    a revoked key signing at or after the compromise, a rotated key after its overlap."""
    if period is None or signed_at is None:
        return None
    valid_until, compromised_at = period
    if compromised_at is not None and signed_at >= compromised_at:
        return (
            f"signed {format_time(signed_at)} by key {key.hex()}, compromised as of "
            f"{format_time(compromised_at)}"
        )
    if valid_until is not None and signed_at > valid_until:
        return (
            f"signed {format_time(signed_at)} by key {key.hex()}, after its overlap ended "
            f"{format_time(valid_until)}"
        )
    return None


def _head_signer(statement: bytes, keys: dict[bytes, SigningPublicKey]) -> SigningPublicKey:
    """The owner's key a head names (any key of its history: heads stay valid after a
    rotation); the first key if it names none of them, so that verification says so."""
    key_id = peek_statement(statement)[1]
    return keys.get(key_id) or next(iter(keys.values()))


def _key_periods(header: _Header, name: str, card: Card) -> list[KeyPeriod]:
    """A party's keys: its key history replayed from its first card (each rotation signed by
    the key before it), or only its card's key. The card must hold one of those keys."""
    history = header.key_history.get(name)
    if history is None:
        return [KeyPeriod(card.signing_key, card)]
    item = f"key_history.{name}"
    if len(history.events) > MAX_KEY_EVENTS:
        raise WireError(f"{item}: more than {MAX_KEY_EVENTS} key events", code=ErrorCode.TOO_LARGE)
    try:
        first = parse_card_statement(b64decode(history.first_card, what=f"{item}.first_card"))
        if first.name != name:
            raise BundleError(f"{item}.first_card", f"card is for {first.name!r}")
        events = [
            b64decode(e, what=f"{item}.events[{i}]", limit=MAX_EVENT_BYTES)
            for i, e in enumerate(history.events)
        ]
        periods = replay_history(first, events)
    except BundleError:
        raise
    except HotlineError as e:
        raise BundleError(item, e.detail) from e
    if all(p.key_id != card.signing_key.key_id for p in periods):
        raise BundleError(f"cards.{name}", "the card's key is not in the party's key history")
    return periods


def _decode_hashes(values: Iterable[str], item: str) -> list[bytes]:
    try:
        return [b64decode(v, what=item, size=merkle.HASH_SIZE) for v in values]
    except WireError as e:
        raise BundleError(item, e.detail) from e


def _check_log(owner: str, log: _Log, keys: dict[bytes, SigningPublicKey]) -> TreeHead:
    """Heads signed by the owner (any key of its history), consistent one to the next; returns
    the last head."""
    heads: list[TreeHead] = []
    for i, encoded in enumerate(log.heads):
        item = f"logs.{owner}.heads[{i}]"
        try:
            statement = b64decode(encoded, what=item)
            heads.append(verify_tree_head(statement, _head_signer(statement, keys), log=owner))
        except HotlineError as e:
            raise BundleError(item, e.detail) from e
    if not heads:
        raise BundleError(f"logs.{owner}.heads", "no signed tree head")
    for i in range(1, len(heads)):
        if heads[i].size < heads[i - 1].size:
            raise BundleError(f"logs.{owner}.heads[{i}]", "heads out of order (log shrank)")
    proofs = {(c.first, c.second): c for c in log.consistency}
    for i in range(1, len(heads)):
        old, new = heads[i - 1], heads[i]
        item = f"logs.{owner}.consistency[{old.size}->{new.size}]"
        if old.size == new.size:
            if old.root != new.root:
                raise BundleError(item, "two heads of one size with different roots")
            continue
        found = proofs.get((old.size, new.size))
        if found is None:
            raise BundleError(item, "missing consistency proof")
        try:
            merkle.verify_consistency(
                old_size=old.size,
                new_size=new.size,
                old_root=old.root,
                new_root=new.root,
                proof=_decode_hashes(found.proof, item),
            )
        except HotlineError as e:
            raise BundleError(item, e.detail) from e
    return heads[-1]


class _Source:
    """The bundle's bytes, from memory or mapped from a file (never read whole into memory)."""

    def __init__(self, data: bytes | Path) -> None:
        self.path: str | None = None
        self._map: mmap.mmap | None = None
        if isinstance(data, Path):
            self.path = str(data)
            with open(data, "rb") as f:
                size = f.seek(0, 2)
                if size > MAX_BUNDLE_BYTES:
                    raise WireError(f"bundle of {size} bytes over limit", code=ErrorCode.TOO_LARGE)
                if size == 0:
                    raise BundleError("file", "empty")
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.data: bytes | mmap.mmap = self._map
        else:
            if len(data) > MAX_BUNDLE_BYTES:
                raise WireError(f"bundle of {len(data)} bytes over limit", code=ErrorCode.TOO_LARGE)
            self.data = data

    def close(self) -> None:
        if self._map is not None:
            self._map.close()

    def sha256(self, end: int) -> str:
        digest = hashlib.sha256()
        view = memoryview(self.data)
        try:
            for at in range(0, end, 16 * 1024 * 1024):
                digest.update(view[at : min(end, at + 16 * 1024 * 1024)])
        finally:
            view.release()
        return digest.hexdigest()


def _layout(data: bytes | mmap.mmap) -> tuple[int, int]:
    """(end of the header line, start of the signature line), each newline included in the
    line before it; refuses a file that is not header, records, signature."""
    if data[-1:] != b"\n":
        raise BundleError("file", "a bundle file ends with its signature line and a newline")
    header_end = data.find(b"\n", 0, MAX_HEADER_BYTES + 1) + 1
    if header_end == 0:
        raise BundleError("header", f"no header line within {MAX_HEADER_BYTES} bytes")
    signature_start = data.rfind(b"\n", 0, len(data) - 1) + 1
    if signature_start < header_end:
        raise BundleError("file", "a bundle is a header line, records, then a signature line")
    return header_end, signature_start


def _shards(data: bytes | mmap.mmap, start: int, end: int, count: int) -> list[tuple[int, int]]:
    """Split the record lines in [start, end) into about ``count`` runs of whole lines."""
    bounds = [start]
    step = max(1, (end - start) // max(1, count))
    while bounds[-1] < end:
        target = bounds[-1] + step
        if target >= end:
            bounds.append(end)
            break
        cut = data.find(b"\n", target - 1, end)
        bounds.append(end if cut < 0 else cut + 1)
    return list(itertools.pairwise(bounds))


def verify_bundle(data: bytes | Path, *, workers: int = 1) -> BundleReport:
    """Check every signature, inclusion proof and consistency proof; return a summary.

    Steps (docs/audit.md): 1. layout, strict header, limits; 2. both cards self-signed, and the
    exporter's signature over every byte before its line; 3. every record's statement signed by
    its author (a party to the link) for a message or receipt purpose; 4. each log's heads signed
    by its owner and consistent one to the next; 5. every entry's ref and kind agree with its
    statement and its inclusion proof holds against the log's last head; no index twice, no
    statement twice; 6. which statements each log holds; 7. each direction's sequence numbers
    are complete; 8. witnesses' cosignatures; 9. statements signed by a key outside its period
    are listed as suspect. Signatures (3, 4, 8) are checked with the key they name among the
    party's keys: its card's, or every key of its key history (2b: replayed from its first card,
    each rotation signed by the key before it). Records (3, 5) are checked by ``workers``
    processes, each reading its own run of lines, while this process hashes the file for 2.
    Raises ``BundleError`` naming the first item that fails (in the order of the steps).
    """
    source = _Source(data)
    try:
        return _verify(source, workers)
    finally:
        source.close()


def _verify(source: _Source, workers: int) -> BundleReport:
    raw = source.data
    header_end, signature_start = _layout(raw)  # 1
    header = decode_json(
        bytes(raw[: header_end - 1]), _Header, what="header", limit=MAX_HEADER_BYTES
    )
    if header.hotline_audit_bundle != BUNDLE_VERSION:
        raise WireError(
            f"bundle format {header.hotline_audit_bundle}; this verifier reads format "
            f"{BUNDLE_VERSION}",
            code=ErrorCode.BAD_VERSION,
        )
    if len(set(header.link)) != 2 or set(header.cards) != set(header.link):
        raise BundleError("link", "a bundle covers one link: two parties, a card for each")
    if not 0 <= header.records <= MAX_STATEMENTS:
        raise WireError(
            f"{header.records} records, limit {MAX_STATEMENTS}", code=ErrorCode.TOO_LARGE
        )
    cards: dict[str, Card] = {}
    for name, encoded in header.cards.items():  # 2
        try:
            card = parse_card_statement(b64decode(encoded, what=f"cards.{name}"))
        except HotlineError as e:
            raise BundleError(f"cards.{name}", e.detail) from e
        if card.name != name:
            raise BundleError(f"cards.{name}", f"card is for {card.name!r}")
        cards[name] = card
    if header.exported_by not in cards:
        raise BundleError("exported_by", f"{header.exported_by!r} is not a party to the link")
    signature = bytes(raw[signature_start:-1])
    try:  # 2b
        periods = {name: _key_periods(header, name, card) for name, card in cards.items()}
    except BundleError:
        _check_export_signature(header, source.sha256(signature_start), signature, cards)
        raise
    party_keys = {name: {p.key_id: p.key for p in ps} for name, ps in periods.items()}
    lasts: dict[str, TreeHead] = {}
    try:
        for owner, log in header.logs.items():  # 4
            if owner not in cards:
                raise BundleError(f"logs.{owner}", "log of a node that is not a party to the link")
            lasts[owner] = _check_log(owner, log, party_keys[owner])
    except BundleError:
        # A changed byte is the exporter's signature failing first (step 2 before step 4).
        _check_export_signature(header, source.sha256(signature_start), signature, cards)
        raise
    keys = {n: {k: (v.ed25519, v.mldsa65) for k, v in ks.items()} for n, ks in party_keys.items()}
    windows = {
        n: {p.key_id: (p.valid_until, p.compromised_at) for p in ps} for n, ps in periods.items()
    }
    heads = {owner: (head.size, head.root) for owner, head in lasts.items()}
    shards = _shards(raw, header_end, signature_start, max(workers * 4, len(raw) // _SHARD_BYTES))
    tasks = [
        _ShardTask(
            source=source.path if source.path is not None else bytes(raw[start:end]),
            start=start if source.path is not None else 0,
            end=end if source.path is not None else end - start,
            keys=keys,
            heads=heads,
            periods=windows,
        )
        for start, end in shards
    ]
    if workers > 1 and len(tasks) > 1 and header.records >= _PARALLEL_MIN_RECORDS:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures: list[Future[_ShardResult]] = [pool.submit(_check_shard, t) for t in tasks]
            digest = source.sha256(signature_start)  # 2, while the workers check records
            try:
                _check_export_signature(header, digest, signature, cards)
            except BundleError:
                for f in futures:
                    f.cancel()
                raise
            results = [f.result() for f in futures]
    else:
        _check_export_signature(header, source.sha256(signature_start), signature, cards)
        results = [_check_shard(t) for t in tasks]
    report = _conclude(header, party_keys, lasts, results)
    report.keys = {name: len(ps) for name, ps in periods.items()}  # 9
    return report


def _conclude(
    header: _Header,
    party_keys: dict[str, dict[bytes, SigningPublicKey]],
    lasts: dict[str, TreeHead],
    results: list[_ShardResult],
) -> BundleReport:
    """Steps 3 and 5 to 8 over the workers' results, in record order (workers number the
    records of their run from 0; ``base`` makes the numbers the file's)."""
    base = 0
    for result in results:
        if result.failure is not None:
            local, item, detail = result.failure
            if item.startswith("records["):
                item = f"records[{base + local}]"
            raise BundleError(item, detail.replace(f"records[{local}]", item))
        base += len(result.rows)
    if base != header.records:
        raise BundleError(
            "records", f"the header announces {header.records}, the file holds {base}"
        )
    leaves: dict[bytes, int] = {}
    indexes: dict[str, dict[int, int]] = {owner: {} for owner in lasts}
    rows: list[_Row] = []
    suspect: list[str] = []
    base = 0
    for result in results:
        suspect.extend(f"records[{base + local}]: {why}" for local, why in result.suspect)
        for offset, row in enumerate(result.rows):
            number = base + offset
            earlier = leaves.setdefault(row[0], number)
            if earlier != number:
                raise BundleError(f"records[{number}]", f"the same statement as records[{earlier}]")
            rows.append(row)
        for owner, listed in result.indexes.items():
            seen = indexes[owner]
            for index, local in listed:
                number = base + local
                earlier = seen.setdefault(index, number)
                if earlier != number:
                    raise BundleError(
                        f"logs.{owner}.entries[{index}]",
                        f"index listed twice (records[{earlier}] and records[{number}])",
                    )
        base += len(result.rows)
    reports = {
        owner: LogReport(
            owner,
            head.size,
            len(header.logs[owner].heads),
            len(indexes[owner]),
            unproved=[row[0].hex() for row in rows if owner not in row[5]],
        )
        for owner, head in lasts.items()
    }
    _check_sequences(rows)  # 7
    witnessed = _check_witnesses(header, party_keys)  # 8
    senders: dict[str, int] = {}
    messages = receipts = 0
    for _leaf, label, sender, _to, _seq, _owners in rows:
        if label == Purpose.MESSAGE.value:
            messages += 1
            senders[sender] = senders.get(sender, 0) + 1
        else:
            receipts += 1
    firsts = [r.first for r in results if r.first is not None]
    lasts_seen = [r.last for r in results if r.last is not None]
    return BundleReport(
        link=(header.link[0], header.link[1]),
        exported_by=header.exported_by,
        statements=len(rows),
        messages=messages,
        receipts=receipts,
        senders=senders,
        first=min(firsts) if firsts else None,
        last=max(lasts_seen) if lasts_seen else None,
        logs=reports,
        signature_checks=len(rows),
        witnessed=witnessed,
        suspect=suspect,
    )


def _check_witnesses(
    header: _Header, party_keys: dict[str, dict[bytes, SigningPublicKey]]
) -> dict[str, int]:
    """Each cosignature is by a witness card in the bundle and names one of the exporter's heads
    with the same root. Returns, per witness, the largest head size it cosigned."""
    owner = header.exported_by
    heads: dict[int, bytes] = {}
    for encoded in header.logs.get(owner, _Log([], [])).heads:
        statement = b64decode(encoded, what="head")
        head = verify_tree_head(statement, _head_signer(statement, party_keys[owner]), log=owner)
        heads[head.size] = head.root
    largest: dict[str, int] = {}
    for name, witness in header.witnesses.items():
        item = f"witnesses.{name}"
        try:
            card = parse_card_statement(b64decode(witness.card, what=item))
        except HotlineError as e:
            raise BundleError(item, e.detail) from e
        if card.name != name or card.role != "witness":
            raise BundleError(item, "not the card of a witness of that name")
        for i, encoded in enumerate(witness.cosignatures):
            sub = f"{item}.cosignatures[{i}]"
            try:
                signature = verify_cosignature(
                    b64decode(encoded, what=sub), card.signing_key, witness=name, log=owner
                )
            except HotlineError as e:
                raise BundleError(sub, e.detail) from e
            if heads.get(signature.size) != signature.root:
                raise BundleError(
                    sub,
                    f"cosigns a head of size {signature.size} that is not "
                    "one of the exporter's heads in this bundle",
                )
            largest[name] = max(largest.get(name, 0), signature.size)
    return largest


def _check_export_signature(
    header: _Header, digest: str, encoded: bytes, cards: dict[str, Card]
) -> None:
    item = "signature"
    try:
        statement = b64decode(encoded.decode("ascii"), what=item, limit=64 * 1024)
        checked = verify_statement(
            statement, Purpose.AUDIT_BUNDLE, cards[header.exported_by].signing_key
        )
        payload = decode_json(checked.payload, _ExportPayload, what=item)
    except (HotlineError, UnicodeDecodeError) as e:
        raise BundleError(item, str(e)) from e
    if payload.v != BUNDLE_VERSION:
        raise BundleError(item, f"signs a bundle of format {payload.v}")
    if payload.bundle_sha256 != digest:
        raise BundleError(item, "the bundle's bytes differ from what the exporter signed")
    if (payload.exported_by, payload.exported_at) != (header.exported_by, header.exported_at):
        raise BundleError(item, "signed exporter or time differ from the bundle's")


def _check_sequences(rows: list[_Row]) -> None:
    """Each direction's sequence numbers run 1..N with none missing and none used twice: a
    message dropped from the bundle (from every log at once) still leaves its number's gap."""
    seen: dict[tuple[str, str], dict[int, int]] = {}
    for number, (_leaf, _label, sender, recipient, seq, _owners) in enumerate(rows):
        if seq is None:
            continue  # DELIVERED receipts are not sequenced
        numbers = seen.setdefault((sender, recipient), {})
        if seq in numbers:
            raise BundleError(f"records[{number}]", f"sequence number {seq} used twice")
        numbers[seq] = number
    for (sender, recipient), numbers in seen.items():
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        if missing:
            raise BundleError(
                f"sequence {sender}->{recipient}",
                f"numbers {missing[:10]} missing: statements were dropped from the bundle",
            )


__all__ = [
    "BUNDLE_VERSION",
    "BundleError",
    "BundleReport",
    "encode_bundle",
    "sign_bundle",
    "statement_key",
    "verify_bundle",
]

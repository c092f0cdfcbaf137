"""Audit bundles: the whole record of one link, verifiable offline by anyone.

A bundle file (docs/audit.md) is two lines: the bundle JSON, then the exporter's signed statement
(purpose ``audit-bundle``) of the SHA-256 of the first line's exact bytes, so no byte of it can
change unnoticed. The bundle holds both nodes' cards, every signed statement exchanged on the link
(messages and receipts, as signed by their authors, so no decryption key is needed), and for
each node's log: its signed tree heads, consistency proofs between them, and an inclusion proof
of every entry of the link against the last head. ``verify_bundle`` checks all of it with no node
and no store; it is pure apart from optionally spreading signature checks over processes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from hotline.core import merkle
from hotline.core.card import Card, Identity, parse_card_statement
from hotline.core.encoding import b64decode, b64encode, decode_json, parse_time
from hotline.core.keys import Purpose, SigningPublicKey, peek_statement, verify_statement
from hotline.core.treehead import TreeHead, verify_tree_head
from hotline.core.witness import verify_cosignature
from hotline.errors import ErrorCode, HotlineError, VerificationError, WireError

BUNDLE_VERSION = 1
#: Largest bundle accepted: about 200,000 statements with their proofs.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024 * 1024
MAX_STATEMENTS = 2_000_000

_PURPOSES = {p.value: p for p in (Purpose.MESSAGE, Purpose.RECEIPT)}


class _Entry(msgspec.Struct, forbid_unknown_fields=True):
    index: int
    kind: str
    ref: str
    statement: str  # SHA-256 hex of the statement, a key of "statements"
    proof: list[str]


class _Consistency(msgspec.Struct, forbid_unknown_fields=True):
    first: int
    second: int
    proof: list[str]


class _Log(msgspec.Struct, forbid_unknown_fields=True):
    heads: list[str]
    consistency: list[_Consistency]
    entries: list[_Entry]


class _Witness(msgspec.Struct, forbid_unknown_fields=True):
    card: str
    cosignatures: list[str]  # cosignatures of heads of the exporter's log


class _Bundle(msgspec.Struct, forbid_unknown_fields=True):
    hotline_audit_bundle: int
    link: list[str]
    exported_by: str
    exported_at: str
    cards: dict[str, str]
    statements: dict[str, str]
    logs: dict[str, _Log]
    witnesses: dict[str, _Witness] = msgspec.field(default_factory=dict)


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
        }


class _ExportPayload(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    bundle_sha256: str
    exported_by: str
    exported_at: str


# -- writing ----------------------------------------------------------------------------------


def sign_bundle(identity: Identity, body: bytes, exported_at: str) -> bytes:
    """The bundle file: the body, a newline, the exporter's signature statement, a newline."""
    payload = msgspec.json.encode(
        {
            "v": BUNDLE_VERSION,
            "bundle_sha256": hashlib.sha256(body).hexdigest(),
            "exported_by": identity.name,
            "exported_at": exported_at,
        }
    )
    statement = identity.signing.sign(Purpose.AUDIT_BUNDLE, payload)
    return body + b"\n" + b64encode(statement).encode("ascii") + b"\n"


def statement_key(statement: bytes) -> str:
    return hashlib.sha256(statement).hexdigest()


def encode_bundle(
    *,
    link: tuple[str, str],
    exported_by: str,
    exported_at: str,
    cards: dict[str, str],
    statements: dict[str, str],
    logs: dict[str, dict[str, Any]],
    witnesses: dict[str, dict[str, Any]] | None = None,
) -> bytes:
    return msgspec.json.encode(
        {
            "hotline_audit_bundle": BUNDLE_VERSION,
            "link": list(link),
            "exported_by": exported_by,
            "exported_at": exported_at,
            "cards": cards,
            "statements": statements,
            "logs": logs,
            "witnesses": witnesses or {},
        }
    )


# -- verifying --------------------------------------------------------------------------------


# What a worker returns for one statement: its key, the fields the summary and the sequence
# check need (purpose, from, to, id, seq, created), and an error text or None.
_Fields = tuple[str, str, str, str, int | None, str]
# One entry of a log naming a statement: owner, index, kind, ref, proof (base64), size, root.
_EntryJob = tuple[str, int, str, str, list[str], int, bytes]
_Job = tuple[str, str, dict[str, tuple[bytes, bytes]], list[_EntryJob]]


def _check_statement(job: _Job) -> tuple[str, _Fields | None, str | None]:
    """Everything about one statement, in a worker process: its bytes hash to its key, its
    author signed it, and each log entry naming it has the right kind and ref and an inclusion
    proof that holds. Takes and returns plain values (it crosses process boundaries)."""
    key, encoded, keys, entries = job
    item = f"statements.{key}"
    try:
        statement = b64decode(encoded, what=item, limit=1 << 20)
        if statement_key(statement) != key:
            return key, None, f"{item}: content does not match its hash"
        label, _key_id, unverified = peek_statement(statement)
        purpose = _PURPOSES.get(label)
        if purpose is None:
            return key, None, f"{item}: purpose {label!r} does not belong in a bundle"
        fields = msgspec.json.decode(unverified, type=dict)
        author = fields.get("from")
        if author not in keys:
            return key, None, f"{item}: author {author!r} is not a party to the link"
        ed, ml = keys[author]
        verify_statement(statement, purpose, SigningPublicKey(ed25519=ed, mldsa65=ml))
        seq = fields.get("seq")
        summary: _Fields = (
            label,
            str(author),
            str(fields.get("to")),
            str(fields.get("id")),
            seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            str(fields.get("created", "")),
        )
        leaf = merkle.leaf_hash(statement)
        noun = "message" if purpose is Purpose.MESSAGE else "receipt"
        for owner, index, kind, ref, proof, size, root in entries:
            where = f"logs.{owner}.entries[{index}] ({kind} {ref})"
            if ref != summary[3]:
                return key, None, f"{where}: ref {ref!r} is not the statement's id"
            direction = "out" if author == owner else "in"
            if kind != f"{noun}.{direction}":
                return key, None, f"{where}: kind {kind!r}; the statement is a {noun}.{direction}"
            hashes = [b64decode(h, what=where, size=merkle.HASH_SIZE) for h in proof]
            try:
                merkle.verify_inclusion(
                    leaf_hash=leaf, index=index, size=size, proof=hashes, root=root
                )
            except HotlineError as e:
                return key, None, f"{where}: {e.detail}"
    except (HotlineError, msgspec.DecodeError) as e:
        return key, None, f"{item}: {e}"
    return key, summary, None


def _check_statements(jobs: list[_Job], workers: int) -> dict[str, _Fields]:
    if workers > 1 and len(jobs) > 2000:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_check_statement, jobs, chunksize=256))
    else:
        results = [_check_statement(job) for job in jobs]
    fields: dict[str, _Fields] = {}
    for key, summary, error in results:
        if error is not None:
            raise BundleError(error.split(":")[0], error)
        if summary is not None:
            fields[key] = summary
    return fields


def _decode_hashes(values: Iterable[str], item: str) -> list[bytes]:
    try:
        return [b64decode(v, what=item, size=merkle.HASH_SIZE) for v in values]
    except WireError as e:
        raise BundleError(item, e.detail) from e


def _check_log(owner: str, log: _Log, card: Card) -> TreeHead:
    """Heads signed by the owner, consistent one to the next; returns the last head."""
    heads: list[TreeHead] = []
    for i, encoded in enumerate(log.heads):
        item = f"logs.{owner}.heads[{i}]"
        try:
            heads.append(
                verify_tree_head(b64decode(encoded, what=item), card.signing_key, log=owner)
            )
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


def verify_bundle(data: bytes, *, workers: int = 1) -> BundleReport:
    """Check every signature, inclusion proof and consistency proof; return a summary.

    Steps: 1. strict structure and limits; 2. both cards self-signed, and the exporter's signature
    over the bundle's exact bytes; 3. every statement signed
    by its author (a party to the link) for a message or receipt purpose; 4. each log's heads
    signed by its owner and consistent one to the next; 5. every listed entry included in the
    log's last head; 6. which statements each log holds (both sides agree on their bytes); 7. each
    direction's sequence numbers are complete.
    Raises ``BundleError`` naming the first item that fails.
    """
    if len(data) > MAX_BUNDLE_BYTES:  # 1
        raise WireError(f"bundle of {len(data)} bytes over limit", code=ErrorCode.TOO_LARGE)
    body, newline, signature_line = data.partition(b"\n")
    if not newline or not signature_line.endswith(b"\n") or b"\n" in signature_line[:-1]:
        raise BundleError("file", "a bundle file is two lines: the bundle, then its signature")
    bundle = decode_json(body, _Bundle, what="audit bundle", limit=MAX_BUNDLE_BYTES)
    if bundle.hotline_audit_bundle != BUNDLE_VERSION:
        raise WireError(f"bundle version {bundle.hotline_audit_bundle}", code=ErrorCode.BAD_VERSION)
    if len(bundle.link) != 2 or set(bundle.cards) != set(bundle.link):
        raise BundleError("link", "a bundle covers one link: two parties, a card for each")
    if len(bundle.statements) > MAX_STATEMENTS:
        raise WireError("too many statements", code=ErrorCode.TOO_LARGE)
    cards: dict[str, Card] = {}
    for name, encoded in bundle.cards.items():  # 2
        try:
            card = parse_card_statement(b64decode(encoded, what=f"cards.{name}"))
        except HotlineError as e:
            raise BundleError(f"cards.{name}", e.detail) from e
        if card.name != name:
            raise BundleError(f"cards.{name}", f"card is for {card.name!r}")
        cards[name] = card
    _check_export_signature(bundle, body, signature_line[:-1], cards)
    reports: dict[str, LogReport] = {}
    entries_of: dict[str, list[_EntryJob]] = {key: [] for key in bundle.statements}
    for owner, log in bundle.logs.items():  # 4
        if owner not in cards:
            raise BundleError(f"logs.{owner}", "log of a node that is not a party to the link")
        last = _check_log(owner, log, cards[owner])
        seen_indexes: set[int] = set()
        for entry in log.entries:  # 5 (the proofs are checked with the statements)
            item = f"logs.{owner}.entries[{entry.index}] ({entry.kind} {entry.ref})"
            if entry.index in seen_indexes:
                raise BundleError(item, "index listed twice")
            seen_indexes.add(entry.index)
            jobs_for = entries_of.get(entry.statement)
            if jobs_for is None:
                raise BundleError(item, "names a statement the bundle does not hold")
            jobs_for.append(
                (owner, entry.index, entry.kind, entry.ref, entry.proof, last.size, last.root)
            )
        reports[owner] = LogReport(owner, last.size, len(log.heads), len(log.entries))
    keys = {n: (c.signing_key.ed25519, c.signing_key.mldsa65) for n, c in cards.items()}
    fields = _check_statements(  # 3, 5
        [(key, encoded, keys, entries_of[key]) for key, encoded in bundle.statements.items()],
        workers,
    )
    for owner, report in reports.items():  # 6
        report.unproved = sorted(
            key for key, jobs in entries_of.items() if all(j[0] != owner for j in jobs)
        )
    _check_sequences(fields)  # 7
    checks = len(fields)
    witnessed = _check_witnesses(bundle)  # 8
    summary = _summary(bundle, fields, reports, checks)
    summary.witnessed = witnessed
    return summary


def _check_witnesses(bundle: _Bundle) -> dict[str, int]:
    """Each cosignature is by a witness card in the bundle and names one of the exporter's heads
    with the same root. Returns, per witness, the largest head size it cosigned."""
    owner = bundle.exported_by
    heads: dict[int, bytes] = {}
    for encoded in bundle.logs.get(owner, _Log([], [], [])).heads:
        head = verify_tree_head(
            b64decode(encoded, what="head"), _card_key(bundle, owner), log=owner
        )
        heads[head.size] = head.root
    largest: dict[str, int] = {}
    for name, witness in bundle.witnesses.items():
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


def _card_key(bundle: _Bundle, name: str) -> SigningPublicKey:
    return parse_card_statement(b64decode(bundle.cards[name], what=f"cards.{name}")).signing_key


def _check_export_signature(
    bundle: _Bundle, body: bytes, encoded: bytes, cards: dict[str, Card]
) -> None:
    item = "signature"
    if bundle.exported_by not in cards:
        raise BundleError("exported_by", f"{bundle.exported_by!r} is not a party to the link")
    try:
        statement = b64decode(encoded.decode("ascii"), what=item, limit=64 * 1024)
        checked = verify_statement(
            statement, Purpose.AUDIT_BUNDLE, cards[bundle.exported_by].signing_key
        )
        payload = decode_json(checked.payload, _ExportPayload, what=item)
    except (HotlineError, UnicodeDecodeError) as e:
        raise BundleError(item, str(e)) from e
    if payload.bundle_sha256 != hashlib.sha256(body).hexdigest():
        raise BundleError(item, "the bundle's bytes differ from what the exporter signed")
    if (payload.exported_by, payload.exported_at) != (bundle.exported_by, bundle.exported_at):
        raise BundleError(item, "signed exporter or time differ from the bundle's")


def _check_sequences(fields: dict[str, _Fields]) -> None:
    """Each direction's sequence numbers run 1..N with none missing and none used twice: a
    message dropped from the bundle (from every log at once) still leaves its number's gap."""
    seen: dict[tuple[str, str], dict[int, str]] = {}
    for key, (_label, sender, recipient, _id, seq, _created) in fields.items():
        if seq is None:
            continue  # DELIVERED receipts are not sequenced
        numbers = seen.setdefault((sender, recipient), {})
        if seq in numbers:
            raise BundleError(f"statements.{key}", f"sequence number {seq} used twice")
        numbers[seq] = key
    for (sender, recipient), numbers in seen.items():
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        if missing:
            raise BundleError(
                f"sequence {sender}->{recipient}",
                f"numbers {missing[:10]} missing: statements were dropped from the bundle",
            )


def _summary(
    bundle: _Bundle, fields: dict[str, _Fields], reports: dict[str, LogReport], checks: int
) -> BundleReport:
    senders: dict[str, int] = {}
    times: list[datetime] = []
    messages = receipts = 0
    for label, sender, _to, _id, _seq, created in fields.values():
        if label == Purpose.MESSAGE.value:
            messages += 1
            senders[sender] = senders.get(sender, 0) + 1
        else:
            receipts += 1
        with contextlib.suppress(HotlineError):
            times.append(parse_time(created, what="created"))
    return BundleReport(
        link=(bundle.link[0], bundle.link[1]),
        exported_by=bundle.exported_by,
        statements=len(fields),
        messages=messages,
        receipts=receipts,
        senders=senders,
        first=min(times) if times else None,
        last=max(times) if times else None,
        logs=reports,
        signature_checks=checks,
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

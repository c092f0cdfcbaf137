"""Audit bundle benchmark: `audit verify` on a bundle of N messages with their receipts.

    .venv/bin/python benchmarks/audit.py [--messages 100000] [--workers 2]

Builds (once; cached under .bench/audit/) a two-party bundle as `hotline audit export` writes it:
N signed messages washington -> moscow, one DELIVERED receipt per 100 messages, both logs with a
signed head and an inclusion proof per entry. Then times, in one run:
  - the bare signature checks (every statement's Ed25519 + ML-DSA-65 signatures, same workers),
  - the full offline verification (`verify_bundle`: parsing, hashes, signatures, proofs, sequence).
Targets (issue): full verification under 60 s with both cores, at most 1.3x the bare checks.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hotline.core import merkle
from hotline.core.card import Identity, make_card
from hotline.core.encoding import b64encode, format_time
from hotline.core.envelope import ReceiptItem, ReceiptKind, new_id, sign_message, sign_receipt
from hotline.core.keys import DecryptionKey, Purpose, SigningKey, verify_statement
from hotline.core.treehead import sign_tree_head
from hotline.transcript.bundle import (
    BUNDLE_VERSION,
    encode_bundle,
    sign_bundle,
    statement_key,
    verify_bundle,
)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "audit"
START = datetime(2026, 11, 26, tzinfo=UTC)
RECEIPT_EVERY = 100


def _identity(name: str, seed: int) -> Identity:
    fill = bytes([seed]) * 32
    return Identity(name, SigningKey(fill, fill), DecryptionKey(fill * 2, fill))


WASHINGTON = _identity("washington", 1)
MOSCOW = _identity("moscow", 2)


def _sign_messages(bounds: tuple[int, int]) -> list[tuple[str, bytes]]:
    out = []
    for seq in range(bounds[0], bounds[1]):
        message_id = new_id(START + timedelta(milliseconds=seq))
        statement = sign_message(
            WASHINGTON,
            to="moscow",
            message_id=message_id,
            seq=seq,
            created=START + timedelta(milliseconds=seq),
            msg_type="free_text",
            priority="routine",
            body={"text": f"notification {seq:06d} " + "x" * 200, "lang": "en"},
        )
        out.append((message_id, statement))
    return out


class _Log:
    """An in-memory RFC 9162 log with every perfect subtree kept, for O(log n) proofs."""

    def __init__(self) -> None:
        self.leaves: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}

    def append(self, data: list[bytes]) -> None:
        size = len(self.leaves)
        frontier = [self._hash(s) for s in merkle.range_subtrees(0, size)] if size else []
        hashes = [merkle.leaf_hash(d) for d in data]
        grown = merkle.append_leaves(len(self.leaves), frontier, hashes)
        self.leaves += hashes
        for level, index, value in grown.nodes:
            self.nodes[(level, index)] = value

    def _hash(self, subtree: tuple[int, int]) -> bytes:
        level, index = subtree
        return self.leaves[index] if level == 0 else self.nodes[subtree]

    def root(self) -> bytes:
        return merkle.fold_subtrees(
            [self._hash(s) for s in merkle.range_subtrees(0, len(self.leaves))]
        )

    def proof(self, index: int) -> list[bytes]:
        return [
            merkle.fold_subtrees([self._hash(s) for s in element])
            for element in merkle.inclusion_proof_subtrees(index, len(self.leaves))
        ]


def build(messages: int, workers: int) -> bytes:
    chunk = max(1, messages // (workers * 8))
    ranges = [(a, min(a + chunk, messages + 1)) for a in range(1, messages + 1, chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        signed = [m for part in pool.map(_sign_messages, ranges) for m in part]
    statements: dict[str, str] = {}
    w_log, m_log = _Log(), _Log()
    w_entries: list[tuple[int, str, str, bytes]] = []
    m_entries: list[tuple[int, str, str, bytes]] = []
    for first in range(0, len(signed), RECEIPT_EVERY):
        batch = signed[first : first + RECEIPT_EVERY]
        for message_id, statement in batch:
            w_entries.append((len(w_log.leaves), "message.out", message_id, statement))
            w_log.append([statement])
        base = len(m_log.leaves)
        m_log.append([s for _i, s in batch])
        for offset, (message_id, statement) in enumerate(batch):
            m_entries.append((base + offset, "message.in", message_id, statement))
        items = [
            ReceiptItem(
                id=i,
                seq=first + n + 1,
                envelope_hash="00" * 32,
                signed_hash=statement_key(s),
                leaf_index=base + n,
            )
            for n, (i, s) in enumerate(batch)
        ]
        receipt_id = new_id(START + timedelta(milliseconds=first))
        receipt = sign_receipt(
            MOSCOW,
            to="washington",
            receipt_id=receipt_id,
            created=START,
            items=items,
            kind=ReceiptKind.DELIVERED,
            tree_size=len(m_log.leaves),
            tree_root=m_log.root(),
        )
        m_entries.append((len(m_log.leaves), "receipt.out", receipt_id, receipt))
        m_log.append([receipt])
        w_entries.append((len(w_log.leaves), "receipt.in", receipt_id, receipt))
        w_log.append([receipt])
    logs = {}
    for identity, log, entries in ((WASHINGTON, w_log, w_entries), (MOSCOW, m_log, m_entries)):
        head = sign_tree_head(identity, size=len(log.leaves), root=log.root(), time=START)
        logs[identity.name] = {
            "heads": [b64encode(head.statement)],
            "consistency": [],
            "entries": [
                {
                    "index": index,
                    "kind": kind,
                    "ref": ref,
                    "statement": statement_key(s),
                    "proof": [b64encode(x) for x in log.proof(index)],
                }
                for index, kind, ref, s in entries
            ],
        }
        for _index, _kind, _ref, s in entries:
            statements[statement_key(s)] = b64encode(s)
    at = format_time(START)
    body = encode_bundle(
        link=("washington", "moscow"),
        exported_by="washington",
        exported_at=at,
        cards={
            i.name: b64encode(make_card(i, display_names={}, endpoints=[], created=START).statement)
            for i in (WASHINGTON, MOSCOW)
        },
        statements=statements,
        logs=logs,
    )
    return sign_bundle(WASHINGTON, body, at)


def _bare_check(statement: bytes) -> None:
    from hotline.core.keys import peek_statement

    label, _kid, _payload = peek_statement(statement)
    signer = WASHINGTON if label == Purpose.MESSAGE.value else MOSCOW
    verify_statement(statement, Purpose(label), signer.signing.public)


def bare_signature_checks(statements: list[bytes], workers: int) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_bare_check, statements, chunksize=500))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"bundle-v{BUNDLE_VERSION}-{args.messages}.hotline"
    if not path.exists():
        print(f"building a bundle of {args.messages} messages (cached in {path}) ...")
        started = time.perf_counter()
        path.write_bytes(build(args.messages, args.workers))
        print(f"  built in {time.perf_counter() - started:.1f} s")
    data = path.read_bytes()
    print(f"bundle: {len(data) / 1e6:.1f} MB, workers: {args.workers}, load {_load()}")

    import msgspec

    from hotline.core.encoding import b64decode

    # Records are the lines between the header and the signature (docs/audit.md).
    raw = [
        b64decode(msgspec.json.decode(line)[0], what="s", limit=1 << 20)
        for line in data.split(b"\n")[1:-2]
    ]
    bare = bare_signature_checks(raw, args.workers)
    print(f"bare signature checks ({len(raw)} statements): {bare:.2f} s")

    del data
    started = time.perf_counter()
    report = verify_bundle(path, workers=args.workers)  # as `hotline audit verify FILE` does
    full = time.perf_counter() - started
    print(
        f"audit verify (everything): {full:.2f} s  "
        f"({report.messages} messages, {report.receipts} receipts, "
        f"logs {[(n, r.size) for n, r in report.logs.items()]})"
    )
    print(f"ratio full / bare signatures: {full / bare:.2f}  (target <= 1.3; full < 60 s)")
    print(f"load average: {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()

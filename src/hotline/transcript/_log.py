"""The storage-backed RFC 9162 log: append entries, answer roots and proofs from O(log n) rows.

Every function takes a SQLAlchemy :class:`~sqlalchemy.Connection` and works inside the
transaction the caller holds, so that a transcript entry commits atomically with the message it
records, and a root and its proof are read from one snapshot. Nothing is cached between calls: the
CLI and a running node may both append to the same SQLite file, and each call sees the store as
it is.

How it is stored (see ``_schema.py`` and docs/transcript.md): the leaf hash of every entry, and the
hash of every perfect subtree above the leaves. Appending ``k`` entries to a log of ``n`` reads the
``popcount(n)`` subtrees of the frontier (at most 63 rows), hashes in memory
(:func:`hotline.core.merkle.append_leaves`) and inserts ``k`` leaves and about ``k`` subtree rows.
A root or proof for any size names at most ~2 * 63 subtrees
(:func:`hotline.core.merkle.inclusion_proof_subtrees` etc.), fetched by primary key in one or two
queries, and folded with :func:`hotline.core.merkle.fold_subtrees`.

Writers are serialized by the store: SQLite takes the write lock at BEGIN IMMEDIATE; on
PostgreSQL :func:`append` takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from hotline.core import merkle
from hotline.errors import InputError, NotFoundError, StorageError
from hotline.store import after_commit
from hotline.store.prepared import InList, Prepared, prepared_insert
from hotline.transcript._schema import transcript_leaves, transcript_nodes
from hotline.transcript.hold import check as check_hold

#: Entries in one :func:`append`: bounds the memory of one call and how long it holds the
#: store's write lock (100,000 entries take well under a second).
MAX_BATCH_ENTRIES = 100_000
#: Length of an entry's ``kind`` (a lowercase word such as "message" or "receipt").
MAX_KIND_LENGTH = 32
#: Length of an entry's ``ref`` (an envelope id or similar; a UUID is 36).
MAX_REF_LENGTH = 128
#: The most entries the log holds: node positions (about twice the size) must fit a signed
#: 64-bit integer.
MAX_LOG_SIZE = 2**62
#: Entries :func:`leaves_by_ref` returns at most.
MAX_LEAVES_PER_REF = 1_000

_KIND = re.compile(r"[a-z][a-z0-9_.-]*")
# Any 64-bit constant that no other part of hotline uses; it names the transcript's append lock.
_PG_APPEND_LOCK = 0x686F746C696E6501  # "hotline" + 0x01
#: ``Connection.info`` key (the DBAPI connection's, kept across its transactions): the log's size
#: and frontier after the last append this connection committed. The log is append-only, so the
#: frontier of a size never changes: while the log's size is still that one, its frontier is
#: taken from here instead of read (two statements less per append). Set only once committed.
_FRONTIER = "hotline.transcript.frontier"


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to append: its bytes (hashed into the log, not stored), what it is and what it
    refers to."""

    data: bytes
    kind: str
    ref: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            raise InputError(f"entry data must be bytes, got {type(self.data).__name__}")
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise InputError(
                f"entry kind must be a lowercase word, got {self.kind!r}", fields={"kind": "format"}
            )
        if len(self.kind) > MAX_KIND_LENGTH:
            raise InputError(f"entry kind is longer than {MAX_KIND_LENGTH} characters")
        if not isinstance(self.ref, str) or not self.ref or not self.ref.isprintable():
            raise InputError("entry ref must be a non-empty printable string")
        if len(self.ref) > MAX_REF_LENGTH:
            raise InputError(f"entry ref is longer than {MAX_REF_LENGTH} characters")


@dataclass(frozen=True, slots=True)
class Leaf:
    """A stored entry: its position, RFC 9162 leaf hash, kind and ref."""

    index: int
    leaf_hash: bytes
    kind: str
    ref: str


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of :func:`append`: entries got indexes ``first_index .. size - 1``."""

    first_index: int
    size: int
    root: bytes
    #: The hashes of the tree's frontier after the append (``merkle.range_subtrees(0, size)``):
    #: where a following append in the same transaction starts (``append(after=...)``).
    frontier: tuple[bytes, ...] = ()


def append(
    conn: Connection, entries: Sequence[NewEntry], *, after: Appended | None = None
) -> Appended:
    """Append ``entries`` to the log in the caller's transaction (which must be open: use
    ``engine.begin()``); the caller's commit makes them durable together with whatever else the
    transaction wrote. O(len(entries) + log n) rows read and written.

    ``after``: what an earlier ``append`` returned in this same transaction, with nothing else
    appended since: the log's size and frontier are taken from it instead of read again, and
    the hold and the lock, checked and taken by that append, hold still (the inbox appends the
    messages of a batch, then the receipt that names their positions).
    """
    if not conn.in_transaction():
        raise InputError("append needs an open transaction (engine.begin()) that the caller owns")
    if len(entries) > MAX_BATCH_ENTRIES:
        raise InputError(
            f"at most {MAX_BATCH_ENTRIES} entries per append, got {len(entries)}",
            fields={"entries": len(entries)},
        )
    for e in entries:
        if not isinstance(e, NewEntry):
            raise InputError(f"entries must be NewEntry, got {type(e).__name__}")
    if entries and after is None:
        # A store that may lack entries a peer saw appends nothing (hold.py): in this
        # transaction, so a refused append leaves nothing of the caller's writes behind.
        check_hold(conn)
    try:
        if after is not None:
            n, frontier = after.size, list(after.frontier)
            if len(frontier) != n.bit_count():
                raise InputError("append(after=...) needs what an earlier append returned")
        else:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPEND_LOCK})
            n = _size(conn)
            known: tuple[int, tuple[bytes, ...]] | None = conn.info.get(_FRONTIER)
            if known is not None and known[0] == n:
                frontier = list(known[1])
            else:
                frontier_ids = merkle.range_subtrees(0, n) if n else []
                stored = _fetch(conn, frontier_ids)
                frontier = [stored[s] for s in frontier_ids]
        if n + len(entries) > MAX_LOG_SIZE:
            raise InputError(f"the transcript holds at most {MAX_LOG_SIZE} entries")
        hashes = [merkle.leaf_hash(e.data) for e in entries]
        grown = merkle.append_leaves(n, frontier, hashes)
        if entries:
            _INSERT_LEAF.executemany(
                conn,
                [
                    {"idx": n + i, "leaf_hash": h, "kind": e.kind, "ref": e.ref}
                    for i, (e, h) in enumerate(zip(entries, hashes, strict=True))
                ],
            )
            nodes = [{"pos": node_position(lv, ix), "hash": h} for lv, ix, h in grown.nodes if lv]
            _INSERT_NODE.executemany(conn, nodes)
    except SQLAlchemyError as e:
        raise StorageError(f"appending to the transcript failed: {e}") from e
    appended = Appended(
        first_index=n, size=grown.size, root=grown.root, frontier=tuple(grown.frontier)
    )
    if entries:
        info = conn.info
        after_commit(conn, lambda: info.__setitem__(_FRONTIER, (appended.size, appended.frontier)))
    return appended


def size(conn: Connection) -> int:
    """The number of entries in the log."""
    try:
        return _size(conn)
    except SQLAlchemyError as e:
        raise StorageError(f"reading the transcript size failed: {e}") from e


def root(conn: Connection, tree_size: int | None = None) -> bytes:
    """``MTH`` of the first ``tree_size`` entries (default: all of them); any past size works."""
    try:
        n = _size(conn)
        if tree_size is None:
            tree_size = n
        _check_size("tree_size", tree_size, n)
        if tree_size == 0:
            return merkle.EMPTY_ROOT
        ids = merkle.range_subtrees(0, tree_size)
        stored = _fetch(conn, ids)
    except SQLAlchemyError as e:
        raise StorageError(f"reading a transcript root failed: {e}") from e
    return merkle.fold_subtrees([stored[s] for s in ids])


def size_and_root(conn: Connection) -> tuple[int, bytes]:
    """The current size and root, read together (what a tree head signs)."""
    try:
        n = _size(conn)
        ids = merkle.range_subtrees(0, n) if n else []
        stored = _fetch(conn, ids)
    except SQLAlchemyError as e:
        raise StorageError(f"reading the transcript head failed: {e}") from e
    return n, merkle.fold_subtrees([stored[s] for s in ids])


def leaf(conn: Connection, index: int) -> Leaf:
    """The entry at ``index``."""
    _check_count("index", index)
    try:
        row = conn.execute(
            select(
                transcript_leaves.c.idx,
                transcript_leaves.c.leaf_hash,
                transcript_leaves.c.kind,
                transcript_leaves.c.ref,
            ).where(transcript_leaves.c.idx == index)
        ).one_or_none()
    except SQLAlchemyError as e:
        raise StorageError(f"reading a transcript entry failed: {e}") from e
    if row is None:
        raise NotFoundError(f"the transcript has no entry {index}", fields={"index": index})
    return Leaf(index=row.idx, leaf_hash=bytes(row.leaf_hash), kind=row.kind, ref=row.ref)


def leaves_by_ref(conn: Connection, ref: str) -> list[Leaf]:
    """The entries recorded for ``ref`` (e.g. an envelope id), oldest first, at most
    :data:`MAX_LEAVES_PER_REF`."""
    if not isinstance(ref, str) or len(ref) > MAX_REF_LENGTH:
        raise InputError(f"ref must be a string of at most {MAX_REF_LENGTH} characters")
    try:
        rows = conn.execute(
            select(
                transcript_leaves.c.idx,
                transcript_leaves.c.leaf_hash,
                transcript_leaves.c.kind,
                transcript_leaves.c.ref,
            )
            .where(transcript_leaves.c.ref == ref)
            .order_by(transcript_leaves.c.idx)
            .limit(MAX_LEAVES_PER_REF)
        ).all()
    except SQLAlchemyError as e:
        raise StorageError(f"reading transcript entries failed: {e}") from e
    return [Leaf(index=r.idx, leaf_hash=bytes(r.leaf_hash), kind=r.kind, ref=r.ref) for r in rows]


def inclusion_proof(conn: Connection, index: int, tree_size: int) -> list[bytes]:
    """``PATH(index, D[tree_size])`` (RFC 9162 §2.1.3.1), leaf to root, for any past size."""
    _check_count("index", index)
    try:
        n = _size(conn)
        _check_size("tree_size", tree_size, n)
        if index >= tree_size:
            raise InputError(
                f"entry {index} is not in a tree of size {tree_size}",
                fields={"index": index, "tree_size": tree_size},
            )
        layout = merkle.inclusion_proof_subtrees(index, tree_size)
        stored = _fetch(conn, (s for element in layout for s in element))
    except SQLAlchemyError as e:
        raise StorageError(f"reading a transcript proof failed: {e}") from e
    return [merkle.fold_subtrees([stored[s] for s in element]) for element in layout]


def consistency_proof(conn: Connection, old_size: int, new_size: int) -> list[bytes]:
    """``PROOF(old_size, D[new_size])`` (RFC 9162 §2.1.4.1); empty if ``old_size`` is 0 or
    equals ``new_size``."""
    _check_count("old_size", old_size)
    try:
        n = _size(conn)
        _check_size("new_size", new_size, n)
        if old_size > new_size:
            raise InputError(
                f"old size {old_size} is larger than new size {new_size}",
                fields={"old_size": old_size, "new_size": new_size},
            )
        layout = merkle.consistency_proof_subtrees(old_size, new_size)
        stored = _fetch(conn, (s for element in layout for s in element))
    except SQLAlchemyError as e:
        raise StorageError(f"reading a transcript proof failed: {e}") from e
    return [merkle.fold_subtrees([stored[s] for s in element]) for element in layout]


# --- Internals ----------------------------------------------------------------------------------

# Prepared once (hotline.store.prepared): an append runs these for every message on the link.
_MAX_IDX = Prepared(select(func.max(transcript_leaves.c.idx)))
_LEAF_HASHES = InList(
    lambda ids: select(transcript_leaves.c.idx, transcript_leaves.c.leaf_hash).where(
        transcript_leaves.c.idx.in_(ids)
    ),
    most=128,
)
_NODE_HASHES = InList(
    lambda ids: select(transcript_nodes.c.pos, transcript_nodes.c.hash).where(
        transcript_nodes.c.pos.in_(ids)
    ),
    most=128,
)
_INSERT_LEAF = prepared_insert(transcript_leaves, "idx", "leaf_hash", "kind", "ref")
_INSERT_NODE = prepared_insert(transcript_nodes, "pos", "hash")


def node_position(level: int, idx: int) -> int:
    """The in-order position of perfect subtree ``(level, idx)``: ``transcript_nodes.pos``."""
    return (idx << (level + 1)) + (1 << level) - 1


def _size(conn: Connection) -> int:
    # The primary key's maximum: one B-tree descent, not a count of the log.
    top = _MAX_IDX.scalar(conn)
    return 0 if top is None else int(top) + 1


def _fetch(conn: Connection, subtrees: Iterable[merkle.Subtree]) -> dict[merkle.Subtree, bytes]:
    """The stored hashes of the given perfect subtrees; a missing one is a damaged store."""
    wanted = set(subtrees)
    leaves = [i for lv, i in wanted if lv == 0]
    nodes = [(lv, i) for lv, i in wanted if lv > 0]
    out: dict[merkle.Subtree, bytes] = {}
    for statement, params in _LEAF_HASHES.chunks(leaves):
        for idx, h in statement.all(conn, params):
            out[(0, int(idx))] = bytes(h)
    if nodes:
        by_pos = {node_position(lv, i): (lv, i) for lv, i in nodes}
        for statement, params in _NODE_HASHES.chunks(list(by_pos)):
            for pos, h in statement.all(conn, params):
                out[by_pos[int(pos)]] = bytes(h)
    if len(out) != len(wanted):
        missing = sorted(wanted - out.keys())
        raise StorageError(
            f"the transcript is missing {len(missing)} stored subtree(s), first {missing[0]}",
            fields={"missing": [list(m) for m in missing[:8]]},
        )
    for key, h in out.items():
        if len(h) != merkle.HASH_SIZE:
            raise StorageError(f"the transcript's hash for subtree {key} is damaged")
    return out


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InputError(f"{name} must be a non-negative integer, got {value!r}")


def _check_size(name: str, value: int, current: int) -> None:
    _check_count(name, value)
    if value > current:
        raise NotFoundError(
            f"the transcript has {current} entries, not {value}",
            fields={name: value, "size": current},
        )


__all__ = [
    "MAX_BATCH_ENTRIES",
    "MAX_KIND_LENGTH",
    "MAX_LEAVES_PER_REF",
    "MAX_LOG_SIZE",
    "MAX_REF_LENGTH",
    "Appended",
    "Leaf",
    "NewEntry",
    "append",
    "consistency_proof",
    "inclusion_proof",
    "leaf",
    "leaves_by_ref",
    "root",
    "size",
    "size_and_root",
]

"""The storage-backed transcript on a real SQLite file: vectors, reference, O(log n), durability."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, event, insert, text
from sqlalchemy.exc import IntegrityError

import hotline.transcript as transcript
from hotline.core import merkle
from hotline.errors import InputError, NotFoundError, StorageError, VerificationError
from hotline.store.db import create_store_engine, migrate, sqlite_url
from hotline.transcript._log import node_position
from hotline.transcript._schema import transcript_leaves, transcript_nodes

VECTOR_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOT_8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
ROOT_5 = bytes.fromhex("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4")
PATH_5_OF_8 = [
    bytes.fromhex(x)
    for x in (
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    )
]
PROOF_6_TO_7 = [
    bytes.fromhex(x)
    for x in (
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    )
]


def open_store(url: str) -> Engine:
    engine = create_store_engine(url)
    migrate(engine)
    return engine


@pytest.fixture
def engine(tmp_path: Path, store_url) -> Iterator[Engine]:
    eng = open_store(store_url(tmp_path / "store.sqlite"))
    yield eng
    eng.dispose()


def entries(data: list[bytes], kind: str = "message", prefix: str = "env") -> list[Any]:
    return [transcript.NewEntry(data=d, kind=kind, ref=f"{prefix}-{i}") for i, d in enumerate(data)]


def datum(i: int) -> bytes:
    return b"envelope %d" % i


def append_in_batches(engine: Engine, data: list[bytes], batches: list[int]) -> None:
    pos = 0
    for count in [*batches, len(data)]:
        chunk = data[pos : pos + count]
        if not chunk:
            continue
        with engine.begin() as conn:
            got = transcript.append(conn, entries(chunk))
        assert got.first_index == pos
        pos += len(chunk)
        assert got.size == pos
        assert got.root == merkle.merkle_root(data[:pos])


# --- Published vectors through the store --------------------------------------------------------


@pytest.mark.parametrize("batches", [[8], [1] * 8, [3, 5], [5, 2, 1], [4, 4]])
def test_published_vectors_from_storage(engine: Engine, batches: list[int]) -> None:
    append_in_batches(engine, VECTOR_LEAVES, batches)
    with engine.connect() as conn:
        assert transcript.size(conn) == 8
        assert transcript.root(conn) == ROOT_8
        assert transcript.root(conn, 5) == ROOT_5
        assert transcript.root(conn, 0) == merkle.EMPTY_ROOT
        assert transcript.size_and_root(conn) == (8, ROOT_8)
        assert transcript.inclusion_proof(conn, 5, 8) == PATH_5_OF_8
        assert transcript.consistency_proof(conn, 6, 7) == PROOF_6_TO_7
        assert transcript.leaf(conn, 3).leaf_hash == merkle.leaf_hash(VECTOR_LEAVES[3])


# --- Properties against the reference -----------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=37), min_size=1, max_size=8))
def test_storage_roots_equal_reference_roots(batches: list[int]) -> None:
    total = sum(batches)
    data = [datum(i) for i in range(total)]
    hashes = [merkle.leaf_hash(d) for d in data]
    # SQLite on both passes: a store per example; the other tests here cover PostgreSQL.
    with tempfile.TemporaryDirectory() as tmp:
        eng = open_store(sqlite_url(Path(tmp) / "store.sqlite"))
        try:
            append_in_batches(eng, data, batches)
            with eng.connect() as conn:
                assert transcript.size(conn) == total
                for n in range(total + 1):
                    assert transcript.root(conn, n) == merkle.root_from_leaf_hashes(hashes[:n])
        finally:
            eng.dispose()


LOG_SIZE = 777


@pytest.fixture(scope="module")
def filled(
    tmp_path_factory: pytest.TempPathFactory, pg_databases
) -> Iterator[tuple[Engine, list[bytes]]]:
    """One store of LOG_SIZE entries appended in random batch sizes."""
    if pg_databases is None:
        url = sqlite_url(tmp_path_factory.mktemp("filled") / "store.sqlite")
    else:
        url = pg_databases.new(for_session=True)
    eng = open_store(url)
    data = [datum(i) for i in range(LOG_SIZE)]
    rng = random.Random(9162)
    batches = []
    left = LOG_SIZE
    while left > 0:
        batches.append(min(left, rng.choice([1, 1, 2, 3, 7, 16, 31, 64, 100])))
        left -= batches[-1]
    append_in_batches(eng, data, batches)
    yield eng, [merkle.leaf_hash(d) for d in data]
    eng.dispose()


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=LOG_SIZE))
    return draw(st.integers(min_value=0, max_value=n - 1)), n


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(index_and_size(), st.data())
def test_every_stored_inclusion_proof_verifies_and_tampering_fails(
    filled: tuple[Engine, list[bytes]], case: tuple[int, int], data: st.DataObject
) -> None:
    eng, hashes = filled
    index, n = case
    with eng.connect() as conn:
        proof = transcript.inclusion_proof(conn, index, n)
        root = transcript.root(conn, n)
    assert proof == merkle.inclusion_proof(hashes[:n], index)
    assert root == merkle.root_from_leaf_hashes(hashes[:n])
    merkle.verify_inclusion(leaf_hash=hashes[index], index=index, size=n, proof=proof, root=root)
    # Another leaf, another index, another size, a changed hash or root: all fail.
    other = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
    alterations: list[dict[str, Any]] = [
        {"leaf_hash": hashes[(index + 1) % LOG_SIZE]},
        {"root": merkle.root_from_leaf_hashes(hashes[: n + 1]) if n < LOG_SIZE else bytes(32)},
        {"size": n + data.draw(st.integers(min_value=1, max_value=n))},
    ]
    if n > 1:
        alterations.append({"index": other})
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=255))
        changed = list(proof)
        changed[i] = bytes(
            b ^ (1 << (bit % 8)) if j == bit // 8 else b for j, b in enumerate(changed[i])
        )
        alterations += [{"proof": changed}, {"proof": proof[:-1]}, {"proof": [*proof, root]}]
    for change in alterations:
        args: dict[str, Any] = {
            "leaf_hash": hashes[index],
            "index": index,
            "size": n,
            "proof": proof,
            "root": root,
        } | change
        if "size" in change and merkle.inclusion_proof_length(index, args["size"]) == len(proof):
            # Same proof shape at another size (a root does not commit to its size; the signed
            # tree head does): the root of that size is what makes it fail.
            args["root"] = (
                merkle.root_from_leaf_hashes(hashes[: args["size"]])
                if (args["size"] <= LOG_SIZE)
                else bytes(32)
            )
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(**args)


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(min_value=0, max_value=LOG_SIZE))
    return draw(st.integers(min_value=0, max_value=new)), new


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(two_sizes(), st.data())
def test_every_stored_consistency_proof_verifies_and_tampering_fails(
    filled: tuple[Engine, list[bytes]], case: tuple[int, int], data: st.DataObject
) -> None:
    eng, hashes = filled
    old, new = case
    with eng.connect() as conn:
        proof = transcript.consistency_proof(conn, old, new)
        old_root, new_root = transcript.root(conn, old), transcript.root(conn, new)
    assert proof == merkle.consistency_proof(hashes[:new], old)
    merkle.verify_consistency(
        old_size=old, new_size=new, old_root=old_root, new_root=new_root, proof=proof
    )
    if old == 0:
        return  # every tree extends the empty one
    forged_old = merkle.root_from_leaf_hashes([*hashes[: old - 1], merkle.leaf_hash(b"forged")])
    alterations: list[dict[str, Any]] = [{"old_root": forged_old}, {"new_root": bytes(32)}]
    if proof:
        i = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        changed = list(proof)
        changed[i] = bytes([changed[i][0] ^ 0x80]) + changed[i][1:]
        alterations += [{"proof": changed}, {"proof": proof[1:]}, {"proof": [*proof, new_root]}]
    for change in alterations:
        args: dict[str, Any] = {
            "old_size": old,
            "new_size": new,
            "old_root": old_root,
            "new_root": new_root,
            "proof": proof,
        } | change
        with pytest.raises(VerificationError):
            merkle.verify_consistency(**args)


# --- O(log n) -----------------------------------------------------------------------------------


class Statements:
    """Counts the statements run on an engine and the keys each asked for."""

    def __init__(self, eng: Engine) -> None:
        self.count = 0
        self.keys = 0
        event.listen(eng, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        parameters = args[3]
        self.count += 1
        if isinstance(parameters, tuple | list):
            self.keys += len(parameters)


def test_reads_are_bounded_by_log_n(filled: tuple[Engine, list[bytes]]) -> None:
    eng, _ = filled
    # At most 2 * log2(n) subtrees per proof, each key one or two bound parameters.
    BOUND = 2 * 2 * (LOG_SIZE - 1).bit_length()
    seen = Statements(eng)
    with eng.connect() as conn:
        transcript.size(conn)  # begins the transaction
        for index in (0, 1, 300, 511, 512, 776):
            seen.count = seen.keys = 0
            transcript.inclusion_proof(conn, index, LOG_SIZE)
            assert seen.count <= 3
            assert seen.keys <= BOUND
        seen.count = seen.keys = 0
        transcript.consistency_proof(conn, 333, LOG_SIZE)
        assert seen.count <= 3
        assert seen.keys <= BOUND
    event.remove(eng, "before_cursor_execute", seen._seen)


def test_a_huge_log_opens_and_appends_from_its_frontier_alone(engine: Engine) -> None:
    """A log of 2**40 + 5 entries, of which only the rows an append and a root need exist:
    a correct answer proves that nothing else is read."""
    size = 2**40 + 5
    frontier_ids = merkle.range_subtrees(0, size)
    frontier = [merkle.leaf_hash(b"subtree %d %d" % s) for s in frontier_ids]
    with engine.begin() as conn:
        for (level, idx), h in zip(frontier_ids, frontier, strict=True):
            if level == 0:
                conn.execute(
                    insert(transcript_leaves),
                    [{"idx": idx, "leaf_hash": h, "kind": "x", "ref": "r"}],
                )
            else:
                conn.execute(
                    insert(transcript_nodes), [{"pos": node_position(level, idx), "hash": h}]
                )
    with engine.connect() as conn:
        assert transcript.size(conn) == size
        assert transcript.root(conn) == merkle.fold_subtrees(frontier)
    new = [b"one", b"two", b"three"]
    expected = merkle.append_leaves(size, frontier, [merkle.leaf_hash(d) for d in new])
    with engine.begin() as conn:
        got = transcript.append(conn, entries(new))
    assert (got.first_index, got.size, got.root) == (size, size + 3, expected.root)
    with engine.connect() as conn:
        assert transcript.root(conn) == expected.root
        proof = transcript.inclusion_proof(conn, size + 2, size + 3)
    merkle.verify_inclusion(
        leaf_hash=merkle.leaf_hash(b"three"),
        index=size + 2,
        size=size + 3,
        proof=proof,
        root=expected.root,
    )


# --- Transactions, concurrency, durability ------------------------------------------------------


def test_append_is_part_of_the_callers_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        transcript.append(conn, entries([b"a", b"b"]))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        transcript.append(conn, entries([b"c"]))
        raise RuntimeError("the message insert failed")
    with engine.connect() as conn:
        assert transcript.size(conn) == 2
        assert transcript.root(conn) == merkle.merkle_root([b"a", b"b"])


def test_append_refuses_a_connection_without_a_transaction(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(InputError):
        transcript.append(conn, entries([b"a"]))


def test_an_empty_append_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        got = transcript.append(conn, [])
    assert (got.first_index, got.size, got.root) == (0, 0, merkle.EMPTY_ROOT)
    with engine.connect() as conn:
        assert transcript.size_and_root(conn) == (0, merkle.EMPTY_ROOT)


def test_two_writers_on_one_file(tmp_path: Path, store_url) -> None:
    """Two engines (as the CLI and the node would be) appending in turn see each other's entries."""
    url = store_url(tmp_path / "store.sqlite")
    first, second = open_store(url), open_store(url)
    try:
        data: list[bytes] = []
        for i in range(20):
            eng = first if i % 3 else second
            chunk = [datum(len(data) + j) for j in range(i % 4 + 1)]
            with eng.begin() as conn:
                got = transcript.append(conn, entries(chunk))
            assert got.first_index == len(data)
            data.extend(chunk)
        with first.connect() as conn:
            assert transcript.root(conn) == merkle.merkle_root(data)
    finally:
        first.dispose()
        second.dispose()


WRITER = """
import sys
from pathlib import Path
import hotline.transcript as t
from hotline.store.db import create_store_engine
engine = create_store_engine(sys.argv[1])
for i in range(40):
    with engine.begin() as conn:
        t.append(conn, [t.NewEntry(data=b"child %d" % i, kind="message", ref="child")])
engine.dispose()
"""


def test_concurrent_process_appends_keep_the_tree_whole(
    engine: Engine, tmp_path: Path, store_url
) -> None:
    child = subprocess.Popen([sys.executable, "-c", WRITER, store_url(tmp_path / "store.sqlite")])
    try:
        for i in range(40):
            with engine.begin() as conn:
                transcript.append(conn, [transcript.NewEntry(b"parent %d" % i, "message", "p")])
    finally:
        assert child.wait(timeout=120) == 0
    with engine.connect() as conn:
        n = transcript.size(conn)
        stored = [transcript.leaf(conn, i).leaf_hash for i in range(n)]
        assert n == 80
        assert transcript.root(conn) == merkle.root_from_leaf_hashes(stored)
        for old in range(0, n + 1, 7):
            merkle.verify_consistency(
                old_size=old,
                new_size=n,
                old_root=merkle.root_from_leaf_hashes(stored[:old]),
                new_root=transcript.root(conn),
                proof=transcript.consistency_proof(conn, old, n),
            )
    expected = {merkle.leaf_hash(b"child %d" % i) for i in range(40)} | {
        merkle.leaf_hash(b"parent %d" % i) for i in range(40)
    }
    assert set(stored) == expected


def test_committed_entries_survive_reopening(tmp_path: Path, store_url) -> None:
    path = store_url(tmp_path / "store.sqlite")
    eng = open_store(path)
    with eng.begin() as conn:
        transcript.append(conn, entries(VECTOR_LEAVES))
    eng.dispose()
    again = open_store(path)
    try:
        with again.connect() as conn:
            assert transcript.root(conn) == ROOT_8
    finally:
        again.dispose()


# --- Append-only, errors, schema ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE transcript_leaves SET kind = 'other'",
        "DELETE FROM transcript_leaves",
        "UPDATE transcript_nodes SET hash = hash",
        "DELETE FROM transcript_nodes",
    ],
)
def test_the_tables_refuse_rewrites(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        transcript.append(conn, entries([b"a", b"b", b"c"]))
    with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
        conn.execute(text(sql))


def test_leaf_lookup(engine: Engine) -> None:
    with engine.begin() as conn:
        transcript.append(conn, [transcript.NewEntry(b"m", "message", "id-1")])
        transcript.append(conn, [transcript.NewEntry(b"r", "receipt.delivered", "id-1")])
    with engine.connect() as conn:
        found = transcript.leaves_by_ref(conn, "id-1")
        assert [(x.index, x.kind) for x in found] == [(0, "message"), (1, "receipt.delivered")]
        assert transcript.leaf(conn, 1) == found[1]
        assert transcript.leaves_by_ref(conn, "nothing") == []
        with pytest.raises(NotFoundError):
            transcript.leaf(conn, 2)


def test_requests_beyond_the_log_are_errors(engine: Engine) -> None:
    with engine.begin() as conn:
        transcript.append(conn, entries([b"a", b"b", b"c"]))
    with engine.connect() as conn:
        with pytest.raises(NotFoundError):
            transcript.root(conn, 4)
        with pytest.raises(NotFoundError):
            transcript.inclusion_proof(conn, 0, 4)
        with pytest.raises(NotFoundError):
            transcript.consistency_proof(conn, 1, 4)
        with pytest.raises(InputError):
            transcript.inclusion_proof(conn, 3, 3)
        with pytest.raises(InputError):
            transcript.inclusion_proof(conn, -1, 3)
        with pytest.raises(InputError):
            transcript.consistency_proof(conn, 3, 2)
        with pytest.raises(InputError):
            transcript.leaf(conn, -1)
        assert transcript.consistency_proof(conn, 3, 3) == []
        assert transcript.consistency_proof(conn, 0, 3) == []


@pytest.mark.parametrize(
    ("data", "kind", "ref"),
    [
        ("text", "message", "r"),
        (b"x", "Message", "r"),
        (b"x", "", "r"),
        (b"x", "m" * 33, "r"),
        (b"x", "message", ""),
        (b"x", "message", "r" * 129),
        (b"x", "message", "line\nbreak"),
    ],
)
def test_bad_entries_are_input_errors(data: Any, kind: str, ref: str) -> None:
    with pytest.raises(InputError):
        transcript.NewEntry(data=data, kind=kind, ref=ref)


def test_batch_limit(engine: Engine) -> None:
    one = transcript.NewEntry(b"x", "message", "r")
    with engine.begin() as conn, pytest.raises(InputError):
        transcript.append(conn, [one] * (transcript.MAX_BATCH_ENTRIES + 1))


def test_a_damaged_store_is_a_storage_error(engine: Engine) -> None:
    with engine.begin() as conn:
        transcript.append(conn, entries([b"a", b"b", b"c", b"d"]))
        if conn.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER transcript_nodes_no_delete"))
        else:
            conn.execute(text("ALTER TABLE transcript_nodes DISABLE TRIGGER USER"))
        conn.execute(text("DELETE FROM transcript_nodes WHERE pos = 3"))  # (level 2, idx 0)
    with engine.connect() as conn, pytest.raises(StorageError, match="missing"):
        transcript.root(conn)


def test_migration_matches_the_tables(engine: Engine) -> None:
    ours = MetaData()
    transcript_leaves.to_metadata(ours)
    transcript_nodes.to_metadata(ours)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), ours)
    relevant = [d for d in diff if "transcript" in repr(d)]
    assert relevant == []


def test_node_positions_are_in_order_and_odd() -> None:
    # Leaf i sits at 2i; the subtree over leaves [a, b) sits between its two halves.
    assert [node_position(1, i) for i in range(4)] == [1, 5, 9, 13]
    assert [node_position(2, i) for i in range(2)] == [3, 11]
    assert node_position(3, 0) == 7
    big = transcript.MAX_LOG_SIZE
    top = (big - 1).bit_length() - 1
    assert node_position(top, 0) < 2**63
    assert node_position(1, big // 2 - 1) < 2**63


def test_public_surface() -> None:
    for name in transcript.__all__:
        assert hasattr(transcript, name), name


@pytest.mark.parametrize(
    ("before", "first", "second"), [(0, 1, 1), (0, 5, 1), (3, 8, 1), (13, 32, 3)]
)
def test_an_append_after_another_in_one_transaction_continues_its_tree(
    engine: Engine, before: int, first: int, second: int
) -> None:
    """``append(after=...)`` starts from the earlier append's size and frontier instead of the
    store's (the inbox's receipt entry after a batch's messages): the same tree either way."""
    data = [datum(i) for i in range(before + first + second)]
    with engine.begin() as conn:
        if before:
            transcript.append(conn, entries(data[:before], prefix="old"))
    with engine.begin() as conn:
        a = transcript.append(conn, entries(data[before : before + first]))
        b = transcript.append(conn, entries(data[before + first :], prefix="next"), after=a)
    assert (a.first_index, a.size, b.first_index, b.size) == (
        before,
        before + first,
        before + first,
        len(data),
    )
    with engine.connect() as conn:
        assert b.root == transcript.root(conn) == merkle.merkle_root(data)
        assert a.root == transcript.root(conn, a.size)
    with pytest.raises(InputError), engine.begin() as conn:
        transcript.append(conn, entries([b"x"], prefix="bad"), after=transcript.Appended(0, 3, b""))

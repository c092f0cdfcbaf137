"""Proving many of a peer's heads with one consistency chain (docs/protocol.md §7.6a, §11.3):
the chain holds exactly when every head is a prefix of the largest, a forked head breaks it,
and the request's sizes and the reply are parsed strictly."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

import hotline.transcript as transcript
from hotline.core import merkle
from hotline.errors import InputError, VerificationError, WireError
from hotline.node.app import create_app
from hotline.node.home import NodeHome
from hotline.node.runtime import (
    CHAIN_LIMIT,
    Node,
    decode_chain_reply,
    parse_chain_sizes,
)
from hotline.store.db import create_store_engine, migrate
from hotline.transcript.heads import (
    check_chain,
    mark_all_checked,
    mark_checked,
    next_check,
    record_peer_head,
    unchecked_chain,
)

LOG_SIZE = 40


@pytest.fixture
def engine(tmp_path: Path, store_url) -> Iterator[Engine]:
    """One store holding a log of LOG_SIZE entries (the "peer's" log) and the heads kept of it."""
    eng = create_store_engine(store_url(tmp_path / "store.sqlite"))
    migrate(eng)
    with eng.begin() as conn:
        transcript.append(
            conn,
            [
                transcript.NewEntry(data=b"entry %d" % i, kind="message", ref=f"m-{i}")
                for i in range(LOG_SIZE)
            ],
        )
    yield eng
    eng.dispose()


def _keep(engine: Engine, size: int, root: bytes | None = None) -> None:
    with engine.begin() as conn:
        record_peer_head(
            conn,
            peer="moscow",
            size=size,
            root=transcript.root(conn, size) if root is None else root,
            kind="tree-head",
            evidence=b"signed statement",
            now_us=1,
        )


def _take_first_head(engine: Engine, size: int) -> None:
    """Keep the head of ``size`` as the first one ever: taken on first use, the baseline."""
    _keep(engine, size)
    with engine.begin() as conn:
        pair = next_check(conn, "moscow")
        assert pair is not None and pair[0] is None
        mark_checked(conn, pair[1].id, consistent=True)


def _proofs(engine: Engine, sizes: list[int]) -> list[list[bytes]]:
    with engine.connect() as conn:
        return [transcript.consistency_proof(conn, a, b) for a, b in itertools.pairwise(sizes)]


def test_a_chain_proves_every_head_whatever_order_they_arrived_in(engine: Engine) -> None:
    _take_first_head(engine, 12)
    for size in (30, 5, 17, 9, 40):  # later and earlier sizes than the baseline, out of order
        _keep(engine, size)
    with engine.connect() as conn:
        chain = unchecked_chain(conn, "moscow", CHAIN_LIMIT)
    assert chain is not None
    assert [h.size for h in chain] == [5, 9, 12, 17, 30, 40]
    check_chain(chain, _proofs(engine, [h.size for h in chain]))
    with engine.begin() as conn:
        mark_all_checked(conn, [h.id for h in chain if h.checked == 0])
    with engine.connect() as conn:
        assert next_check(conn, "moscow") is None
        assert unchecked_chain(conn, "moscow", CHAIN_LIMIT) is None


def test_a_forked_head_breaks_the_chain(engine: Engine) -> None:
    _take_first_head(engine, 10)
    other_log = [b"forked %d" % i for i in range(20)]
    _keep(engine, 20, root=merkle.merkle_root(other_log))  # another history of size 20
    _keep(engine, 30)
    with engine.connect() as conn:
        chain = unchecked_chain(conn, "moscow", CHAIN_LIMIT)
    assert chain is not None and [h.size for h in chain] == [10, 20, 30]
    with pytest.raises(VerificationError):
        check_chain(chain, _proofs(engine, [10, 20, 30]))
    # Proofs for another chain, or too few, prove nothing either.
    with pytest.raises(VerificationError):
        check_chain(chain, _proofs(engine, [10, 30]))


def test_the_chain_is_capped(engine: Engine) -> None:
    _take_first_head(engine, 1)
    for size in range(2, LOG_SIZE + 1):
        _keep(engine, size)
    with engine.connect() as conn:
        chain = unchecked_chain(conn, "moscow", 8)
    assert chain is not None and [h.size for h in chain] == list(range(1, 9))


TOO_LONG = ",".join(str(i) for i in range(CHAIN_LIMIT + 1))

increasing = st.lists(
    st.integers(min_value=0, max_value=10**17), min_size=2, max_size=CHAIN_LIMIT, unique=True
).map(sorted)


@given(increasing)
def test_chain_sizes_round_trip(sizes: list[int]) -> None:
    assert parse_chain_sizes(",".join(map(str, sizes))) == sizes


@given(st.text(max_size=60))
def test_chain_sizes_parse_strictly_or_refuse(text: str) -> None:
    try:
        sizes = parse_chain_sizes(text)
    except InputError:
        return
    assert sizes == [int(part) for part in text.split(",")]
    assert text.isascii() and set(text) <= set("0123456789,")
    assert all(a < b for a, b in itertools.pairwise(sizes))
    assert 2 <= len(sizes) <= CHAIN_LIMIT


@pytest.mark.parametrize(
    "text",
    ["", "5", "5,5", "9,5", "1, 2", "1,+2", "1,-2", "1,2,", "0x1,2", "1,٣", "1,1", TOO_LONG],
)
def test_bad_chain_sizes_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_chain_sizes(text)


def test_a_chain_reply_must_answer_the_question() -> None:
    good = b'{"sizes":[1,2],"proofs":[[]]}'
    assert decode_chain_reply(good, [1, 2]) == [[]]
    for bad in (
        b'{"sizes":[1,3],"proofs":[[]]}',  # other sizes
        b'{"sizes":[1,2],"proofs":[]}',  # a proof missing
        b'{"sizes":[1,2],"proofs":[["AAAA"]]}',  # not a 32-byte hash
        b'{"sizes":[1,2],"proofs":[[]],"extra":1}',
        b"[]",
    ):
        with pytest.raises(WireError):
            decode_chain_reply(bad, [1, 2])


def test_the_endpoint_proves_a_chain_of_its_own_log(tmp_path: Path) -> None:
    home = NodeHome.init(
        tmp_path / "m", name="moscow", listen="127.0.0.1:1", display_names={"en": "M"}
    )
    try:
        with home.store.write() as conn:
            transcript.append(
                conn,
                [
                    transcript.NewEntry(data=b"e %d" % i, kind="message", ref=f"m-{i}")
                    for i in range(9)
                ],
            )
            roots = {s: transcript.root(conn, s) for s in (2, 5, 9)}

        async def run() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=create_app(Node(home)))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return [
                    await client.get("/v1/transcript/consistency-chain", params={"sizes": s})
                    for s in ("2,5,9", "2,5,10", "5,2", "2")
                ]

        ok, beyond, decreasing, single = asyncio.run(run())
        assert ok.status_code == 200, ok.text
        proofs = decode_chain_reply(ok.content, [2, 5, 9])
        for (a, b), proof in zip(itertools.pairwise([2, 5, 9]), proofs, strict=True):
            merkle.verify_consistency(
                old_size=a, new_size=b, old_root=roots[a], new_root=roots[b], proof=proof
            )
        assert beyond.status_code == 404 and beyond.json()["error"]["code"] == "not_found"
        for refused in (decreasing, single):
            assert refused.status_code == 422
            assert refused.json()["error"]["code"] == "invalid_input"
    finally:
        home.close()

"""An older tree head of a node, replayed to its witness (seen in an earlier cosign request),
must not make the witness accuse the honest node of equivocation (threat model N14); a head
that contradicts one the witness cosigned still does (W1)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.core.merkle import consistency_proof, leaf_hash, root_from_leaf_hashes
from hotline.core.treehead import sign_tree_head
from hotline.errors import ErrorCode, VerificationError
from hotline.node.home import NodeHome
from hotline.node.runtime import Node
from hotline.store.schema import security_events

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)


@pytest.fixture
def witness_and_node(tmp_path: Path):
    helsinki = NodeHome.init(
        tmp_path / "helsinki",
        name="helsinki",
        listen="127.0.0.1:1",
        display_names={"en": "Helsinki"},
        role="witness",
    )
    washington = NodeHome.init(
        tmp_path / "washington", name="washington", listen="127.0.0.1:2", display_names={"en": "W"}
    )
    card = washington.card(NOW)
    helsinki.add_peer(card, card.fingerprint, NOW)
    yield Node(helsinki), washington
    helsinki.close()
    washington.close()


def _events(node: Node) -> list[tuple[str, str]]:
    with node.store.read() as conn:
        rows = conn.execute(select(security_events.c.code, security_events.c.detail))
        return [(r.code, r.detail) for r in rows]


def test_a_replayed_older_head_is_refused_without_accusing_the_node(witness_and_node) -> None:
    witness, washington = witness_and_node
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(5)]

    def head(size: int, hashes: list[bytes] = leaves) -> bytes:
        root = root_from_leaf_hashes(hashes[:size])
        return sign_tree_head(washington.identity, size=size, root=root, time=NOW).statement

    def cosign(statement: bytes, old_size: int, proof: list[bytes] | None = None) -> None:
        witness.cosign(log="washington", tree_head=statement, old_size=old_size, proof=proof or [])

    cosign(head(2), 0)
    cosign(head(4), 2, consistency_proof(leaves[:4], 2))
    assert _events(witness) == []

    # Heads of sizes 2 (cosigned) and 3 (never shown to us), replayed with the witness's size.
    for size in (2, 3):
        with pytest.raises(VerificationError) as refused:
            cosign(head(size), 4)
        assert refused.value.code == ErrorCode.BAD_PROOF
    events = _events(witness)
    assert [code for code, _ in events] == ["replay_conflict", "replay_conflict"]
    assert "older head of size 2" in events[0][1]

    # A head of size 2 with another root than the one cosigned: the node signed two histories.
    forked = [leaf_hash(b"another entry"), *leaves[1:]]
    with pytest.raises(VerificationError):
        cosign(head(2, forked), 4)
    assert [code for code, _ in _events(witness)][-1] == "equivocation"

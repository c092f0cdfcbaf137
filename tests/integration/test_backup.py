"""hotline backup and hotline restore, on whichever engine the suite runs (both in make test)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from node_waits import wait_for
from sqlalchemy import delete, func, select

from hotline import transcript
from hotline.cli import main
from hotline.core import merkle
from hotline.core.keys import Purpose, verify_statement
from hotline.core.treehead import verify_tree_head
from hotline.node.home import NodeHome
from hotline.store.messages import get_message
from hotline.store.schema import link_events, messages, security_events
from hotline.transcript import hold
from hotline.transcript.heads import largest_peer_head, peer_heads
from hotline.transcript.recovered import recovered_statements

pytestmark = pytest.mark.integration


def _send(capsys, home: NodeHome, to: str, text: str) -> str:
    capsys.readouterr()
    assert main(["send", "--dir", str(home.dir), "--to", to, "--text", text, "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["id"])


def _delivered(home: NodeHome, message_id: str) -> bool:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    return view is not None and view.state.value in ("delivered", "acknowledged", "answered")


def _exchange(capsys, w: NodeHome, m: NodeHome, n: int, tag: str) -> list[str]:
    ids = [_send(capsys, w, "moscow", f"{tag} w{i}") for i in range(n)]
    ids += [_send(capsys, m, "washington", f"{tag} m{i}") for i in range(n)]
    for message_id in ids[:n]:
        wait_for(lambda i=message_id: _delivered(w, i), 30, f"{message_id} delivered")
    for message_id in ids[n:]:
        wait_for(lambda i=message_id: _delivered(m, i), 30, f"{message_id} delivered")
    return ids


def _summary(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]


def _hold(home: NodeHome) -> hold.Hold | None:
    with home.store.read() as conn:
        return hold.current(conn)


def _codes(home: NodeHome) -> list[str]:
    with home.store.read() as conn:
        return [str(r[0]) for r in conn.execute(select(security_events.c.code))]


def _log_size(home: NodeHome) -> int:
    with home.store.read() as conn:
        return transcript.size(conn)


def _largest_head_held(home: NodeHome, peer: str) -> int:
    with home.store.read() as conn:
        head = largest_peer_head(conn, peer)
    return 0 if head is None else head.size


def test_a_restored_store_verifies_and_agrees_with_the_peer(linked_nodes, tmp_path, capsys):
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    ids = _exchange(capsys, w, m, 3, "before")
    backup = tmp_path / "washington.backup"

    # Taken while the node runs.
    taken = _summary(capsys, "backup", "--dir", str(w.dir), "--out", str(backup))
    assert taken["peers"]["moscow"] == {"out_seq": 3, "in_seq": 3}
    assert taken["transcript_size"] > 0

    # Refused while the node runs: its store must not change under it.
    assert main(["restore", str(backup), "--dir", str(w.dir)]) == 2

    w_node.stop()
    w.close()
    restored = _summary(capsys, "restore", str(backup), "--dir", str(w.dir))
    assert restored == taken
    # On hold until moscow has shown that it holds nothing of ours beyond the backup.
    held = _hold(w)
    assert held is not None and held.reason == hold.RESTORED
    w_node.start()
    wait_for(lambda: _hold(w) is None, 30, "moscow's heartbeat to confirm the restored store")
    assert "log_behind" not in _codes(w)

    with w.store.read() as conn:
        for message_id in ids:
            assert get_message(conn, message_id, "washington") is not None
    # The peer's tree heads still match ours, every statement is in both logs with the same bytes.
    assert main(["audit", "check", "--dir", str(w.dir), "--peer", "moscow"]) == 0
    bundle = tmp_path / "bundle.json"
    export = ["audit", "export", "--dir", str(w.dir), "--peer", "moscow", "--out", str(bundle)]
    assert main(export) == 0
    assert main(["audit", "verify", str(bundle), "--workers", "1"]) == 0
    # And the link goes on.
    _exchange(capsys, w, m, 1, "after")


def test_a_lost_tail_is_named_exactly_and_nothing_forks_until_a_newer_store_is_back(
    linked_nodes, tmp_path, capsys
):
    """washington is restored from a backup older than its last activity: moscow holds its
    signed heads beyond the restored log and two of its messages. washington says exactly what
    is missing (log_behind), appends nothing (no send, no receipt: no fork, no reused sequence
    number), and moscow raises no equivocation. A newer backup restored brings the link back."""
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    _exchange(capsys, w, m, 1, "before")
    old = tmp_path / "old.backup"
    taken = _summary(capsys, "backup", "--dir", str(w.dir), "--out", str(old))
    size_at_backup = taken["transcript_size"]
    _exchange(capsys, w, m, 2, "lost")  # washington's seq 2 and 3 reach moscow, then are lost
    # moscow holds a signed head of washington's log beyond the backup (heartbeats carry them).
    wait_for(lambda: _largest_head_held(m, "washington") == _log_size(w), 30, "moscow's head")
    held_size = _largest_head_held(m, "washington")
    assert held_size > size_at_backup
    newer = tmp_path / "newer.backup"
    _summary(capsys, "backup", "--dir", str(w.dir), "--out", str(newer))

    w_node.stop()
    w.close()
    _summary(capsys, "restore", str(old), "--dir", str(w.dir))
    w_node.start()
    wait_for(lambda: "log_behind" in _codes(w), 30, "washington's log_behind alarm")
    state = _hold(w)
    assert state is not None and state.reason == hold.LOST_TAIL
    with w.store.read() as conn:
        (detail,) = conn.execute(
            select(security_events.c.detail).where(security_events.c.code == "log_behind")
        ).scalars()
    # Exactly what is missing: the log's entries and the sequence numbers.
    assert f"our signed tree head of size {held_size}" in detail
    assert f"this store's log has {size_at_backup} entries" in detail
    assert f"entries {size_at_backup}..{held_size - 1} are missing (counted from 0)" in detail
    assert "our messages seq 2..3 to moscow are missing here" in detail
    assert "restore a newer backup" in detail

    # Nothing is appended: a send is refused with its code (API and CLI), and moscow's new
    # message is not taken in (moscow keeps it and retries).
    with w_node.api() as api:
        refused = api.post("/api/v1/messages", json={"to": "moscow", "text": "after the restore"})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "transcript_held"
    capsys.readouterr()
    assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", "again"]) == 8
    assert "transcript" in capsys.readouterr().err.lower()
    waiting = _send(capsys, m, "washington", "while washington is on hold")
    time.sleep(3 * m.config.heartbeat_interval_s)  # heartbeats and retries come and go
    assert not _delivered(m, waiting)
    assert _log_size(w) == size_at_backup
    with w.store.read() as conn:
        assert (
            conn.execute(
                select(func.max(messages.c.seq)).where(messages.c.direction == "out")
            ).scalar_one()
            == 1
        )
    # No fork reached moscow: no head of another history, no reused sequence number.
    assert "equivocation" not in _codes(m)
    assert "sequence_reused" not in _codes(m)
    assert _largest_head_held(m, "washington") == held_size

    # The operator restores the newer backup: moscow confirms it, and the link goes on.
    w_node.stop()
    w.close()
    _summary(capsys, "restore", str(newer), "--dir", str(w.dir))
    w_node.start()
    wait_for(lambda: _hold(w) is None, 30, "moscow's confirmation of the newer store")
    wait_for(lambda: _delivered(m, waiting), 30, "moscow's waiting message delivered")
    _exchange(capsys, w, m, 1, "after")
    assert main(["audit", "check", "--dir", str(w.dir), "--peer", "moscow"]) == 0
    assert "equivocation" not in _codes(m) and "equivocation" not in _codes(w)


def _recovered(capsys, home: NodeHome) -> dict:
    capsys.readouterr()
    assert main(["recovered", "--dir", str(home.dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _link_events(home: NodeHome, kind: str) -> list[str]:
    with home.store.read() as conn:
        return [
            str(r[0])
            for r in conn.execute(select(link_events.c.detail).where(link_events.c.kind == kind))
        ]


def test_a_lost_tail_is_recovered_from_the_peer_as_verified_evidence(
    linked_nodes, tmp_path, capsys
):
    """washington is restored from a backup older than two messages each way. It stays on hold
    (no fork), and fetches from moscow, as evidence kept apart from its transcript, both its own
    lost messages (moscow holds them, signed by washington) and moscow's it had receipted
    (moscow will not send them again): each signed by its author and proved in moscow's log."""
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    _exchange(capsys, w, m, 1, "before")
    old = tmp_path / "old.backup"
    size_at_backup = _summary(capsys, "backup", "--dir", str(w.dir), "--out", str(old))[
        "transcript_size"
    ]
    lost = _exchange(capsys, w, m, 2, "lost")  # washington's seq 2, 3 and moscow's seq 2, 3
    wait_for(lambda: _largest_head_held(m, "washington") == _log_size(w), 30, "moscow's head")

    w_node.stop()
    w.close()
    _summary(capsys, "restore", str(old), "--dir", str(w.dir))
    assert _recovered(capsys, w)["recovered"] == []
    w_node.start()
    wait_for(lambda: "log_behind" in _codes(w), 30, "washington's log_behind alarm")
    wait_for(lambda: len(_recovered(capsys, w)["recovered"]) == 4, 60, "the lost tail recovered")
    shown = _recovered(capsys, w)
    # The hold stays (nothing enters washington's transcript), and says so.
    assert shown["hold"]["reason"] == hold.LOST_TAIL
    assert "hotline recovered" in shown["hold"]["detail"]
    assert _log_size(w) == size_at_backup
    by_key = {(r["direction"], r["seq"]): r for r in shown["recovered"]}
    assert set(by_key) == {("out", 2), ("out", 3), ("in", 2), ("in", 3)}
    assert [by_key[("out", s)]["body"]["text"] for s in (2, 3)] == ["lost w0", "lost w1"]
    assert [by_key[("in", s)]["body"]["text"] for s in (2, 3)] == ["lost m0", "lost m1"]
    assert {r["id"] for r in shown["recovered"]} == set(lost)
    # The link event says what was recovered; the operator API shows the same rows.
    (event,) = _link_events(w, "tail_recovered")
    assert "our messages to moscow seq 2..3" in event
    assert "moscow's messages to us seq 2..3" in event
    with w_node.api() as api:
        answered = api.get("/api/v1/recovered", params={"peer": "moscow"})
    assert answered.status_code == 200
    assert answered.json()["recovered"] == shown["recovered"]
    # The text tour shows each one, verified.
    capsys.readouterr()
    assert main(["recovered", "--dir", str(w.dir)]) == 0
    text = capsys.readouterr().out
    assert "washington -> moscow seq 2" in text and "moscow -> washington seq 3" in text
    assert "lost m1" in text and "verified: signed by" in text

    # Verified again here, from the stored rows alone: each statement's signature by its author
    # (moscow's card key; washington's own key), its leaf in moscow's log under moscow's signed
    # head, which washington keeps with moscow's other heads.
    m_card = w.peer_cards()["moscow"]
    with w.store.read() as conn:
        rows = list(conn.execute(select(recovered_statements)))
        heads = {h.size: h for h in peer_heads(conn, "moscow")}
    for row in rows:
        author = m_card.signing_key if row.direction == "in" else w.identity.signing.public
        purpose = Purpose.MESSAGE if row.kind == "message" else Purpose.RECEIPT
        verify_statement(bytes(row.signed), purpose, author)
        head = verify_tree_head(heads[row.tree_size].evidence, m_card.signing_key, log="moscow")
        assert head.root.hex() == row.tree_root
        merkle.verify_inclusion(
            leaf_hash=merkle.leaf_hash(bytes(row.signed)),
            index=int(row.leaf_index),
            size=head.size,
            proof=merkle.decode_proof(bytes(row.proof)),
            root=head.root,
        )
    # Nothing forked: moscow saw no other history of washington's log and no reused number.
    assert "equivocation" not in _codes(m) and "equivocation" not in _codes(w)
    assert "sequence_reused" not in _codes(m)
    # Evidence is append-only.
    with pytest.raises(Exception, match="append-only"), w.store.write() as conn:
        conn.execute(delete(recovered_statements))


def test_restore_refuses_what_is_not_a_backup_of_this_engine(tmp_path: Path, capsys) -> None:
    home = NodeHome.init(tmp_path / "n", name="washington", listen="127.0.0.1:1", display_names={})
    junk = tmp_path / "junk.backup"
    junk.write_bytes(b"not a backup at all")
    assert main(["restore", str(junk), "--dir", str(home.dir)]) == 2
    assert "not a hotline backup" in capsys.readouterr().err
    other = tmp_path / "other.backup"
    # A backup of the other engine: a pg_dump archive on SQLite, a SQLite file on PostgreSQL.
    on_pg = home.store_url.startswith("postgresql")
    other.write_bytes(b"SQLite format 3\x00" + bytes(100) if on_pg else b"PGDMP" + bytes(100))
    assert main(["restore", str(other), "--dir", str(home.dir)]) == 2
    assert "backup; this node's store is not" in capsys.readouterr().err
    home.close()

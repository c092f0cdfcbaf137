"""hotline backup and hotline restore, on whichever engine the suite runs (both in make test)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from node_waits import wait_for
from sqlalchemy import func, select

from hotline import transcript
from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.store.messages import get_message
from hotline.store.schema import messages, security_events
from hotline.transcript import hold
from hotline.transcript.heads import largest_peer_head

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

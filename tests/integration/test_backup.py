"""hotline backup and hotline restore, on whichever engine the suite runs (both in make test)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.store.messages import get_message
from hotline.store.schema import security_events

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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
        _wait(lambda i=message_id: _delivered(w, i), 30, f"{message_id} delivered")
    for message_id in ids[n:]:
        _wait(lambda i=message_id: _delivered(m, i), 30, f"{message_id} delivered")
    return ids


def _summary(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]


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
    w_node.start()

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


def test_what_came_after_the_backup_is_named_not_silently_reused(linked_nodes, tmp_path, capsys):
    w_node = linked_nodes["washington"]
    w, m = w_node.home, linked_nodes["moscow"].home
    _exchange(capsys, w, m, 1, "before")
    backup = tmp_path / "washington.backup"
    _summary(capsys, "backup", "--dir", str(w.dir), "--out", str(backup))
    _exchange(capsys, w, m, 2, "lost")  # washington's seq 2 and 3 reach moscow, then are lost

    w_node.stop()
    w.close()
    restored = _summary(capsys, "restore", str(backup), "--dir", str(w.dir))
    assert restored["peers"]["moscow"] == {"out_seq": 1, "in_seq": 1}
    w_node.start()

    # The next message would take seq 2 again, which moscow already holds: moscow refuses it and
    # says so, rather than deliver other words under a number it has.
    _send(capsys, w, "moscow", "after the restore")

    def refused() -> bool:
        with m.store.read() as conn:
            codes = {r[0] for r in conn.execute(select(security_events.c.code))}
        return "sequence_reused" in codes

    _wait(refused, 30, "moscow's sequence_reused alarm")


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

"""Offline transfer: a courier carries envelopes one way and the receipts back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.store.messages import get_message

NOW = datetime.now(UTC)


def _run(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def _state(home: NodeHome, message_id: str) -> str:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    assert view is not None
    return view.state.value


def test_there_and_back_again_exactly_once(pair, capsys, tmp_path):
    w, m = pair["washington"], pair["moscow"]
    ids = [
        _run(capsys, "send", "--dir", str(w.dir), "--to", "moscow", "--text", f"m{i}")[1]["id"]
        for i in range(3)
    ]
    outgoing, reply = tmp_path / "to-moscow.hotline", tmp_path / "to-washington.hotline"
    code, exported = _run(
        capsys, "offline", "export", str(outgoing), "--dir", str(w.dir), "--to", "moscow"
    )
    assert code == 0 and exported["envelopes"] == 3
    code, imported = _run(
        capsys,
        "offline",
        "import",
        str(outgoing),
        "--dir",
        str(m.dir),
        "--receipts-out",
        str(reply),
    )
    assert code == 0 and imported["accepted"] == 3 and imported["receipts_written"] == 1
    # The courier brings the same file twice: nothing is delivered twice, the receipt comes again.
    code, again = _run(
        capsys,
        "offline",
        "import",
        str(outgoing),
        "--dir",
        str(m.dir),
        "--receipts-out",
        str(tmp_path / "again.hotline"),
    )
    assert code == 0 and again["accepted"] == 0 and again["duplicates"] == 3
    assert {_state(w, i) for i in ids} <= {"sent"}
    code, back = _run(capsys, "offline", "import", str(reply), "--dir", str(w.dir))
    assert code == 0 and back["receipts_applied"] == 1
    assert {_state(w, i) for i in ids} == {"delivered"}
    code, exported = _run(
        capsys, "offline", "export", str(outgoing), "--dir", str(w.dir), "--to", "moscow"
    )
    assert exported["envelopes"] == 0


def test_a_damaged_file_is_refused_and_changes_nothing(pair, capsys, tmp_path):
    w, m = pair["washington"], pair["moscow"]
    _run(capsys, "send", "--dir", str(w.dir), "--to", "moscow", "--text", "x")
    outgoing = tmp_path / "to-moscow.hotline"
    _run(capsys, "offline", "export", str(outgoing), "--dir", str(w.dir), "--to", "moscow")
    data = bytearray(outgoing.read_bytes())
    data[-10] ^= 0xFF
    outgoing.write_bytes(bytes(data))
    code, result = _run(
        capsys,
        "offline",
        "import",
        str(outgoing),
        "--dir",
        str(m.dir),
        "--receipts-out",
        str(tmp_path / "r.hotline"),
    )
    assert code == 4 and result["accepted"] == 0
    assert result["rejected"][0]["code"] == "decrypt_failed"
    truncated = tmp_path / "truncated.hotline"
    truncated.write_bytes(bytes(data[:100]))
    assert main(["offline", "import", str(truncated), "--dir", str(m.dir)]) == 3

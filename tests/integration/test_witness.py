"""A neutral witness cosigns each node's tree heads and catches a node that rewrites its log."""

from __future__ import annotations

import json
import time

import pytest

from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.transcript.witnessing import latest_cosignature

pytestmark = pytest.mark.integration


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _cosigned_size(home: NodeHome) -> int:
    with home.store.read() as conn:
        latest = latest_cosignature(conn, "helsinki")
    return -1 if latest is None else int(latest["size"])


def test_witness_cosigns_and_catches_a_rewritten_log(nodes_with_witness, log_rewriter, capsys):
    w_node = nodes_with_witness["washington"]
    w, helsinki = w_node.home, nodes_with_witness["helsinki"].home
    for text in ("one", "two", "three"):
        assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", text]) == 0
    _wait(lambda: _cosigned_size(w) >= 3, 30, "helsinki to cosign washington's head")

    capsys.readouterr()
    assert main(["transcript", "--dir", str(w.dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["witnessed"]["helsinki"]["size"] >= 3

    # The audit bundle carries helsinki's cosignatures, checked offline.
    bundle = w.dir.parent / "bundle.json"
    assert (
        main(["audit", "export", "--dir", str(w.dir), "--peer", "moscow", "--out", str(bundle)])
        == 0
    )
    capsys.readouterr()
    assert main(["audit", "verify", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["witnessed"]["helsinki"] >= 3

    # washington rewrites its log; the witness refuses the next head and raises the alarm.
    w_node.stop()
    log_rewriter(w)
    w_node.start()
    assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", "after"]) == 0

    def alarmed() -> bool:
        capsys.readouterr()
        main(["events", "--dir", str(helsinki.dir), "--code", "equivocation", "--json"])
        return bool(json.loads(capsys.readouterr().out))

    _wait(alarmed, 30, "helsinki's equivocation alarm about washington")

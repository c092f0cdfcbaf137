"""A neutral witness cosigns each node's tree heads and catches a node that rewrites its log."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from node_waits import wait_for

from hotline.cli import main
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.transcript.witnessing import latest_cosignature

pytestmark = pytest.mark.integration


def _cosigned_size(home: NodeHome) -> int:
    with home.store.read() as conn:
        latest = latest_cosignature(conn, "helsinki")
    return -1 if latest is None else int(latest["size"])


def test_witness_cosigns_and_catches_a_rewritten_log(nodes_with_witness, log_rewriter, capsys):
    w_node = nodes_with_witness["washington"]
    w, helsinki = w_node.home, nodes_with_witness["helsinki"].home
    for text in ("one", "two", "three"):
        assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", text]) == 0
    wait_for(lambda: _cosigned_size(w) >= 3, 30, "helsinki to cosign washington's head")

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

    wait_for(alarmed, 30, "helsinki's equivocation alarm about washington")


def test_a_witness_that_stops_cosigning_raises_an_alarm_once(nodes_with_witness, capsys):
    """Threat model W3: a witness that refuses or cannot cosign leaves the record unwitnessed;
    past witness_stale_s that is an alarm (once), shown in ``hotline transcript``, and its
    return is noted."""
    w_node, helsinki = nodes_with_witness["washington"], nodes_with_witness["helsinki"]
    w_node.stop()
    config = dataclasses.replace(w_node.home.config, witness_stale_s=3.0)
    (w_node.home.dir / CONFIG_FILE).write_text(config.to_toml())
    w_node.home = NodeHome(w_node.home.dir)
    w = w_node.home
    w_node.start()
    try:
        assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", "witnessed"]) == 0
        wait_for(lambda: _cosigned_size(w) >= 1, 30, "helsinki to cosign washington's head")

        def report() -> dict:
            capsys.readouterr()
            assert main(["transcript", "--dir", str(w.dir), "--json"]) == 0
            return json.loads(capsys.readouterr().out)["witness_lag"]["helsinki"]

        def stale_events() -> list:
            capsys.readouterr()
            main(["events", "--dir", str(w.dir), "--code", "witness_stale", "--json"])
            return json.loads(capsys.readouterr().out)

        assert report()["stale"] is False
        helsinki.stop()
        for text in ("one", "two"):
            assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", text]) == 0
        wait_for(lambda: bool(stale_events()), 30, "washington's witness_stale alarm")
        lag = report()
        assert lag["stale"] is True and lag["behind"] >= 2, lag
        time.sleep(3)  # more rounds of the witness loop: still one alarm for this outage
        assert len(stale_events()) == 1

        helsinki.start()
        wait_for(lambda: report()["stale"] is False, 30, "helsinki to cosign again")
        wait_for(lambda: "cosigns our log again" in w_node.log_path.read_text(), 15, "the return")
        assert len(stale_events()) == 1
    finally:
        w.close()

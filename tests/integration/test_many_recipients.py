"""A notification to several states: a sealed copy each, receipts tracked per recipient."""

from __future__ import annotations

import json
import time

import pytest

from hotline.cli import main

pytestmark = pytest.mark.integration


def _json(capsys, *args: str):
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_three_node_notification_is_receipted_per_recipient(linked_trio, capsys):
    homes = {name: node.home for name, node in linked_trio.items()}
    w = homes["washington"]
    sent = _json(
        capsys,
        "send",
        "--dir",
        str(w.dir),
        "--to",
        "all",
        "--priority",
        "immediate",
        "--text",
        "Exercise ZAPAD notification follows",
    )
    notification, copies = sent["id"], sent["copies"]
    assert set(copies) == {"moscow", "beijing"}

    def status():
        return _json(capsys, "status", notification, "--dir", str(w.dir))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and status()["received"] != ["beijing", "moscow"]:
        time.sleep(0.1)
    assert status()["received"] == ["beijing", "moscow"]
    assert status()["acknowledged"] == []

    # Only moscow acknowledges: the status says exactly who has and who has not.
    assert main(["ack", copies["moscow"], "--dir", str(homes["moscow"].dir)]) == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and status()["acknowledged"] != ["moscow"]:
        time.sleep(0.1)
    assert status()["acknowledged"] == ["moscow"]
    # Each recipient holds its own copy, naming the shared notification.
    for peer in ("moscow", "beijing"):
        shown = _json(capsys, "show", copies[peer], "--dir", str(homes[peer].dir))
        assert shown["notification"] == notification and shown["to"] == peer

"""Two-person release: a FLASH message goes out only when a second person releases it."""

from __future__ import annotations

import io
import json
import time
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest

from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.store.messages import get_message

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"


def _run(capsys, monkeypatch, *args: str, stdin: str = "") -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _add_operator(capsys, monkeypatch, home: NodeHome, name: str, role: str) -> pyotp.TOTP:
    code, out = _run(
        capsys,
        monkeypatch,
        "operator",
        "add",
        name,
        "--dir",
        str(home.dir),
        "--role",
        role,
        "--password-stdin",
        "--json",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, out
    uri = json.loads(out)["totp_uri"]
    return pyotp.TOTP(parse_qs(urlparse(uri).query)["secret"][0])


def _wait_message(home: NodeHome, message_id: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with home.store.read() as conn:
            view = get_message(conn, message_id, home.config.name)
        if view is not None:
            return view
        time.sleep(0.1)
    raise AssertionError(f"{message_id} never arrived")


def test_flash_is_held_until_a_second_person_releases_it(linked_nodes, capsys, monkeypatch):
    w_node, m = linked_nodes["washington"], linked_nodes["moscow"].home
    w = w_node.home
    alice = _add_operator(capsys, monkeypatch, w, "alice", "operator")
    bob = _add_operator(capsys, monkeypatch, w, "bob", "releaser")
    text = "FLASH. Unannounced launch detected"

    # Without an operator, the CLI refuses; the local API refuses too.
    code, out = _run(
        capsys,
        monkeypatch,
        "send",
        "--dir",
        str(w.dir),
        "--to",
        "moscow",
        "--priority",
        "flash",
        "--text",
        text,
    )
    assert code != 0 and "release_required" in out.replace("\n", "")
    with w_node.api() as api:
        refused = api.post(
            "/api/v1/messages", json={"to": "moscow", "priority": "flash", "text": text}
        )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "release_required"

    # alice submits; her own approval is refused; bob releases it.
    code, out = _run(
        capsys,
        monkeypatch,
        "send",
        "--dir",
        str(w.dir),
        "--to",
        "moscow",
        "--priority",
        "flash",
        "--text",
        text,
        "--operator",
        "alice",
        "--totp",
        alice.now(),
        "--json",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, out
    request_id = json.loads(out)["release_request"]
    code, out = _run(
        capsys,
        monkeypatch,
        "release",
        "approve",
        request_id,
        "--dir",
        str(w.dir),
        "--operator",
        "alice",
        "--totp",
        alice.now(),
        stdin=PASSWORD + "\n",
    )
    assert code != 0
    code, out = _run(
        capsys,
        monkeypatch,
        "release",
        "approve",
        request_id,
        "--dir",
        str(w.dir),
        "--operator",
        "bob",
        "--totp",
        bob.now(),
        "--json",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, out
    (message_id,) = json.loads(out)["message_ids"]

    # moscow receives it with author and releaser signed in.
    view = _wait_message(m, message_id)
    assert (view.priority, view.author, view.released_by) == ("flash", "alice", "bob")
    code, out = _run(capsys, monkeypatch, "release", "list", "--dir", str(w.dir), "--json")
    assert json.loads(out)[0]["state"] == "released"

    # An answer at FLASH is a FLASH message: `hotline reply` holds it for a second person too.
    code, out = _run(
        capsys, monkeypatch, "reply", message_id, "--dir", str(m.dir), "--text", "Received."
    )
    assert code != 0 and "release_required" in out.replace("\n", "")
    code, out = _run(capsys, monkeypatch, "outbox", "--dir", str(m.dir), "--json")
    assert all(row["type"] != "response" for row in json.loads(out))

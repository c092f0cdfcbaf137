"""Key rotation and revocation between two real node processes over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from node_waits import message_state, wait_for
from sqlalchemy import select

from hotline import transcript
from hotline.cli import main
from hotline.core.card import Identity
from hotline.core.envelope import Kind, encode_batch, new_id, seal, sign_message
from hotline.link import keyring
from hotline.node.home import NodeHome
from hotline.store.schema import security_events
from hotline.transcript.witnessing import latest_cosignature

pytestmark = pytest.mark.integration


def _cli_json(capsys, *args: str):
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def _send(capsys, src: NodeHome, to: str, text: str) -> str:
    return str(_cli_json(capsys, "send", "--dir", str(src.dir), "--to", to, "--text", text)["id"])


def _post_signed_by(identity: Identity, dst: NodeHome, seq: int) -> dict[str, object]:
    """A message signed with ``identity`` (e.g. a key rotated out), straight to dst's link."""
    now = datetime.now(UTC)
    message_id = new_id(now)
    statement = sign_message(
        identity,
        to=dst.config.name,
        message_id=message_id,
        seq=seq,
        created=now,
        msg_type="free_text",
        priority="routine",
        body={"text": "old key", "lang": "en"},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender=identity.name,
        recipient=dst.config.name,
        envelope_id=message_id,
        statement=statement,
        recipient_key=NodeHome(dst.dir).identity.decryption.public,
    )
    reply = httpx.post(
        f"{dst.config.endpoint}/v1/envelopes",
        content=encode_batch([envelope]),
        headers={"content-type": "application/vnd.hotline.batch"},
        timeout=10,
        verify=dst.local_verify(),  # the node's own pinned TLS certificate
    )
    result: dict[str, object] = reply.json()["results"][0]
    return result


def _key_state(home: NodeHome, peer: str) -> dict[str, str]:
    with home.store.read() as conn:
        return {
            r.key_id: r.shown_state(int(time.time() * 1e6)) for r in keyring.history(conn, peer)
        }


def _events(home: NodeHome, code: str) -> int:
    with home.store.read() as conn:
        return len(
            list(conn.execute(select(security_events.c.id).where(security_events.c.code == code)))
        )


def test_rotation_keeps_messages_flowing_and_retires_the_old_key(linked_nodes, capsys, tmp_path):
    w, m = linked_nodes["washington"].home, linked_nodes["moscow"].home
    old = NodeHome(w.dir).identity
    first = _send(capsys, w, "moscow", "before the rotation")
    wait_for(lambda: message_state(w, first) == "delivered", 15, "first message delivered")

    # An overlap long enough for the steps below on a loaded machine, short enough to wait out.
    overlap_ends = time.monotonic() + 30
    rotated = _cli_json(capsys, "keys", "rotate", "--dir", str(w.dir), "--overlap", "30s")
    wait_for(
        lambda: _key_state(m, "washington").get(rotated["new_key_id"]) == "active",
        25,
        "moscow accepts washington's new key",
    )
    assert _key_state(m, "washington")[rotated["old_key_id"]] == "overlap"
    # Within the overlap the old key is still accepted ...
    assert time.monotonic() < overlap_ends - 2, "the machine is too slow for this overlap"
    assert _post_signed_by(old, m, 5000)["status"] == "accepted"

    # Both directions keep working across the overlap, with the running nodes on new keys.
    ids = [
        (w, _send(capsys, w, "moscow", "signed by the new key")),
        (m, _send(capsys, m, "washington", "to the new encryption key")),
    ]
    for home, message_id in ids:
        wait_for(lambda h=home, i=message_id: message_state(h, i) == "delivered", 25, "delivery")
    listed = _cli_json(capsys, "keys", "list", "--dir", str(w.dir))
    assert [k["state"] for k in listed] == ["overlap", "active"]
    shown = _cli_json(capsys, "peer", "show", "washington", "--dir", str(m.dir))
    assert shown["fingerprint"] == rotated["new_fingerprint"]

    # ... and refused once it ends; the new key goes on.
    time.sleep(max(0.0, overlap_ends - time.monotonic()) + 0.5)
    wait_for(
        lambda: _key_state(m, "washington")[rotated["old_key_id"]] == "retired",
        15,
        "moscow retires the old key",
    )
    refused = _post_signed_by(old, m, 5001)
    assert (refused["status"], refused.get("code")) == ("rejected", "key_expired"), refused
    after = _send(capsys, w, "moscow", "after the overlap")
    wait_for(lambda: message_state(w, after) == "delivered", 15, "delivery after the overlap")

    # The audit record spans the rotation: exported with the key history, verified offline.
    bundle = tmp_path / "link.bundle"
    export = ["audit", "export", "--dir", str(w.dir), "--peer", "moscow", "--out", str(bundle)]
    assert main(export) == 0
    verified = _cli_json(capsys, "audit", "verify", str(bundle))
    assert verified["keys"] == {"washington": 2, "moscow": 1}
    assert verified["messages"] >= 4


def test_revocation_refuses_the_old_key_until_the_new_fingerprint_is_confirmed(
    linked_nodes, capsys
):
    w, m = linked_nodes["washington"].home, linked_nodes["moscow"].home
    old = NodeHome(w.dir).identity
    revoked = _cli_json(capsys, "keys", "revoke", "--dir", str(w.dir), "--compromised-at", "now")
    wait_for(
        lambda: _key_state(m, "washington").get(revoked["new_key_id"]) == "pending",
        15,
        "moscow learns of the revocation",
    )
    assert _key_state(m, "washington")[revoked["old_key_id"]] == "revoked"
    refused = _post_signed_by(old, m, 5000)
    assert (refused["status"], refused["code"]) == ("rejected", "key_revoked")

    # Signed by the new, unconfirmed key: refused (and retried) in one direction; in the other,
    # moscow seals nothing to washington's revoked key.
    to_moscow = _send(capsys, w, "moscow", "from the new key")
    to_washington = _send(capsys, m, "washington", "waits for the fingerprint")
    wait_for(lambda: _events(m, "key_unconfirmed") > 0, 15, "moscow refuses the unconfirmed key")
    time.sleep(1.0)
    assert message_state(w, to_moscow) in ("queued", "sent")
    assert message_state(m, to_washington) == "queued"

    assert (
        main(
            [
                "peer",
                "confirm-key",
                "washington",
                "--dir",
                str(m.dir),
                "--fingerprint",
                revoked["new_fingerprint"],
            ]
        )
        == 0
    )
    wait_for(
        lambda: message_state(w, to_moscow) == "delivered", 20, "delivery after the confirmation"
    )
    wait_for(
        lambda: message_state(m, to_washington) == "delivered", 20, "moscow's queue, sealed again"
    )
    shown = _cli_json(capsys, "peer", "show", "washington", "--dir", str(m.dir))
    assert [k["state"] for k in shown["keys"]] == ["revoked", "active"]


def test_the_witness_cosigns_heads_signed_by_the_new_key(nodes_with_witness, capsys, tmp_path):
    w = nodes_with_witness["washington"].home
    helsinki = nodes_with_witness["helsinki"].home

    def cosigned() -> int:
        with w.store.read() as conn:
            latest = latest_cosignature(conn, "helsinki")
        return -1 if latest is None else int(latest["size"])

    assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", "before"]) == 0
    wait_for(lambda: cosigned() >= 1, 30, "a first cosignature")
    rotated = _cli_json(capsys, "keys", "rotate", "--dir", str(w.dir), "--overlap", "1d")
    wait_for(
        lambda: _key_state(helsinki, "washington").get(rotated["new_key_id"]) == "active",
        30,
        "helsinki accepts washington's new key",
    )
    with w.store.read() as conn:
        size_after_rotation = transcript.size(conn)
    assert main(["send", "--dir", str(w.dir), "--to", "moscow", "--text", "after"]) == 0
    wait_for(lambda: cosigned() > size_after_rotation, 30, "a cosignature of a new-key head")
    bundle = tmp_path / "witnessed.bundle"
    export = ["audit", "export", "--dir", str(w.dir), "--peer", "moscow", "--out", str(bundle)]
    assert main(export) == 0
    verified = _cli_json(capsys, "audit", "verify", str(bundle))
    assert verified["witnessed"]["helsinki"] > size_after_rotation

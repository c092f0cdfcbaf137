"""The transcript across two real nodes: cross-check, and a node caught rewriting its log."""

from __future__ import annotations

import base64
import json

import pytest
from node_waits import message_state, wait_for

from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.transcript.bundle import sign_bundle
from hotline.transcript.heads import peer_heads

pytestmark = pytest.mark.integration


def _json(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _converse(capsys, w: NodeHome, m: NodeHome) -> list[str]:
    ids = []
    for text in ("first", "second", "third"):
        code, sent = _json(capsys, "send", "--dir", str(w.dir), "--to", "moscow", "--text", text)
        assert code == 0
        ids.append(sent["id"])
    wait_for(lambda: all(message_state(w, i) == "delivered" for i in ids), 15, "delivery")
    assert main(["ack", ids[0], "--dir", str(m.dir), "--operator", "ivanov"]) == 0
    code, answer = _json(capsys, "reply", ids[0], "--dir", str(m.dir), "--text", "received")
    wait_for(lambda: message_state(w, ids[0]) == "answered", 15, "the answer")
    wait_for(lambda: message_state(m, answer["id"]) == "delivered", 15, "the answer's receipt")
    return ids


def test_both_logs_hold_every_statement_with_the_same_bytes(linked_nodes, capsys):
    w, m = linked_nodes["washington"].home, linked_nodes["moscow"].home
    _converse(capsys, w, m)
    for home, peer in ((w, "moscow"), (m, "washington")):
        code, report = _json(capsys, "audit", "check", "--dir", str(home.dir), "--peer", peer)
        assert code == 0, report
        assert report["problems"] == [] and report["equivocations"] == 0
        # 3 messages + ack + answer, and DELIVERED receipts both ways
        assert report["ok"] == report["items"] >= 7, report
    # Each side keeps the other's signed heads, all proved consistent.
    with w.store.read() as conn:
        heads = peer_heads(conn, "moscow")
    assert heads and all(h.checked == 1 for h in heads)


def test_a_node_that_rewrites_its_log_is_caught_by_its_peer(linked_nodes, log_rewriter, capsys):
    w_node, m_node = linked_nodes["washington"], linked_nodes["moscow"]
    w, m = w_node.home, m_node.home
    _converse(capsys, w, m)
    code, _ = _json(capsys, "audit", "check", "--dir", str(w.dir), "--peer", "moscow")
    assert code == 0

    m_node.stop()
    log_rewriter(m)
    m_node.start()
    # The rewritten log shows as soon as moscow signs anything about it (here: a receipt).
    code, sent = _json(capsys, "send", "--dir", str(w.dir), "--to", "moscow", "--text", "more")
    wait_for(lambda: message_state(w, sent["id"]) == "delivered", 15, "delivery after the rewrite")

    code, report = _json(capsys, "audit", "check", "--dir", str(w.dir), "--peer", "moscow")
    assert report["equivocations"] >= 1, report
    assert code == 4
    code, events = _json(capsys, "events", "--dir", str(w.dir), "--code", "equivocation")
    assert code == 0 and events, "the alarm is recorded as a security event"


def _bundle_of(capsys, w: NodeHome, tmp_path) -> tuple[dict, bytes]:
    """The exported bundle as {"header": ..., "records": [...]} and its signature line."""
    out = tmp_path / "bundle.hotline"
    args = ["audit", "export", "--dir", str(w.dir), "--peer", "moscow", "--out", str(out)]
    assert main(args) == 0
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[1:-2]]
    return {"header": json.loads(lines[0]), "records": records}, lines[-2]


def _verify(capsys, tmp_path, bundle: dict, signature: bytes | None = None) -> tuple[int, str]:
    """Verify ``bundle`` re-signed by washington (the tampering tests forge as the exporter
    would, to reach the checks behind the exporter's signature), or with ``signature``."""
    path = tmp_path / "candidate.hotline"
    body = b"".join(
        json.dumps(x, separators=(",", ":")).encode() + b"\n"
        for x in [bundle["header"], *bundle["records"]]
    )
    if signature is None:
        home = NodeHome(tmp_path / "washington")
        data = sign_bundle(home.identity, body, bundle["header"]["exported_at"])
        home.close()
    else:
        data = body + signature + b"\n"
    path.write_bytes(data)
    capsys.readouterr()
    code = main(["audit", "verify", str(path), "--workers", "1", "--json"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _statement(record: list) -> bytes:
    return base64.b64decode(record[0])


def test_audit_bundle_verifies_offline_and_every_tampering_is_named(linked_nodes, capsys, tmp_path):
    w, m = linked_nodes["washington"].home, linked_nodes["moscow"].home
    ids = _converse(capsys, w, m)
    # Let washington learn moscow's latest head (the audit check refreshes and proves it).
    assert main(["audit", "check", "--dir", str(w.dir), "--peer", "moscow"]) == 0
    bundle, signature = _bundle_of(capsys, w, tmp_path)

    code, out = _verify(capsys, tmp_path, bundle)
    assert code == 0, out
    report = json.loads(out)
    # Any change to the exported bytes breaks the exporter's signature.
    edited = json.loads(json.dumps(bundle))
    edited["header"]["exported_at"] = edited["header"]["exported_at"].replace("20", "21", 1)
    code, out = _verify(capsys, tmp_path, edited, signature)
    assert code == 4 and "signature" in out
    # An entry renamed to another message id is refused.
    renamed = json.loads(json.dumps(bundle))
    entry = next(e for r in renamed["records"] for e in r[1] if e[0] == "washington")
    entry[3] = ids[2] if entry[3] != ids[2] else ids[1]
    code, out = _verify(capsys, tmp_path, renamed)
    assert code == 4 and "ref" in out
    assert report["messages"] == 4  # three from washington, the answer from moscow
    assert report["senders"] == {"washington": 3, "moscow": 1}
    assert set(report["logs"]) == {"washington", "moscow"}
    assert report["logs"]["moscow"]["entries"] > 0

    # One byte changed in a statement: named by its record.
    tampered = json.loads(json.dumps(bundle))
    raw = bytearray(_statement(tampered["records"][2]))
    raw[len(raw) // 2] ^= 1
    tampered["records"][2][0] = base64.b64encode(bytes(raw)).decode()
    code, out = _verify(capsys, tmp_path, tampered)
    assert code == 4 and "records[2]" in out

    # A message dropped from the bundle (its record, so from both logs): its number is missing.
    dropped = json.loads(json.dumps(bundle))
    dropped["records"] = [
        r
        for r in dropped["records"]
        if not (ids[1].encode() in _statement(r) and b'"type"' in _statement(r))
    ]
    assert len(dropped["records"]) == len(bundle["records"]) - 1
    dropped["header"]["records"] -= 1
    code, out = _verify(capsys, tmp_path, dropped)
    assert code == 4 and "missing" in out
    # ... and without correcting the count, the header's count names it.
    dropped["header"]["records"] += 1
    code, out = _verify(capsys, tmp_path, dropped)
    assert code == 4 and "records" in out

    # Two of washington's entries swapped between records: their inclusion proofs no longer hold.
    swapped = json.loads(json.dumps(bundle))
    first, second = [
        e
        for r in swapped["records"]
        for e in r[1]
        if e[0] == "washington" and e[2] == "message.out"
    ][:2]
    first[1], second[1] = second[1], first[1]
    code, out = _verify(capsys, tmp_path, swapped)
    assert code == 4 and "logs.washington.entries" in out

    # The same statement twice (a DELIVERED receipt has no sequence number to betray it).
    doubled = json.loads(json.dumps(bundle))
    receipt = next(r for r in doubled["records"] if b'"kind":"delivered"' in _statement(r))
    doubled["records"].append([receipt[0], []])
    doubled["header"]["records"] += 1
    code, out = _verify(capsys, tmp_path, doubled)
    assert code == 4 and "the same statement as" in out

    # moscow's last tree head replaced by washington's: not signed by moscow.
    replaced = json.loads(json.dumps(bundle))
    logs = replaced["header"]["logs"]
    logs["moscow"]["heads"][-1] = logs["washington"]["heads"][-1]
    code, out = _verify(capsys, tmp_path, replaced)
    assert code == 4 and "logs.moscow.heads" in out

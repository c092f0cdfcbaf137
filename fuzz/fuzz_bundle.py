"""Fuzz target: audit bundles (verify_bundle), as handed to an auditor.

Seed: a bundle of a real link made in a temporary directory at start (two messages and their
DELIVERED receipt, washington's log with heads and proofs). Contract: only typed errors; a
bundle that verifies has exactly the seed's signed body (every line before the signature).

    .venv/bin/python fuzz/fuzz_bundle.py -runs=1000000
"""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import NOW, Forgery, run

    from hotline.core.encoding import b64encode, format_time
    from hotline.errors import HotlineError
    from hotline.link import inbox, outbox
    from hotline.node.home import NodeHome
    from hotline.store.messages import pending_outgoing
    from hotline.transcript.bundle import encode_bundle, sign_bundle, statement_key, verify_bundle
    from hotline.transcript.crosscheck import exchanged_statements, own_log_section
    from hotline.transcript.heads import current_own_head, own_heads_upto


def make_bundle(base: Path) -> bytes:
    """A signed bundle of washington's link to moscow, from two real node directories."""
    w, m = (
        NodeHome.init(base / n, name=n, listen="127.0.0.1:1", display_names={"en": n})
        for n in ("washington", "moscow")
    )
    for home, other in ((w, m), (m, w)):
        card = other.card(NOW)
        home.add_peer(card, card.fingerprint, NOW)
    for i in range(2):
        outbox.submit_message(
            w.store,
            w.identity,
            w.peer_card("moscow"),
            msg_type="free_text",
            priority="flash",
            body={"text": f"message {i}", "lang": "en"},
            now=NOW + timedelta(seconds=i),
            ttl=timedelta(hours=1),
        )
    with w.store.read() as conn:
        envelopes = [o.envelope for o in pending_outgoing(conn, "moscow", 10)]
    reply = inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=NOW, source="f")
    inbox.receive(
        w.store, w.identity, w.peer_cards(), reply.receipts["washington"], now=NOW, source="f"
    )
    with w.store.write() as conn:
        head = current_own_head(conn, w.identity, NOW + timedelta(minutes=1), max_age_s=0)
    with w.store.read() as conn:
        items = exchanged_statements(conn, "moscow")
        log = own_log_section(conn, items, own_heads_upto(conn, head.size))
    at = format_time(NOW)
    body = encode_bundle(
        link=("washington", "moscow"),
        exported_by="washington",
        exported_at=at,
        cards={
            "washington": b64encode(w.card(NOW).statement),
            "moscow": b64encode(m.card(NOW).statement),
        },
        statements={statement_key(s): b64encode(s) for _r, _k, s in items},
        logs={"washington": log},
    )
    data = sign_bundle(w.identity, body, at)
    w.close()
    m.close()
    return data


SEED = make_bundle(Path(tempfile.mkdtemp(prefix="hotline-fuzz-bundle-")))


def signed_body(data: bytes) -> bytes:
    """Every line before the last (the export signature's) line."""
    return data[: data.rfind(b"\n", 0, len(data) - 1) + 1]


SIGNED_BODY = signed_body(SEED)
verify_bundle(SEED)  # the seed itself must verify, or the target proves nothing


def test_one_input(data: bytes) -> None:
    try:
        verify_bundle(data)
    except HotlineError:
        return
    if signed_body(data) != SIGNED_BODY:
        raise Forgery("a bundle with another body than the one signed verified")


if __name__ == "__main__":
    run("bundle", test_one_input, [SEED])
    sys.exit(0)

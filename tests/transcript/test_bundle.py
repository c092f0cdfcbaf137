"""Audit bundles built in-process: verification, and damage anywhere caught with a typed error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotline.core.encoding import b64encode, format_time
from hotline.errors import HotlineError
from hotline.link import inbox, outbox
from hotline.node.home import NodeHome
from hotline.store.messages import pending_outgoing
from hotline.transcript.bundle import (
    BundleError,
    encode_bundle,
    sign_bundle,
    statement_key,
    verify_bundle,
)
from hotline.transcript.crosscheck import exchanged_statements, own_log_section
from hotline.transcript.heads import current_own_head, own_heads_upto

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A bundle of five messages and their receipt, and the exporter's node directory."""
    base = tmp_path_factory.mktemp("bundle")
    homes = {
        name: NodeHome.init(
            base / name, name=name, listen=f"127.0.0.1:{port}", display_names={"en": name}
        )
        for name, port in (("washington", 18701), ("moscow", 18702))
    }
    w, m = homes["washington"], homes["moscow"]
    for home, other in ((w, m), (m, w)):
        card = other.card(NOW)
        home.add_peer(card, card.fingerprint, NOW)
    for i in range(5):
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
        envelopes = [o.envelope for o in pending_outgoing(conn, "moscow", 100)]
    reply = inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=NOW, source="t")
    inbox.receive(
        w.store, w.identity, w.peer_cards(), reply.receipts["washington"], now=NOW, source="t"
    )
    with w.store.write() as conn:
        head = current_own_head(conn, w.identity, NOW + timedelta(minutes=1), max_age_s=0)
    with w.store.read() as conn:
        items = exchanged_statements(conn, "moscow")
        heads = own_heads_upto(conn, head.size)
        log = own_log_section(conn, items, heads)
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
    for home in homes.values():
        home.close()
    return data, base / "washington"


@pytest.fixture(scope="module")
def bundle_file(built) -> bytes:
    return built[0]


@pytest.fixture(scope="module")
def exporter(built):
    home = NodeHome(built[1])
    yield home
    home.close()


def test_a_sound_bundle_verifies(bundle_file):
    report = verify_bundle(bundle_file)
    assert report.messages == 5 and report.receipts == 1
    assert report.senders == {"washington": 5}
    assert report.logs["washington"].entries == 6
    assert report.logs["washington"].unproved == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_changed_byte_is_refused_with_a_typed_error(bundle_file, data):
    position = data.draw(st.integers(0, len(bundle_file) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != bundle_file[position]))
    damaged = bundle_file[:position] + bytes([value]) + bundle_file[position + 1 :]
    with pytest.raises(HotlineError):
        verify_bundle(damaged)


def test_truncated_or_reassembled_files_are_refused(bundle_file):
    body, signature, _ = bundle_file.split(b"\n")
    for candidate in (
        body,
        body + b"\n",
        signature + b"\n" + body + b"\n",
        body + b"\n" + signature + b"\n" + b"extra\n",
    ):
        with pytest.raises(HotlineError):
            verify_bundle(candidate)


def test_the_failing_item_is_named(bundle_file, exporter):
    body, _signature, _ = bundle_file.split(b"\n")
    bundle = json.loads(body)
    bundle["logs"]["washington"]["entries"][2]["proof"].pop()
    edited = json.dumps(bundle, separators=(",", ":")).encode()
    with pytest.raises(BundleError) as e:
        verify_bundle(edited + b"\n" + bundle_file.split(b"\n")[1] + b"\n")
    assert e.value.item == "signature"
    # Re-signed as a dishonest exporter would, the proof check behind the signature names it.
    with pytest.raises(BundleError) as e:
        verify_bundle(sign_bundle(exporter.identity, edited, bundle["exported_at"]))
    assert e.value.item.startswith("logs.washington.entries[")

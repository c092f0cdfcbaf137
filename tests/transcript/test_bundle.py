"""Audit bundles built in-process: verification, and damage anywhere caught with a typed error."""

from __future__ import annotations

import base64
import contextlib
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
from hotline.transcript import bundle as bundle_module
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


def _lines(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(header, records, signature) of a bundle file."""
    lines = data.split(b"\n")
    assert lines[-1] == b""
    return lines[0], lines[1:-2], lines[-2]


def _resign(exporter, header: bytes, records: list[bytes]) -> bytes:
    body = b"".join(line + b"\n" for line in [header, *records])
    return sign_bundle(exporter.identity, body, json.loads(header)["exported_at"])


def test_truncated_or_reassembled_files_are_refused(bundle_file):
    header, records, signature = _lines(bundle_file)
    body = b"".join(line + b"\n" for line in [header, *records])
    for candidate in (
        body,
        body[:-1],
        header + b"\n" + signature + b"\n",
        signature + b"\n" + body,
        body + signature + b"\n" + b"extra\n",
        body + signature,
        b"",
        b"\n",
    ):
        with pytest.raises(HotlineError):
            verify_bundle(candidate)


def test_the_failing_item_is_named(bundle_file, exporter):
    header, records, signature = _lines(bundle_file)
    record = json.loads(records[2])
    proof = base64.b64decode(record[1][0][4])
    record[1][0][4] = base64.b64encode(proof[:-32]).decode()
    edited = [*records[:2], json.dumps(record, separators=(",", ":")).encode(), *records[3:]]
    body = b"".join(line + b"\n" for line in [header, *edited])
    with pytest.raises(BundleError) as e:
        verify_bundle(body + signature + b"\n")
    assert e.value.item == "signature"
    # Re-signed as a dishonest exporter would, the proof check behind the signature names it.
    with pytest.raises(BundleError) as e:
        verify_bundle(_resign(exporter, header, edited))
    assert (
        e.value.item
        == f"logs.washington.entries[{record[1][0][1]}] ({record[1][0][2]} {record[1][0][3]})"
    )


def test_a_record_listed_twice_or_missing_is_named(bundle_file, exporter):
    header, records, _signature = _lines(bundle_file)
    count = json.loads(header)["records"]
    # The header's count guards against a dropped or added record.
    with pytest.raises(BundleError) as e:
        verify_bundle(_resign(exporter, header, records[:-1]))
    assert e.value.item == "records"
    # A statement twice (a DELIVERED receipt has no sequence number to betray a repeat).
    receipt = next(r for r in records if b'"receipt.' in r)
    again = json.dumps([json.loads(receipt)[0], []], separators=(",", ":")).encode()
    grown = header.replace(f'"records":{count}'.encode(), f'"records":{count + 1}'.encode())
    with pytest.raises(BundleError) as e:
        verify_bundle(_resign(exporter, grown, [*records, again]))
    assert e.value.item == f"records[{count}]"
    assert "the same statement as records[" in str(e.value)


def test_a_replaced_tree_head_is_named(bundle_file, exporter):
    header, records, _signature = _lines(bundle_file)
    parsed = json.loads(header)
    # A head of another log (here: washington's own head passed off as moscow's) is refused.
    parsed["logs"]["moscow"] = {"heads": parsed["logs"]["washington"]["heads"], "consistency": []}
    edited = json.dumps(parsed, separators=(",", ":")).encode()
    with pytest.raises(BundleError) as e:
        verify_bundle(_resign(exporter, edited, records))
    assert e.value.item == "logs.moscow.heads[0]"


def test_the_parallel_path_gives_the_same_verdicts(bundle_file, exporter, tmp_path, monkeypatch):
    """Worker processes reading their own runs of lines (from a file and from bytes) report
    the same summary and name the same failing item as one process."""
    monkeypatch.setattr(bundle_module, "_PARALLEL_MIN_RECORDS", 0)
    path = tmp_path / "bundle.hotline"
    path.write_bytes(bundle_file)
    one = verify_bundle(bundle_file).to_dict()
    assert verify_bundle(path, workers=2).to_dict() == one
    assert verify_bundle(bundle_file, workers=2).to_dict() == one
    header, records, _signature = _lines(bundle_file)
    tampered = bytearray(records[-2])
    tampered[len(tampered) // 2] ^= 1
    edited = _resign(exporter, header, [*records[:-2], bytes(tampered), records[-1]])
    path.write_bytes(edited)
    with pytest.raises(BundleError) as serial:
        verify_bundle(edited)
    with pytest.raises(BundleError) as parallel:
        verify_bundle(path, workers=2)
    assert parallel.value.item == serial.value.item


def test_invalid_utf8_inside_a_record_is_named_not_raised(bundle_file, exporter):
    """A re-signed bundle whose record, or whose statement's payload, holds bytes that are not
    UTF-8 is refused naming the record: the JSON parser's UnicodeDecodeError is not a crash."""
    header, records, _signature = _lines(bundle_file)
    record = json.loads(records[0])
    statement = bytearray(base64.b64decode(record[0]))
    at = statement.index(b'"washington"') + 2
    statement[at] = 0x82
    record[0] = base64.b64encode(bytes(statement)).decode()
    bad_payload = json.dumps(record, separators=(",", ":")).encode()
    bad_line = records[0].replace(b'"message.out"', b'"message.\x82ut"', 1)
    assert bad_line != records[0]
    for edited in (bad_payload, bad_line):
        with pytest.raises(BundleError) as e:
            verify_bundle(_resign(exporter, header, [edited, *records[1:]]))
        assert e.value.item == "records[0]"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=500)
    | st.lists(JSON, min_size=1, max_size=3).map(
        lambda vs: b"".join(json.dumps(v).encode() + b"\n" for v in vs) + b"QQ==\n"
    )
)
def test_arbitrary_bytes_are_refused_with_a_typed_error(data):
    with pytest.raises(HotlineError):
        verify_bundle(data)


def _paths(value, prefix):
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, [*prefix, k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, [*prefix, i])
    return out


def _replace(value, path, new):
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_resigned_bundle_with_any_member_replaced_verifies_or_gets_a_typed_error(
    bundle_file, exporter, data
):
    """What a dishonest exporter can do: change anything in the header or a record, then sign
    it. The checks behind the signature (cards, heads, proofs, sequences) answer with typed
    errors, never crash."""
    header, records, _signature = _lines(bundle_file)
    lines = [header, *records]
    which = data.draw(st.integers(0, len(lines) - 1))
    value = json.loads(lines[which])
    edited = _replace(value, data.draw(st.sampled_from(_paths(value, []))), data.draw(JSON))
    lines[which] = json.dumps(edited, separators=(",", ":")).encode()
    with contextlib.suppress(HotlineError):
        verify_bundle(
            _resign(exporter, header, lines[1:]) if which else _resign_raw(exporter, lines)
        )


def _resign_raw(exporter, lines: list[bytes]) -> bytes:
    """Re-sign with an edited header (which may no longer name an export time)."""
    body = b"".join(line + b"\n" for line in lines)
    return sign_bundle(exporter.identity, body, format_time(NOW))

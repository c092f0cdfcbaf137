"""The inbox and outbox over real stores, without a network: exactly-once and replay rules."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hotline import transcript
from hotline.core.envelope import new_id, open_envelope
from hotline.errors import ErrorCode, ProtocolError
from hotline.link import inbox, outbox
from hotline.node.home import NodeHome
from hotline.store.messages import (
    MAX_SEQUENCE_JUMP,
    State,
    get_message,
    message_state,
    pending_outgoing,
)
from hotline.store.schema import inbound_gaps, messages, security_events

NOW = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)
TTL = timedelta(hours=1)


def _send(home: NodeHome, to: str, text: str) -> str:
    return outbox.submit_message(
        home.store,
        home.identity,
        home.peer_card(to),
        msg_type="free_text",
        priority="flash",
        body={"text": text, "lang": "en"},
        now=NOW,
        ttl=TTL,
    )


def _pending(home: NodeHome, peer: str):
    with home.store.read() as conn:
        return pending_outgoing(conn, peer, 1000)


def _deliver(sender: NodeHome, receiver: NodeHome, envelopes: list[bytes]):
    result = inbox.receive(
        receiver.store,
        receiver.identity,
        receiver.peer_cards(),
        envelopes,
        now=NOW,
        source="test",
    )
    receipts = result.receipts.get(sender.config.name, [])
    back = inbox.receive(
        sender.store, sender.identity, sender.peer_cards(), receipts, now=NOW, source="test"
    )
    return result, back


def _inbox_count(home: NodeHome) -> int:
    with home.store.read() as conn:
        return conn.execute(
            select(func.count()).select_from(messages).where(messages.c.direction == "in")
        ).scalar_one()


def _state(home: NodeHome, message_id: str) -> str:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
        # The long-poll of `send ... wait=delivered` reads the state from the events alone.
        state = message_state(conn, message_id)
        assert message_state(conn, new_id(NOW)) is None
    assert view is not None
    assert state is view.state
    return view.state.value


def test_message_is_delivered_and_receipted(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = _send(w, "moscow", "confirm your test launch")
    assert _state(w, message_id) == "queued"
    result, back = _deliver(w, m, [o.envelope for o in _pending(w, "moscow")])
    assert [o.status for o in result.outcomes] == ["accepted"]
    assert [o.status for o in back.outcomes] == ["receipt"]
    assert _state(w, message_id) == "delivered"
    assert _state(m, message_id) == "delivered"
    assert _pending(w, "moscow") == []


def test_duplicate_gets_the_same_receipt_and_is_not_delivered_twice(pair):
    w, m = pair["washington"], pair["moscow"]
    _send(w, "moscow", "one")
    envelope = _pending(w, "moscow")[0].envelope
    first, _ = _deliver(w, m, [envelope])
    second, back = _deliver(w, m, [envelope])
    assert [o.status for o in second.outcomes] == ["duplicate"]
    assert _inbox_count(m) == 1
    # The duplicate's receipt is the very receipt signed the first time.
    first_receipt = open_envelope(
        w.identity, first.receipts["washington"][0], lambda n: m.identity.signing.public
    )
    second_receipt = open_envelope(
        w.identity, second.receipts["washington"][0], lambda n: m.identity.signing.public
    )
    assert first_receipt.statement.raw == second_receipt.statement.raw
    assert [o.status for o in back.outcomes] == ["duplicate"]


def test_same_id_with_other_content_is_a_replay_attack(pair, forge):
    w, m = pair["washington"], pair["moscow"]
    message_id = new_id(NOW)

    def forge_text(text: str) -> bytes:
        return forge(w, m, seq=1, text=text, message_id=message_id, priority="flash")

    _deliver(w, m, [forge_text("hold fire")])
    result, _ = _deliver(w, m, [forge_text("open fire")])
    assert result.outcomes[0].status == "rejected"
    assert result.outcomes[0].code == ErrorCode.REPLAY_CONFLICT
    with m.store.read() as conn:
        codes = [r.code for r in conn.execute(select(security_events.c.code))]
        body = conn.execute(select(messages.c.body)).scalar_one()
    assert "replay_conflict" in codes
    assert "hold fire" in body  # the original stands; nothing of the replay was written


def test_sequence_number_reuse_is_rejected_and_gaps_are_noticed(pair, forge):
    w, m = pair["washington"], pair["moscow"]

    def forged(seq: int, text: str) -> bytes:
        return forge(w, m, seq=seq, text=text)

    result, _ = _deliver(w, m, [forged(1, "a"), forged(1, "b"), forged(4, "c")])
    assert [o.status for o in result.outcomes] == ["accepted", "rejected", "accepted"]
    assert result.outcomes[1].code == ErrorCode.SEQUENCE_REUSED
    with m.store.read() as conn:
        codes = [r.code for r in conn.execute(select(security_events.c.code))]
    assert "sequence_gap" in codes
    assert inbox.next_expected(m.store, "washington") == 2


def test_garbage_and_foreign_envelopes_leave_only_security_events(pair):
    w, m = pair["washington"], pair["moscow"]
    _send(w, "moscow", "real")
    real = _pending(w, "moscow")[0].envelope
    damaged = bytearray(real)
    damaged[-5] ^= 0xFF
    result, _ = _deliver(w, m, [b"garbage", bytes(damaged)])
    assert [o.status for o in result.outcomes] == ["rejected", "rejected"]
    assert [o.code for o in result.outcomes] == [ErrorCode.BAD_VERSION, ErrorCode.DECRYPT_FAILED]
    assert _inbox_count(m) == 0
    assert result.receipts == {}


def test_acknowledge_and_answer(pair):
    w, m = pair["washington"], pair["moscow"]
    message_id = _send(w, "moscow", "confirm")
    _deliver(w, m, [o.envelope for o in _pending(w, "moscow")])
    outbox.acknowledge(
        m.store,
        m.identity,
        m.peer_card("washington"),
        message_id,
        now=NOW,
        ttl=TTL,
        operator="ivanov",
        lang="ru",
        text_hash="ab" * 32,
    )
    with pytest.raises(ProtocolError):
        outbox.acknowledge(
            m.store,
            m.identity,
            m.peer_card("washington"),
            message_id,
            now=NOW,
            ttl=TTL,
            operator="ivanov",
        )
    outbox.submit_message(
        m.store,
        m.identity,
        m.peer_card("washington"),
        msg_type="response",
        priority="flash",
        body={"text": "confirmed", "in_reply_to": message_id},
        now=NOW,
        ttl=TTL,
        in_reply_to=message_id,
    )
    envelopes = [o.envelope for o in _pending(m, "washington")]
    assert len(envelopes) == 2
    result, _ = _deliver(m, w, envelopes)
    assert [o.status for o in result.outcomes] == ["accepted", "accepted"]
    assert _state(w, message_id) == "answered"
    with w.store.read() as conn:
        view = get_message(conn, message_id, "washington")
    assert view is not None
    assert [e.state for e in view.events] == ["queued", "delivered", "acknowledged", "answered"]
    assert "ivanov" in view.events[2].detail


def test_acknowledging_our_own_message_is_refused(pair):
    w = pair["washington"]
    message_id = _send(w, "moscow", "x")
    with pytest.raises(ProtocolError):
        outbox.acknowledge(
            w.store,
            w.identity,
            w.peer_card("moscow"),
            message_id,
            now=NOW,
            ttl=TTL,
            operator="smith",
        )


def test_a_late_exercise_notification_is_flagged_on_both_sides(pair, capsys):
    from hotline.cli import main

    w, m = pair["washington"], pair["moscow"]
    body = {
        "name": "ZAPAD 27",
        "exercise_type": "land_forces",
        "purpose": "Strategic exercise.",
        "start_date": (NOW + timedelta(days=10)).date().isoformat(),
        "end_date": (NOW + timedelta(days=17)).date().isoformat(),
        "area": {"description": "Western military district"},
        "troops": 20000,
        "battle_tanks": 300,
        "armoured_combat_vehicles": 600,
        "artillery_pieces": 200,
        "combat_aircraft_sorties": 100,
        "helicopters": 20,
        "observers_invited": False,
    }
    path = w.dir / "zapad.json"
    path.write_text(json.dumps(body))
    capsys.readouterr()
    code = main(
        [
            "send",
            "--dir",
            str(w.dir),
            "--to",
            "moscow",
            "--type",
            "exercise_notification",
            "--body",
            str(path),
        ]
    )
    assert code == 0
    warnings = capsys.readouterr().err
    assert "42" in warnings and "warning" in warnings.lower()
    _deliver(w, m, [o.envelope for o in _pending(w, "moscow")])
    with m.store.read() as conn:
        findings = [
            r.detail
            for r in conn.execute(
                select(security_events.c.detail).where(security_events.c.code == "rule_finding")
            )
        ]
    assert findings, "the receiver flags a notification that breaks the rules"


def test_an_operator_translation_is_signed_kept_beside_and_never_replaces_the_original(
    pair, capsys
):
    from hotline.cli import main

    w, m = pair["washington"], pair["moscow"]
    message_id = _send(w, "moscow", "Confirm the launch window")
    _deliver(w, m, [o.envelope for o in _pending(w, "moscow")])
    assert (
        main(
            [
                "translate",
                message_id,
                "--dir",
                str(m.dir),
                "--lang",
                "ru",
                "--text",
                "Подтвердите окно пуска",
                "--operator",
                "ivanov",
            ]
        )
        == 0
    )
    # A translation of an unknown message, or by a non-operator name, is refused.
    unknown = "01a21700-0000-7000-8000-000000000000"
    args = ["--lang", "ru", "--text", "x", "--operator", "smith"]
    assert main(["translate", unknown, "--dir", str(m.dir), *args]) == 6
    assert (
        main(
            [
                "translate",
                message_id,
                "--dir",
                str(m.dir),
                "--lang",
                "ru",
                "--text",
                "x",
                "--operator",
                "Robert'); DROP",
            ]
        )
        == 2
    )
    capsys.readouterr()
    assert main(["show", message_id, "--dir", str(m.dir), "--lang", "ru", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["text"] == "Confirm the launch window"  # the signed original, unchanged
    assert shown["translations"] == [
        {
            **shown["translations"][0],
            "text": "Подтвердите окно пуска",
            "operator": "ivanov",
            "lang": "ru",
            "translation": True,
        }
    ]
    with m.store.read() as conn:
        assert [leaf.kind for leaf in transcript.leaves_by_ref(conn, message_id)] == [
            "message.in",
            "translation",
        ]


def test_every_catalog_type_round_trips_through_the_link_and_renders_in_both_languages(pair):
    from hotline.compose import render

    # The catalog's own examples, one per type (loaded by path: every test folder has a conftest).
    spec = importlib.util.spec_from_file_location(
        "compose_examples", Path(__file__).resolve().parents[1] / "compose" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(examples)
    EXAMPLES = examples.EXAMPLES
    w, m = pair["washington"], pair["moscow"]
    sent = {}
    for msg_type, body in EXAMPLES.items():
        if msg_type == "response":
            continue  # needs a received message to answer; covered by the conversation tests
        sent[msg_type] = outbox.submit_message(
            w.store,
            w.identity,
            w.peer_card("moscow"),
            msg_type=msg_type,
            priority="routine",
            body=body,
            now=NOW,
            ttl=TTL,
        )
    result, _ = _deliver(w, m, [o.envelope for o in _pending(w, "moscow")])
    assert {o.status for o in result.outcomes} == {"accepted"}
    with m.store.read() as conn:
        for msg_type, message_id in sent.items():
            view = get_message(conn, message_id, "moscow")
            assert view is not None and view.msg_type == msg_type
            assert view.body == EXAMPLES[msg_type] or msg_type in ("cyber_referral",)
            for lang in ("en", "ru"):
                assert render(msg_type, view.body, lang=lang)


def test_one_batch_decides_each_envelope_as_if_it_came_alone(pair, forge):
    """Plain messages of a batch are checked against the store together and written together:
    replays, duplicates, reused and far sequence numbers, and gaps opened and filled within the
    same batch get the outcome each would get in a batch of its own, in order."""
    w, m = pair["washington"], pair["moscow"]
    first_id = new_id(NOW)
    first = forge(w, m, seq=1, text="a", message_id=first_id)
    fills = forge(w, m, seq=2, text="b")
    batch = [
        first,
        forge(w, m, seq=3, text="c"),  # skips 2
        first,  # the same envelope again
        forge(w, m, seq=5, text="other", message_id=first_id),  # same id, other content
        forge(w, m, seq=3, text="d"),  # 3 is taken
        fills,
        forge(w, m, seq=3 + MAX_SEQUENCE_JUMP + 2, text="far"),
        b"garbage",
        forge(w, m, seq=4, text="e"),
    ]
    result, back = _deliver(w, m, batch)
    assert [(o.status, o.code) for o in result.outcomes] == [
        ("accepted", None),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", ErrorCode.REPLAY_CONFLICT),
        ("rejected", ErrorCode.SEQUENCE_REUSED),
        ("accepted", None),
        ("rejected", ErrorCode.SEQUENCE_OUT_OF_RANGE),
        ("rejected", ErrorCode.BAD_VERSION),
        ("accepted", None),
    ]
    assert [o.status for o in back.outcomes] == ["rejected"]  # forged, not sent: not ours
    assert _inbox_count(m) == 4
    assert inbox.next_expected(m.store, "washington") == 5  # the gap at 2 was filled
    with m.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(inbound_gaps)).scalar_one() == 0
        codes = [r.code for r in conn.execute(select(security_events.c.code))]
        bodies = [r.body for r in conn.execute(select(messages.c.body).order_by(messages.c.seq))]
    assert codes.count("sequence_gap") == 1
    assert [json.loads(b)["text"] for b in bodies] == ["a", "b", "c", "e"]
    [receipt] = result.receipts["washington"]
    opened = open_envelope(w.identity, receipt, lambda n: m.identity.signing.public)
    assert [i.seq for i in opened.payload.items] == [1, 3, 2, 4]
    # Sent again in a later batch, stored ones are duplicates and get the receipt signed then.
    again, _ = _deliver(w, m, [fills, first])
    assert [o.status for o in again.outcomes] == ["duplicate", "duplicate"]
    assert [
        open_envelope(w.identity, r, lambda n: m.identity.signing.public).statement.raw
        for r in again.receipts["washington"]
    ] == [opened.statement.raw]
    assert _inbox_count(m) == 4


def test_a_batch_reports_each_state_it_commits_as_the_store_has_it(pair):
    """``Received.states`` (what a long-poll takes instead of reading the store) is the state
    the store holds after the batch, even when receipts arrive out of order."""
    w, m = pair["washington"], pair["moscow"]
    message_id = _send(w, "moscow", "confirm")
    sent = [o.envelope for o in _pending(w, "moscow")]
    # Delivered, but the DELIVERED receipt is lost on the way back.
    inbox.receive(m.store, m.identity, m.peer_cards(), sent, now=NOW, source="test")
    outbox.acknowledge(
        m.store,
        m.identity,
        m.peer_card("washington"),
        message_id,
        now=NOW,
        ttl=TTL,
        operator="ivanov",
    )
    ack, _ = _deliver(m, w, [o.envelope for o in _pending(m, "washington")])
    assert ack.states == {message_id: State.ACKNOWLEDGED}
    # The message goes again: the duplicate's DELIVERED receipt comes after the ACKNOWLEDGED.
    again, back = _deliver(w, m, sent)
    assert [o.status for o in again.outcomes] == ["duplicate"]
    assert back.states == {message_id: State.ACKNOWLEDGED}
    assert _state(w, message_id) == "acknowledged"

    other = _send(w, "moscow", "second")
    _, back = _deliver(w, m, [o.envelope for o in _pending(w, "moscow")])
    assert back.states == {other: State.DELIVERED}
    assert _state(w, other) == "delivered"

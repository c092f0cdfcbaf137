"""Cases opened by a referral and moved by signed updates, on both sides of a link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from referral_helpers import NOW, TTL, bundle_bytes, deliver, sample_bundle
from sqlalchemy import select

from hotline.compose.catalog import RequestedAction, Tlp
from hotline.errors import ErrorCode, HotlineError, InputError, ProtocolError
from hotline.node.home import NodeHome
from hotline.referrals import cases, stix
from hotline.referrals._schema import referral_events, taxii_objects
from hotline.referrals.messages import CaseState
from hotline.store.messages import get_message


def _refer(home: NodeHome, to: str, tlp: Tlp = Tlp.AMBER) -> str:
    body = cases.prepare_referral(
        bundle_bytes(sample_bundle()),
        narrative="Scanning of a power-grid operator since 18 November.",
        actions=[RequestedAction.TAKEDOWN, RequestedAction.PRESERVE_EVIDENCE],
        deadline=NOW + timedelta(hours=72),
        tlp=tlp,
        now=NOW,
    )
    return cases.open_referral(
        home.store, home.identity, home.peer_card(to), body, now=NOW, ttl=TTL
    )


def _update(home: NodeHome, case_id: str, state: CaseState, **kw: str) -> str:
    return cases.update_case(
        home.store,
        home.identity,
        home.peer_cards(),
        case_id,
        state=state,
        note=kw.get("note"),
        reason=kw.get("reason"),
        now=NOW + timedelta(hours=1),
        ttl=TTL,
    )


def _case(home: NodeHome, case_id: str) -> cases.CaseView:
    with home.store.read() as conn:
        return cases.get_case(conn, case_id)


def test_a_case_goes_from_referral_to_closure_on_both_sides(homes: dict[str, NodeHome]) -> None:
    w, m = homes["washington"], homes["moscow"]
    case_id = _refer(w, "moscow")
    assert _case(w, case_id).state is CaseState.REFERRED
    deliver(w, m)
    received = _case(m, case_id)
    assert (received.direction, received.peer, received.state) == ("in", "washington", "referred")
    assert received.served and received.object_count == 9  # 8 + TLP marking-definition

    _update(m, case_id, CaseState.ACKNOWLEDGED, note="Received; looking into it.")
    _update(m, case_id, CaseState.INVESTIGATING)
    _update(m, case_id, CaseState.ACTION_TAKEN, note="The server was taken down.")
    deliver(m, w)
    mine = _case(w, case_id)
    assert mine.state is CaseState.ACTION_TAKEN
    assert mine.acknowledged_at_us is not None and mine.action_at_us is not None
    # The receiver's first update answers the referral on the link.
    with w.store.read() as conn:
        view = get_message(conn, case_id, "washington")
    assert view is not None and view.state.value == "answered"

    _update(w, case_id, CaseState.CLOSED, note="Thank you.")
    deliver(w, m)
    assert _case(m, case_id).state is CaseState.CLOSED
    assert [e.state for e in _case(m, case_id).events] == [
        "referred",
        "acknowledged",
        "investigating",
        "action_taken",
        "closed",
    ]


@pytest.mark.parametrize(
    ("side", "state"),
    [
        ("washington", CaseState.ACKNOWLEDGED),  # the referrer cannot acknowledge
        ("moscow", CaseState.CLOSED),  # the receiver cannot close
        ("moscow", CaseState.ACTION_TAKEN),  # not before acknowledging
    ],
)
def test_invalid_transitions_are_refused_before_sending(
    homes: dict[str, NodeHome], side: str, state: CaseState
) -> None:
    case_id = _refer(homes["washington"], "moscow")
    deliver(homes["washington"], homes["moscow"])
    with pytest.raises(ProtocolError) as info:
        _update(homes[side], case_id, state)
    assert info.value.code is ErrorCode.INVALID_TRANSITION


def test_declining_needs_a_reason(homes: dict[str, NodeHome]) -> None:
    case_id = _refer(homes["washington"], "moscow")
    deliver(homes["washington"], homes["moscow"])
    with pytest.raises(InputError) as info:
        _update(homes["moscow"], case_id, CaseState.DECLINED)
    assert "reason" in str(info.value.fields)
    _update(homes["moscow"], case_id, CaseState.DECLINED, reason="Outside our jurisdiction.")
    deliver(homes["moscow"], homes["washington"])
    case = _case(homes["washington"], case_id)
    assert case.state is CaseState.DECLINED and case.declined_at_us is not None
    assert case.events[-1].reason == "Outside our jurisdiction."


def test_a_forged_transition_from_the_peer_is_recorded_and_refused(
    homes: dict[str, NodeHome],
) -> None:
    """The receiving side sends 'closed' (only the referrer may close): kept, not applied."""
    w, m = homes["washington"], homes["moscow"]
    case_id = _refer(w, "moscow")
    deliver(w, m)
    from hotline.link import outbox

    outbox.submit_message(
        m.store,
        m.identity,
        m.peer_card("washington"),
        msg_type="case_update",
        priority="routine",
        body={"case_id": case_id, "state": "closed"},
        now=NOW,
        ttl=TTL,
    )
    deliver(m, w)
    case = _case(w, case_id)
    assert case.state is CaseState.REFERRED
    assert case.events[-1].accepted is False and "cannot move" in (case.events[-1].problem or "")


def test_the_hook_is_idempotent(homes: dict[str, NodeHome]) -> None:
    w, m = homes["washington"], homes["moscow"]
    case_id = _refer(w, "moscow")
    deliver(w, m)
    with m.store.write() as conn:
        assert cases.catch_up(conn) == 0
        body = _case(m, case_id)
        del body
    with m.store.read() as conn:
        events = conn.execute(
            select(referral_events.c.id).where(referral_events.c.case_id == case_id)
        ).all()
        served = conn.execute(select(taxii_objects.c.pk)).all()
    assert len(events) == 1 and len(served) == 9


def test_tlp_red_is_never_served_over_taxii(homes: dict[str, NodeHome]) -> None:
    w, m = homes["washington"], homes["moscow"]
    case_id = _refer(w, "moscow", Tlp.RED)
    deliver(w, m)
    case = _case(m, case_id)
    assert not case.served and "TLP:RED" in (case.problem or "")
    with m.store.read() as conn:
        assert conn.execute(select(taxii_objects.c.pk)).all() == []


def test_unknown_case(homes: dict[str, NodeHome]) -> None:
    with pytest.raises(HotlineError) as info:
        _update(homes["moscow"], "0f8fad5b-d9cb-469f-a165-70867728950e", CaseState.ACKNOWLEDGED)
    assert info.value.code is ErrorCode.NOT_FOUND


def test_allowed_moves() -> None:
    assert cases.allowed(CaseState.REFERRED, cases.Side.RECEIVER) == {
        CaseState.ACKNOWLEDGED,
        CaseState.DECLINED,
    }
    assert cases.allowed(CaseState.CLOSED, cases.Side.REFERRER) == frozenset()
    assert cases.allowed(CaseState.DECLINED, cases.Side.REFERRER) == {CaseState.CLOSED}


def _hostile_referral(objects: list[dict[str, object]]) -> dict[str, object]:
    return {
        "stix_bundle": {"type": "bundle", "id": "bundle--1", "objects": objects},
        "narrative": "n",
        "requested_actions": ["investigate"],
        "response_deadline": "2026-11-28T12:00:00Z",
        "tlp": "amber",
    }


def _apply(home: NodeHome, message_id: str, msg_type: str, body: dict[str, object]) -> None:
    with home.store.write() as conn:
        cases.on_message_committed(
            conn,
            direction="in",
            peer="washington",
            message_id=message_id,
            msg_type=msg_type,
            body=body,
            at_us=1,
        )


def test_hostile_referrals_from_a_peer_never_raise(homes: dict[str, NodeHome]) -> None:
    import time

    m = homes["moscow"]
    many = [{"type": "ipv4-addr", "id": f"ipv4-addr--{i}"} for i in range(100_000)]
    bad_stix = sample_bundle(1)["objects"]
    cases_ = {
        "01000000-0000-7000-8000-000000000001": _hostile_referral(many),  # 10^5 objects
        "01000000-0000-7000-8000-000000000002": _hostile_referral(many[:600]),  # over the cap
        "01000000-0000-7000-8000-000000000003": _hostile_referral(bad_stix),  # unmarked
        "01000000-0000-7000-8000-000000000004": {"stix_bundle": []},  # not a referral
    }
    stix.warm_up()  # the validator's first call loads its schemas (~2.5 s); a node does it at start
    started = time.monotonic()
    for message_id, body in cases_.items():
        _apply(m, message_id, "cyber_referral", body)
    assert time.monotonic() - started < 1.0
    _apply(m, "01000000-0000-7000-8000-000000000005", "case_update", {"case_id": "x"})
    _apply(m, "01000000-0000-7000-8000-000000000006", "free_text", {"text": "hello"})
    with m.store.read() as conn:
        found = {c.id: c for c in cases.list_cases(conn)}
        assert conn.execute(select(taxii_objects.c.pk)).all() == []
    # The 10^5-object body is over the catalog's 1 MiB: logged, no case. The others open a
    # case that is not served, with the reason.
    assert set(found) == {
        "01000000-0000-7000-8000-000000000002",
        "01000000-0000-7000-8000-000000000003",
    }
    assert "too_large" in (found["01000000-0000-7000-8000-000000000002"].problem or "")
    assert "stix_invalid" in (found["01000000-0000-7000-8000-000000000003"].problem or "")
    # What could not be applied is kept as refused events, and catch_up does not retry it.
    with m.store.read() as conn:
        refused = conn.execute(
            select(referral_events.c.message_id).where(referral_events.c.accepted == 0)
        ).all()
    assert len(refused) == 3
    with m.store.write() as conn:
        assert cases.catch_up(conn) == 0

"""An unacknowledged referral past its response deadline raises an alarm, like a message."""

from __future__ import annotations

from datetime import timedelta

from referral_helpers import NOW, TTL, bundle_bytes, sample_bundle
from sqlalchemy import select

from hotline.compose.catalog import RequestedAction, Tlp
from hotline.node.runtime import Node
from hotline.referrals import cases
from hotline.store.schema import security_events


def test_overdue_referral_escalates_once_per_interval(homes):
    washington = homes["washington"]
    body = cases.prepare_referral(
        bundle_bytes(sample_bundle()),
        narrative="Ransomware staging servers.",
        actions=[RequestedAction.TAKEDOWN],
        deadline=NOW + timedelta(hours=72),
        tlp=Tlp.AMBER,
        now=NOW,
    )
    case_id = cases.open_referral(
        washington.store,
        washington.identity,
        washington.peer_card("moscow"),
        body,
        now=NOW,
        ttl=TTL,
    )
    node = Node(washington)

    def alarms() -> list[str]:
        with washington.store.read() as conn:
            return [
                r.detail
                for r in conn.execute(
                    select(security_events.c.detail).where(security_events.c.code == "case_overdue")
                )
            ]

    node.escalate_overdue(NOW + timedelta(hours=71))
    assert alarms() == []
    node.escalate_overdue(NOW + timedelta(hours=73))
    node.escalate_overdue(NOW + timedelta(hours=73, seconds=10))  # within the interval
    assert len(alarms()) == 1 and case_id in alarms()[0]
    node.escalate_overdue(NOW + timedelta(hours=74))
    assert len(alarms()) == 2

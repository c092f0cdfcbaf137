"""An activity notification that meets one of our own planned activities raises an alarm with a
draft response, as soon as it is received."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hotline.cli import main
from hotline.link import outbox
from hotline.node.home import NodeHome
from hotline.node.runtime import Node
from hotline.store.messages import pending_outgoing
from hotline.store.schema import security_events

NOW = datetime.now(UTC)


def _window(hours: float) -> tuple[str, str]:
    start = NOW + timedelta(hours=hours)
    return (
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def test_a_conflicting_activity_notification_is_raised_on_arrival(tmp_path):
    homes = {
        name: NodeHome.init(
            tmp_path / name, name=name, listen=f"127.0.0.1:{port}", display_names={"en": name}
        )
        for name, port in (("washington", 18931), ("moscow", 18932))
    }
    w, m = homes["washington"], homes["moscow"]
    for home, other in ((w, m), (m, w)):
        card = other.card(NOW)
        home.add_peer(card, card.fingerprint, NOW)
    start, end = _window(2)
    # moscow's own plan: a sortie box over the sea.
    plan = tmp_path / "plan.geojson"
    plan.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "id": "SORTIE-7",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [
                                    [35.0, 34.0],
                                    [36.0, 34.0],
                                    [36.0, 35.0],
                                    [35.0, 35.0],
                                    [35.0, 34.0],
                                ]
                            ],
                        },
                        "properties": {
                            "altitude_lower": 3000,
                            "altitude_upper": 9000,
                            "time_start": start,
                            "time_end": end,
                        },
                    }
                ],
            }
        )
    )
    assert main(["deconflict", "add", str(plan), "--dir", str(m.dir)]) == 0
    # washington notifies an air activity (a circle) that crosses it.
    outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="activity_notification",
        priority="immediate",
        now=NOW,
        ttl=timedelta(hours=1),
        body={
            "kind": "air",
            "volumes": [
                {
                    "footprint": {"type": "Circle", "center": [35.5, 34.5], "radius_m": 20000},
                    "altitude": {"lower_m": 5000, "upper_m": 7000},
                    "window": {"start": start, "end": end},
                }
            ],
            "units": ["REACH 41"],
            "contact": "hotline desk 3",
        },
    )
    with w.store.read() as conn:
        envelopes = [o.envelope for o in pending_outgoing(conn, "moscow", 10)]
    Node(m).receive(envelopes, "test")
    with m.store.read() as conn:
        alarms = [
            r.detail
            for r in conn.execute(
                select(security_events.c.detail).where(
                    security_events.c.code == "deconfliction_conflict"
                )
            )
        ]
    assert len(alarms) == 1
    assert "SORTIE-7" in alarms[0] and "Draft response" in alarms[0]
    for home in homes.values():
        home.close()

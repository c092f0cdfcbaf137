"""Helpers of the referral tests: a STIX bundle to refer, in-process delivery between homes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hotline.link import inbox
from hotline.node.home import NodeHome
from hotline.referrals import cases
from hotline.store.messages import pending_outgoing

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=24)
T0 = "2026-11-18T00:00:00.000Z"


def sample_bundle(n_indicators: int = 2) -> dict[str, Any]:
    """Indicators, observed data, infrastructure, malware, a threat actor and relationships."""
    objects: list[dict[str, Any]] = [
        {
            "type": "threat-actor",
            "spec_version": "2.1",
            "id": "threat-actor--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
            "created": T0,
            "modified": T0,
            "name": "Grid scanner group",
            "description": "Operators of the scanning infrastructure.",
            "threat_actor_types": ["crime-syndicate"],
        },
        {
            "type": "malware",
            "spec_version": "2.1",
            "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
            "created": T0,
            "modified": T0,
            "name": "GridProbe",
            "description": "Scanner for industrial control protocols.",
            "malware_types": ["remote-access-trojan"],
            "is_family": True,
        },
        {
            "type": "infrastructure",
            "spec_version": "2.1",
            "id": "infrastructure--38c47d93-d984-4fd9-b87b-d69d0841628d",
            "created": T0,
            "modified": T0,
            "name": "Scanning host",
            "description": "A rented virtual server.",
            "infrastructure_types": ["command-and-control"],
        },
        {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
            "value": "198.51.100.3",
        },
        {
            "type": "observed-data",
            "spec_version": "2.1",
            "id": "observed-data--b67d30ff-02ac-498a-92f9-32f845f448cf",
            "created": T0,
            "modified": T0,
            "first_observed": "2026-11-18T02:00:00Z",
            "last_observed": "2026-11-19T02:00:00Z",
            "number_observed": 40,
            "object_refs": ["ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"],
        },
        {
            "type": "relationship",
            "spec_version": "2.1",
            "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad",
            "created": T0,
            "modified": T0,
            "relationship_type": "uses",
            "source_ref": "threat-actor--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
            "target_ref": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
        },
    ]
    for i in range(n_indicators):
        objects.append(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--8e2e2d2b-17d4-4cbf-938f-{i:012x}",
                "created": T0,
                "modified": T0,
                "name": f"Scanner address {i}",
                "description": "Source of scans against a power-grid operator.",
                "indicator_types": ["malicious-activity"],
                "pattern": f"[ipv4-addr:value = '198.51.100.{i % 250}']",
                "pattern_type": "stix",
                "valid_from": "2026-11-18T00:00:00Z",
            }
        )
    return {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": objects,
    }


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle).encode()


def deliver(sender: NodeHome, receiver: NodeHome, now: datetime = NOW) -> list[str]:
    """Carry the sender's queued envelopes to the receiver's inbox (no HTTP), then apply them
    to the receiver's cases as the inbox hook does; returns the delivered message ids."""
    with sender.store.read() as conn:
        pending = pending_outgoing(conn, receiver.config.name, 1000)
    result = inbox.receive(
        receiver.store,
        receiver.identity,
        receiver.peer_cards(),
        [p.envelope for p in pending],
        now=now,
        source="test",
    )
    back = result.receipts.get(sender.config.name, [])
    inbox.receive(sender.store, sender.identity, sender.peer_cards(), back, now=now, source="t")
    with receiver.store.write() as conn:
        cases.catch_up(conn)
    cases.validate_pending(receiver.store)  # as the node does after the inbox's transaction
    return list(result.delivered_ids)

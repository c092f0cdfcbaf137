"""A short storm in ``make test``: faults of every kind, kill -9 of both nodes and of the relay,
the direct path cut so that traffic goes through the relay, then every check of the chaos harness
(tests/chaos/storm.py). A failure prints the seed that replays it."""

from __future__ import annotations

import pytest
from faultproxy import Faults
from storm import Storm, StormPlan, storm_seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHORT_STORM = Faults(
    drop=0.08,
    duplicate=0.05,
    reorder=0.05,
    delay=0.1,
    truncate=0.03,
    corrupt=0.03,
    hang=0.005,
    max_delay_s=0.3,
    max_hold_s=1.5,
)


def test_a_short_storm_loses_nothing_duplicates_nothing_and_the_record_agrees(tmp_path):
    plan = StormPlan(
        seed=storm_seed(),
        faults=SHORT_STORM,
        messages=150,
        duration_s=20.0,
        kill_every_s=7.0,
        # Some calls of many messages, so that damaged bytes hit batches of several envelopes.
        batch=(1, 32),
        drain_timeout_s=60.0,
        # Each peer's transports: direct (through the proxies), then the relay geneva, which is
        # killed with SIGKILL now and then while the direct path is cut for seconds at a time.
        relay=True,
        relay_kill_every_s=6.0,
        cut_every_s=8.0,
        cut_s=4.0,
    )
    with Storm(tmp_path, plan) as storm:
        report = storm.run()
    print(report.summary())
    assert report.problems == [], report.summary()
    assert report.lost == 0 and report.duplicates == 0
    assert len(report.kills) >= 1
    assert report.cuts and report.relay_kills
    assert sum(report.relayed.values()) > 0 and sum(report.failovers.values()) > 0
    assert report.faults.get("drop_answer", 0) + report.faults.get("drop_request", 0) > 0

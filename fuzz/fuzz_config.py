"""Fuzz target: a node's configuration file, node.toml (NodeConfig.from_bytes).

Not from the network, but from a file an administrator edits (and a restore from backup).
Seeds: the file ``hotline init`` writes, and one with every optional table. Contract: only typed
errors (ConfigError); a configuration that loads writes back (to_toml) to the same settings.

    .venv/bin/python fuzz/fuzz_config.py -runs=1000000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["hotline"]):
    from _common import run

    from hotline.errors import HotlineError
    from hotline.node.home import NodeConfig

FULL = NodeConfig(
    name="washington",
    role="node",
    listen_host="::1",
    listen_port=8400,
    endpoint="https://hotline.example.gov:8400",
    display_names={"en": 'The "White House"', "ru": "Белый дом"},
    alternate_endpoints=["http://10.0.0.1:8400"],
    peer_ack_deadlines_s={"moscow": {"flash": 120.0}},
    groups={"osce": ["moscow", "beijing"]},
)
SEEDS = [NodeConfig(name="moscow").to_toml().encode(), FULL.to_toml().encode()]


def test_one_input(data: bytes) -> None:
    try:
        config = NodeConfig.from_bytes(data)
    except HotlineError:
        return
    if NodeConfig.from_bytes(config.to_toml().encode("utf-8")) != config:
        raise AssertionError("a configuration does not survive writing and reading back")


if __name__ == "__main__":
    run("config", test_one_input, SEEDS)
    sys.exit(0)

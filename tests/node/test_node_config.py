"""node.toml: any configuration we write reads back to the same settings, and any file an
administrator (or a bad restore) leaves behind is a ConfigError with a reason, never a crash."""

from __future__ import annotations

import contextlib
import dataclasses
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.errors import ConfigError
from hotline.link.deadlines import default_deadlines
from hotline.node.home import MAX_CONFIG_BYTES, NodeConfig

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
POSITIVE = st.floats(min_value=0.001, max_value=1e9)

CONFIGS = st.builds(
    NodeConfig,
    name=NAMES,
    listen_host=st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "node.example"]),
    listen_port=st.integers(1, 65535),
    endpoint=TEXT,
    display_names=st.dictionaries(TEXT, TEXT, max_size=3),
    heartbeat_interval_s=POSITIVE,
    retry_cap_s=POSITIVE,
    default_ttl_s=POSITIVE,
    store_url=TEXT,
    role=st.sampled_from(["node", "witness", "relay"]),
    ack_deadlines_s=st.dictionaries(TEXT, POSITIVE, max_size=3),
    escalation_interval_s=POSITIVE,
    peer_ack_deadlines_s=st.dictionaries(
        NAMES, st.dictionaries(TEXT, POSITIVE, max_size=2), max_size=2
    ),
    alternate_endpoints=st.lists(TEXT, max_size=3),
    max_clock_skew_s=POSITIVE,
    witness_stale_s=POSITIVE,
    rate_limit_per_s=POSITIVE,
    rate_limit_burst=st.floats(min_value=1, max_value=1e6),
    groups=st.dictionaries(TEXT, st.lists(NAMES, max_size=3), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(CONFIGS)
def test_every_configuration_reads_back_unchanged(config):
    again = NodeConfig.from_bytes(config.to_toml().encode("utf-8"))
    # Deadlines are read over the defaults: a priority the file omits keeps its default.
    assert again.ack_deadlines_s == {**default_deadlines(), **config.ack_deadlines_s}
    assert dataclasses.replace(again, ack_deadlines_s=config.ack_deadlines_s) == config


LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                'name = "moscow"',
                "[display_names]",
                "[groups]",
                "[ack_deadlines_s]",
                "[peer_ack_deadlines_s.beijing]",
                "display_names = 5",
                'groups = {all = "moscow"}',
                "rate_limit_per_s = 0",
                "rate_limit_burst = 0.5",
                "heartbeat_interval_s = nan",
                "retry_cap_s = -inf",
                "default_ttl_s = 1979-05-27T07:32:00Z",
                'role = "king"',
                'listen = "nowhere"',
                "alternate_endpoints = 3",
                "peer_ack_deadlines_s = {moscow = 3}",
            ]
        ),
        st.builds(
            lambda k, v: f"{k} = {v}",
            st.text(string.ascii_lowercase + "_", min_size=1, max_size=20),
            st.text(max_size=20),
        ),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(LINES.map("\n".join).map(str.encode) | st.binary(max_size=300))
def test_any_file_is_a_configuration_or_a_config_error(data):
    with contextlib.suppress(ConfigError):
        NodeConfig.from_bytes(data)


@pytest.mark.parametrize(
    "text",
    [
        'name = "m"\ndisplay_names = "x"',  # a string where a table belongs: was AttributeError
        'name = "m"\n[groups]\nall = "moscow"',  # a string, not a list: was split into letters
        'name = "m"\nrate_limit_per_s = 0',  # was accepted, then crashed the node at start
        'name = "m"\nrate_limit_burst = 0.5',
        'name = "m"\nheartbeat_interval_s = nan',
        'name = "m"\nrole = "king"',
    ],
)
def test_settings_that_used_to_slip_through_are_config_errors(text):
    with pytest.raises(ConfigError):
        NodeConfig.from_bytes(text.encode())


def test_text_that_used_to_be_written_as_invalid_toml_reads_back():
    config = NodeConfig(
        name="moscow", display_names={"en us": 'line\none\t"two"\x7f'}, groups={"a.b": ["x"]}
    )
    assert NodeConfig.from_bytes(config.to_toml().encode()) == config


def test_bytes_that_are_not_utf8_or_too_many_are_config_errors():
    for data in (b'name = "\xff"', b"#" * (MAX_CONFIG_BYTES + 1)):
        with pytest.raises(ConfigError):
            NodeConfig.from_bytes(data)

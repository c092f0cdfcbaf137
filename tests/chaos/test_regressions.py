"""Bugs the chaos storm found, each pinned by a test named after it."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from hotline.errors import ErrorCode, WireError
from hotline.node.app import read_body


def test_a_request_cut_mid_body_is_a_malformed_refusal_not_an_internal_error():
    """A path that broke mid-request made the node log "unexpected error" with a traceback and
    answer 500 internal (storm seed 1684538997, a truncated request)."""
    parts = [
        {"type": "http.request", "body": b"HLB1\x00\x01", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive():
        return parts.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/v1/envelopes", "headers": []}
    with pytest.raises(WireError) as caught:
        asyncio.run(read_body(Request(scope, receive), 1024))
    assert caught.value.code == ErrorCode.MALFORMED
    assert "after 6 bytes" in caught.value.detail

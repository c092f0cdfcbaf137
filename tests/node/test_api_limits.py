"""Limits of the node's surfaces other than the link: the operator API (``/api/v1``), the
console and TAXII each have a rate limit per source address and a body limit of their own
(threat model F11, F12). Driven through the node's ASGI app, one client address per client."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hotline.node.app import (
    MAX_CONSOLE_BODY_BYTES,
    MAX_REQUEST_BYTES,
    MAX_TAXII_BODY_BYTES,
    create_app,
    surface,
)
from hotline.node.home import CONFIG_FILE, NodeHome
from hotline.node.runtime import Node
from hotline.referrals.taxii import MAX_CONTENT_LENGTH, PREFIX


@pytest.fixture
def home(tmp_path: Path) -> Iterator[NodeHome]:
    made = NodeHome.init(
        tmp_path / "w", name="washington", listen="127.0.0.1:1", display_names={"en": "W"}
    )
    config = dataclasses.replace(made.config, api_rate_limit_per_s=0.01, api_rate_limit_burst=4)
    (made.dir / CONFIG_FILE).write_text(config.to_toml())
    made.close()
    home = NodeHome(made.dir)
    yield home
    home.close()


def _client(app, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 1000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def test_paths_map_to_their_surface_and_the_taxii_limit_is_what_taxii_advertises():
    assert surface("/v1/envelopes") == "link"
    assert surface("/api/v1/messages/batch") == "operator"
    assert surface(f"{PREFIX}/hotline/collections/") == "taxii"
    for path in ("/", "/login", "/static/app.js", "/healthz", "/openapi.json", "/api/v10"):
        assert surface(path) == "console", path
    assert MAX_TAXII_BODY_BYTES == MAX_CONTENT_LENGTH


def test_a_flooding_operator_client_gets_429_on_each_surface_and_others_are_served(
    home: NodeHome, caplog
) -> None:
    token = {"authorization": f"Bearer {home.api_token}"}
    taxii = {"accept": "application/taxii+json;version=2.1"}

    async def run() -> dict[str, list[int]]:
        app = create_app(Node(home))
        codes: dict[str, list[int]] = {}
        async with _client(app, "192.0.2.1") as a, _client(app, "192.0.2.2") as b:
            codes["operator"] = [
                (await a.get("/api/v1/links", headers=token)).status_code for _ in range(6)
            ]
            codes["console"] = [(await a.get("/login")).status_code for _ in range(6)]
            codes["taxii"] = [(await a.get(f"{PREFIX}/", headers=taxii)).status_code] * 1
            codes["taxii"] += [
                (await a.get(f"{PREFIX}/", headers=taxii)).status_code for _ in range(5)
            ]
            refused = await a.get("/api/v1/links", headers=token)
            codes["refused"] = [refused.status_code]
            assert refused.json()["error"]["code"] == "rate_limited"
            assert "operator" in refused.json()["error"]["detail"]
            # The link endpoints keep their own budget; another address has its own.
            codes["link, same address"] = [(await a.get("/v1/card")).status_code]
            codes["other address"] = [
                (await b.get("/api/v1/links", headers=token)).status_code,
                (await b.get("/login")).status_code,
            ]
        return codes

    with caplog.at_level(logging.INFO, logger="hotline.node.app"):
        codes = asyncio.run(run())
    assert codes["operator"] == [200] * 4 + [429] * 2
    assert codes["console"] == [200] * 4 + [429] * 2
    assert codes["taxii"][:4] == [401] * 4  # served (and refused for want of an account)
    assert codes["taxii"][4:] == [429] * 2
    assert codes["refused"] == [429]
    assert codes["link, same address"] == [200]
    assert codes["other address"] == [200, 200]
    assert any("rate_limited" in r.message and "/api/v1/links" in r.message for r in caplog.records)


def test_each_surface_refuses_a_body_over_its_own_limit(tmp_path: Path) -> None:
    home = NodeHome.init(
        tmp_path / "m", name="moscow", listen="127.0.0.1:1", display_names={"en": "M"}
    )
    token = {"authorization": f"Bearer {home.api_token}"}

    async def run() -> list[httpx.Response]:
        app = create_app(Node(home))
        async with _client(app, "192.0.2.9") as c:
            over_console = b"x" * (MAX_CONSOLE_BODY_BYTES + 1)
            over_taxii = b"x" * (MAX_TAXII_BODY_BYTES + 1)
            return [
                await c.post("/login", content=over_console),
                await c.post(f"{PREFIX}/hotline/collections/", content=over_taxii),
                await c.post("/api/v1/messages", content=over_taxii, headers=token),
                await c.post("/api/v1/messages", content=b"x" * (MAX_REQUEST_BYTES + 1)),
            ]

    replies = asyncio.run(run())
    home.close()
    for reply in replies[:1] + replies[3:]:
        assert reply.status_code == 400
        assert reply.json()["error"]["code"] == "too_large"
    # TAXII refuses in its own error shape (TAXII 2.1 section 3.6.1).
    assert replies[1].status_code == 400
    assert replies[1].json()["title"] == "too_large"
    assert replies[1].headers["content-type"].startswith("application/taxii+json")
    # The operator API takes bodies up to 16 MiB (256 messages): 1 MiB is parsed, not refused.
    assert replies[2].status_code == 422
    assert replies[2].json()["error"]["code"] == "invalid_input"

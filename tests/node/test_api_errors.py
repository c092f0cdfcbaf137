"""Refusals the framework makes before a handler runs are answered in the documented error
shape, and the spec documents that shape on every operation (regressions from schemathesis,
tests/integration/test_api_schema.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hotline.node.app import create_app
from hotline.node.home import NodeHome
from hotline.node.runtime import Node


@pytest.fixture
def home(tmp_path: Path) -> Iterator[NodeHome]:
    home = NodeHome.init(
        tmp_path / "w", name="washington", listen="127.0.0.1:1", display_names={"en": "W"}
    )
    yield home
    home.close()


NON_ASCII_TOKEN = "Bearer \xe9t\xe9".encode("latin-1")


def _requests(home: NodeHome) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        app = create_app(Node(home))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            token = {"authorization": f"Bearer {home.api_token}"}
            return [
                # Not JSON: FastAPI answered {"detail": "There was an error parsing the body"}.
                await client.post(
                    "/v1/witness/cosign",
                    content=b'{"a\x80": 1}',  # not UTF-8
                    headers={"content-type": "application/json"},
                ),
                await client.get("/v1/no-such-thing"),
                await client.delete("/v1/card"),
                # A token with a non-ASCII character: hmac.compare_digest raised TypeError (500).
                await client.get("/api/v1/links", headers={"authorization": NON_ASCII_TOKEN}),
                await client.get("/api/v1/links"),
                await client.get("/api/v1/links", headers=token),
            ]

    return asyncio.run(run())


def test_framework_refusals_have_the_documented_shape(home: NodeHome) -> None:
    responses = _requests(home)
    assert [r.status_code for r in responses] == [400, 404, 405, 401, 401, 200]
    codes = [r.json()["error"]["code"] for r in responses[:-1]]
    assert codes == ["malformed", "not_found", "invalid_input", "unauthorized", "unauthorized"]


def test_the_spec_documents_errors_and_the_bearer_token(home: NodeHome) -> None:
    spec = create_app(Node(home)).openapi()
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert {"4XX", "5XX"} <= set(operation["responses"]), (method, path)
            if path.startswith("/api/"):
                assert operation["security"] == [{"HTTPBearer": []}], (method, path)
    batch = spec["paths"]["/v1/envelopes"]["post"]["requestBody"]["content"]
    assert batch["application/vnd.hotline.batch"]["schema"]["maxLength"] == 16 * 1024 * 1024


def test_every_body_is_bounded_before_it_is_parsed(home: NodeHome) -> None:
    """A JSON body is read whole by the framework before field limits apply: 17 MiB to the
    operator API or to the (unauthenticated) cosign endpoint is refused as too large."""
    big = b'{"to": "' + b"x" * (17 * 1024 * 1024) + b'"}'

    async def run() -> list[httpx.Response]:
        app = create_app(Node(home))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            token = {"authorization": f"Bearer {home.api_token}"}

            async def chunks():
                for i in range(0, len(big), 1 << 20):
                    yield big[i : i + (1 << 20)]

            return [
                await client.post("/api/v1/messages", content=big, headers=token),
                await client.post("/v1/witness/cosign", content=big),
                # No declared length (chunked): refused while it streams.
                await client.post("/api/v1/messages", content=chunks(), headers=token),
            ]

    for response in asyncio.run(run()):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "too_large"


def test_the_send_route_binds_its_request_as_fastapi_does(home: NodeHome) -> None:
    """``POST /api/v1/messages`` skips FastAPI's routing (``hotline.node.app.HotRoutes``): its
    token, query and body are refused with the status, code and field names that FastAPI's
    binding gives them, and a valid request is queued."""
    peer = NodeHome.init(
        home.dir.parent / "m", name="moscow", listen="127.0.0.1:2", display_names={"en": "M"}
    )
    card = peer.card(datetime.now(UTC))
    home.add_peer(card, card.fingerprint, datetime.now(UTC))
    peer.close()
    token = {"authorization": f"Bearer {home.api_token}"}
    message = {"to": "moscow", "text": "x"}

    async def run() -> list[httpx.Response]:
        app = create_app(Node(home))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            path = "/api/v1/messages"
            return [
                await client.post(path, json=message),
                await client.post(path, json=message, headers={"authorization": "Basic x"}),
                await client.post(path, json=message, params={"timeout": -1}, headers=token),
                await client.post(path, json=message, params={"wait": "sent"}, headers=token),
                await client.post(path, json={**message, "bogus": 1}, headers=token),
                await client.post(
                    path, json={"text": "x"}, params={"timeout": "soon"}, headers=token
                ),
                await client.post(path, content=b"{", headers=token),
                await client.post(path, content=b'{"to": "\xff"}', headers=token),
                await client.post(
                    path, content=b"to=moscow", headers={**token, "content-type": "text/plain"}
                ),
                await client.post(path, json={"to": "nobody", "text": "x"}, headers=token),
                await client.post(path, json=message, headers=token),
            ]

    replies = asyncio.run(run())
    assert [r.status_code for r in replies] == [401, 401] + [422] * 7 + [404, 200]
    errors = [r.json()["error"] for r in replies[:-1]]
    assert [e["code"] for e in errors] == ["unauthorized"] * 2 + ["invalid_input"] * 7 + [
        "not_found"
    ]
    assert set(errors[2]["fields"]) == {"query.timeout"}
    assert set(errors[3]["fields"]) == {"query.wait"}
    assert set(errors[4]["fields"]) == {"bogus"}
    assert set(errors[5]["fields"]) == {"query.timeout", "to"}  # both at once
    assert replies[-1].json()["state"] == "queued" and replies[-1].json()["id"]

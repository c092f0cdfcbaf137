"""The direct transport: envelopes over HTTP(S) to the peer's endpoint.

``POST /v1/envelopes`` carries a batch (``hotline.core.envelope.encode_batch``) and answers JSON::

    {"receipts": ["<base64 envelope>", ...], "results": [{"id": ..., "status": ...}, ...],
     "next_expected": 17}

``POST /v1/heartbeat`` carries one heartbeat envelope and answers the peer's heartbeat envelope.
Everything in a reply is untrusted: receipts go through the inbox like any envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from hotline.core.encoding import b64decode, decode_json
from hotline.core.envelope import MAX_BATCH_ENVELOPES, MAX_ENVELOPE_BYTES, encode_batch
from hotline.errors import ErrorCode, TransportError

BATCH_CONTENT_TYPE = "application/vnd.hotline.batch"
ENVELOPE_CONTENT_TYPE = "application/vnd.hotline.envelope"
#: Connect and read timeouts: a peer that does not answer within this is treated as down.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 15.0
MAX_REPLY_BYTES = 4 * MAX_BATCH_ENVELOPES * 8 * 1024 + MAX_ENVELOPE_BYTES


class _Result(msgspec.Struct, forbid_unknown_fields=True):
    id: str | None
    status: str
    code: str | None = None
    detail: str | None = None


class _BatchReply(msgspec.Struct, forbid_unknown_fields=True):
    receipts: list[str]
    results: list[_Result]
    next_expected: int | None = None


@dataclass(frozen=True, slots=True)
class BatchReply:
    receipts: list[bytes]
    results: list[dict[str, Any]]
    next_expected: int | None


class HttpTransport:
    """One connection pool to one peer; the delivery worker keeps one request in flight."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            trust_env=False,
        )

    async def _read_limited(self, response: httpx.Response, what: str) -> bytes:
        """The body, refused as soon as it passes MAX_REPLY_BYTES (never buffered whole)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise TransportError(f"{what}: reply over {MAX_REPLY_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def exchange(self, path: str, payload: object) -> tuple[int, bytes]:
        """POST JSON; the status and body, whatever the status (the caller reads errors)."""
        what = f"{self.endpoint}{path}"
        try:
            async with self._client.stream("POST", what, json=payload) as response:
                return response.status_code, await self._read_limited(response, what)
        except httpx.HTTPError as e:
            raise TransportError(f"{what}: {e.__class__.__name__}: {e}") from e

    async def _request(self, method: str, path: str, **kwargs: object) -> bytes:
        what = f"{self.endpoint}{path}"
        try:
            async with self._client.stream(method, what, **kwargs) as response:  # type: ignore[arg-type]
                data = await self._read_limited(response, what)
                status = response.status_code
        except httpx.HTTPError as e:
            raise TransportError(f"{what}: {e.__class__.__name__}: {e}") from e
        if status != 200:
            # 429 is the peer's rate limit: "not now", which is no refusal of the request itself.
            # 503: this endpoint cannot serve now (a standby replica, a store outage) but another
            # endpoint of the peer may: a path failure, as an unreachable one (failover).
            code = ErrorCode.PEER_REFUSED
            if status == 429:
                code = ErrorCode.RATE_LIMITED
            elif status == 503:
                code = ErrorCode.PEER_UNREACHABLE
            raise TransportError(f"{what}: HTTP {status}: {data[:300]!r}", code=code)
        return data

    async def _post(self, path: str, body: bytes, content_type: str) -> bytes:
        return await self._request(
            "POST", path, content=body, headers={"content-type": content_type}
        )

    async def get(self, path: str, params: dict[str, str | int]) -> bytes:
        return await self._request("GET", path, params=params)

    async def send_batch(self, envelopes: list[bytes]) -> BatchReply:
        data = await self._post("/v1/envelopes", encode_batch(envelopes), BATCH_CONTENT_TYPE)
        try:
            reply = decode_json(data, _BatchReply, what="batch reply", limit=MAX_REPLY_BYTES)
            receipts = [
                b64decode(r, what="receipt", limit=MAX_ENVELOPE_BYTES) for r in reply.receipts
            ]
        except Exception as e:
            raise TransportError(f"{self.endpoint}: malformed batch reply: {e}") from e
        return BatchReply(
            receipts=receipts,
            results=[msgspec.to_builtins(r) for r in reply.results],
            next_expected=reply.next_expected,
        )

    async def send_heartbeat(self, envelope: bytes) -> bytes:
        return await self._post("/v1/heartbeat", envelope, ENVELOPE_CONTENT_TYPE)

    async def close(self) -> None:
        await self._client.aclose()

"""The direct transport: envelopes over HTTP(S) to the peer's endpoint.

``POST /v1/envelopes`` carries a batch (``hotline.core.envelope.encode_batch``) and answers JSON::

    {"receipts": ["<base64 envelope>", ...], "results": [{"id": ..., "status": ...}, ...],
     "next_expected": 17}

``POST /v1/heartbeat`` carries one heartbeat envelope and answers the peer's heartbeat envelope.
Everything in a reply is untrusted: receipts go through the inbox like any envelope.

An ``https://`` endpoint is reached over TLS 1.3 trusting exactly the certificate pinned in the
peer's signed card (``hotline.link.tls``); a server showing any other certificate is refused
with ``tls_pin_mismatch``, and an https endpoint of a card without a certificate is never tried.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from hotline.core.encoding import b64decode, decode_json
from hotline.core.envelope import MAX_BATCH_ENVELOPES, MAX_ENVELOPE_BYTES, encode_batch
from hotline.errors import ErrorCode, TransportError
from hotline.link.http_client import AsyncStreamTransport
from hotline.link.tls import pin_failure, pin_mismatch, pinned_client_context

BATCH_CONTENT_TYPE = "application/vnd.hotline.batch"
ENVELOPE_CONTENT_TYPE = "application/vnd.hotline.envelope"
#: Connect and read timeouts: a peer that does not answer within this is treated as down. The
#: read timeout is short so that a path that silently stops answering (a cut cable: packets
#: dropped on an open connection) is given up within seconds and the link fails over to its
#: next transport; a peer answers a batch in tens of milliseconds.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
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

    def __init__(
        self, endpoint: str, tls_cert: bytes | None = None, read_timeout_s: float = READ_TIMEOUT_S
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        #: Why this endpoint can never be used (an https endpoint with nothing to pin).
        self.unusable: str | None = None
        pinned: ssl.SSLContext | None = None
        if self.endpoint.startswith("https://"):
            if tls_cert is None:
                self.unusable = (
                    f"{self.endpoint}: https endpoint, but the peer's card pins no TLS "
                    "certificate; refusing to trust any other"
                )
            else:
                pinned = pinned_client_context(tls_cert)
        # Requests go to the transport directly, not through an httpx.AsyncClient: the
        # client's per-request work (merging URLs and headers, cookies, auth and redirect
        # hooks, none of which the link uses) was a tenth of a millisecond per envelope batch.
        self._transport = AsyncStreamTransport(pinned, max_idle=2)
        self._timeout = httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S).as_dict()
        self._urls: dict[str, httpx.URL] = {}

    def _failed(self, what: str, error: httpx.HTTPError) -> TransportError:
        cause = pin_failure(error)
        if cause is not None:
            return pin_mismatch(self.endpoint, cause)
        return TransportError(f"{what}: {error.__class__.__name__}: {error}")

    def _check_usable(self) -> None:
        if self.unusable is not None:
            raise TransportError(self.unusable, code=ErrorCode.TLS_PIN_MISMATCH)

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

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(f"{self.endpoint}{path}")
        return url

    async def _call(self, request: httpx.Request, what: str) -> tuple[int, bytes]:
        """Send ``request``; its status and body (bounded). The connection goes back to the
        pool once the body is read (or is closed on any error)."""
        try:
            response = await self._transport.handle_async_request(request)
            try:
                return response.status_code, await self._read_limited(response, what)
            finally:
                await response.aclose()
        except httpx.HTTPError as e:
            raise self._failed(what, e) from e

    async def exchange(self, path: str, payload: object) -> tuple[int, bytes]:
        """POST JSON; the status and body, whatever the status (the caller reads errors)."""
        self._check_usable()
        request = httpx.Request(
            "POST", self._url(path), json=payload, extensions={"timeout": self._timeout}
        )
        return await self._call(request, f"{self.endpoint}{path}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str | int] | None = None,
    ) -> bytes:
        self._check_usable()
        what = f"{self.endpoint}{path}"
        request = httpx.Request(
            method,
            self._url(path),
            params=params,
            content=content,
            headers=headers,
            extensions={"timeout": self._timeout},
        )
        status, data = await self._call(request, what)
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

    async def post(self, path: str, body: bytes, content_type: str) -> bytes:
        """POST raw bytes; the body of a 200 answer (anything else raises, as ``get``)."""
        return await self._post(path, body, content_type)

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
        await self._transport.aclose()

"""The relay transport: sealed envelopes handed to a neutral relay, and pulled from it.

A node registered with a relay (``hotline peer add`` of the relay's card, and the relay adds the
node's) deposits envelopes for a peer with a signed ``relay-deposit`` request and pulls its own
mail with signed ``relay-pull`` requests (``hotline.core.relay``), over the same pinned TLS as any
direct link. Nothing comes back synchronously: the peer's DELIVERED receipts and heartbeat replies
come through the relay too, and reach the node's inbox and heartbeat checks exactly like envelopes
that came directly (``Node`` runs one pull loop per relay).
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from hotline.core.card import Card, Identity
from hotline.core.encoding import b64decode, b64encode, decode_json
from hotline.core.envelope import MAX_ENVELOPE_BYTES, new_id
from hotline.core.relay import sign_deposit, sign_pull
from hotline.errors import ErrorCode, ProtocolError, TransportError
from hotline.link.transport_http import MAX_REPLY_BYTES, READ_TIMEOUT_S, HttpTransport

#: How long a pull waits at the relay for mail (within the client's read timeout).
PULL_WAIT_S = 10


class _DepositReply(msgspec.Struct, forbid_unknown_fields=True):
    accepted: int
    duplicates: int


class _PullReply(msgspec.Struct, forbid_unknown_fields=True):
    envelopes: list[str]
    cursor: int


class _ErrorReply(msgspec.Struct):
    error: dict[str, object]


class RelayClient:
    """This node's connection to one relay, shared by every peer link that uses it."""

    def __init__(self, identity: Identity, relay: Card) -> None:
        if not relay.endpoints:
            raise ProtocolError(f"relay {relay.name!r} has no endpoint")
        self.identity = identity
        self.relay = relay
        self.name = f"relay:{relay.name}"
        # Reads may wait for a long-polled pull; a dead relay is still noticed within this.
        self.http = HttpTransport(
            relay.endpoints[0], relay.tls_cert, read_timeout_s=PULL_WAIT_S + READ_TIMEOUT_S
        )

    def _refusal(self, status: int, data: bytes) -> TransportError:
        try:
            error = decode_json(data, _ErrorReply, what="relay error", limit=64 * 1024).error
        except Exception:  # an unreadable refusal is still a refusal
            error = {"detail": data[:200].decode("utf-8", "replace")}
        return TransportError(
            f"relay {self.relay.name} refused (HTTP {status}): {error}",
            code=ErrorCode.PEER_REFUSED,
        )

    async def deposit(self, envelopes: list[bytes]) -> tuple[int, int]:
        """Hand envelopes to the relay; (accepted, duplicates) once it has committed them."""
        now = datetime.now(UTC)
        request = sign_deposit(
            self.identity,
            relay=self.relay.name,
            request_id=new_id(now),
            created=now,
            envelopes=envelopes,
        )
        status, data = await self.http.exchange(
            "/v1/relay/deposit",
            {"request": b64encode(request), "envelopes": [b64encode(e) for e in envelopes]},
        )
        if status != 200:
            raise self._refusal(status, data)
        try:
            reply = decode_json(data, _DepositReply, what="deposit reply", limit=64 * 1024)
        except Exception as e:
            raise TransportError(f"{self.name}: malformed deposit reply: {e}") from e
        return reply.accepted, reply.duplicates

    async def pull(self, after: int, wait: int = PULL_WAIT_S) -> tuple[list[bytes], int]:
        """Our mail after ``after`` (confirming that we hold everything up to it), and the new
        cursor; the relay holds the request up to ``wait`` seconds while there is none."""
        now = datetime.now(UTC)
        request = sign_pull(
            self.identity,
            relay=self.relay.name,
            request_id=new_id(now),
            created=now,
            after=after,
            wait=wait,
        )
        status, data = await self.http.exchange("/v1/relay/pull", {"request": b64encode(request)})
        if status != 200:
            raise self._refusal(status, data)
        try:
            reply = decode_json(data, _PullReply, what="pull reply", limit=MAX_REPLY_BYTES)
            envelopes = [
                b64decode(e, what="relayed envelope", limit=MAX_ENVELOPE_BYTES)
                for e in reply.envelopes
            ]
        except Exception as e:
            raise TransportError(f"{self.name}: malformed pull reply: {e}") from e
        if reply.cursor < after:
            raise TransportError(f"{self.name}: pull cursor went back ({reply.cursor} < {after})")
        return envelopes, reply.cursor

    async def close(self) -> None:
        await self.http.close()


__all__ = ["PULL_WAIT_S", "RelayClient"]

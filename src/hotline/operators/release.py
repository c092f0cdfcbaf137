"""Two-person release: a message of a listed priority waits until a second person approves it.

The rules (each a check in ``ReleaseQueue``):

1. ``needs_release(priority)``: FLASH messages need a second person (``RELEASE_PRIORITIES``).
2. Only a role with ``Permission.RELEASE`` approves or rejects; never the message's author.
3. A rejection needs a reason; the author sees it.
4. A request is decided once: the state moves ``pending -> releasing -> released`` or
   ``pending -> rejected`` by conditional updates, so two releasers cannot both send it.
5. Approving calls ``send(request)``, which queues the messages and returns their ids; if it
   fails, the request goes back to ``pending`` and the error is raised.

The author and the releaser are signed into the message itself: ``signed_identity()`` gives
``{"author": ..., "released_by": ...}`` and the console passes them to ``Node.send_many``, whose
drafts carry them into the signed statement; the node refuses a message that needs release and
has no releaser, or one released by its own author (``release_required``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import desc, insert, select, update

from hotline.core.encoding import to_us
from hotline.errors import ErrorCode, InputError, NotFoundError, ProtocolError
from hotline.operators._registry import ForbiddenError, Operator, Permission
from hotline.operators._schema import release_requests
from hotline.store import Store

#: Priorities whose messages wait for a second person before they are sent.
RELEASE_PRIORITIES: Final = frozenset({"flash"})
#: Longest rejection reason kept.
MAX_REASON_CHARS: Final = 2000
#: Decided requests listed under the pending ones.
RECENT_DECISIONS: Final = 30


class ReleaseState(StrEnum):
    PENDING = "pending"
    RELEASING = "releasing"
    RELEASED = "released"
    REJECTED = "rejected"


def needs_release(priority: str) -> bool:
    return priority in RELEASE_PRIORITIES


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    id: str
    author: str
    msg_type: str
    priority: str
    recipients: tuple[str, ...]
    body: dict[str, Any]
    in_reply_to: str | None
    state: ReleaseState
    created_at_us: int
    decided_by: str | None
    decided_at_us: int | None
    reason: str
    message_ids: tuple[str, ...]

    def signed_identity(self) -> dict[str, str]:
        """What the link should sign into each released message: author and releaser."""
        out = {"author": self.author}
        released = (ReleaseState.RELEASING, ReleaseState.RELEASED)
        if self.decided_by is not None and self.state in released:
            out["released_by"] = self.decided_by
        return out


#: Queues a released request's messages (one per recipient); returns their ids.
Sender = Callable[[ReleaseRequest], list[str]]


def _request(row: Any) -> ReleaseRequest:
    return ReleaseRequest(
        id=row.id,
        author=row.author,
        msg_type=row.msg_type,
        priority=row.priority,
        recipients=tuple(json.loads(row.recipients)),
        body=json.loads(row.body),
        in_reply_to=row.in_reply_to,
        state=ReleaseState(row.state),
        created_at_us=int(row.created_at_us),
        decided_by=row.decided_by,
        decided_at_us=row.decided_at_us,
        reason=row.reason,
        message_ids=tuple(json.loads(row.message_ids)),
    )


class ReleaseQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(
        self,
        author: Operator,
        *,
        msg_type: str,
        priority: str,
        recipients: Sequence[str],
        body: dict[str, Any],
        in_reply_to: str | None,
        now: datetime,
    ) -> ReleaseRequest:
        """Put a composed (already validated) message in the queue."""
        if not author.can(Permission.SEND):
            raise ForbiddenError(f"{author.role} may not send")
        if not recipients:
            raise InputError("no recipients", fields={"to": "choose at least one"})
        request_id = str(uuid.uuid4())
        with self.store.write() as conn:
            conn.execute(
                insert(release_requests).values(
                    id=request_id,
                    author=author.name,
                    msg_type=msg_type,
                    priority=priority,
                    recipients=json.dumps(list(recipients)),
                    body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                    in_reply_to=in_reply_to,
                    state=ReleaseState.PENDING.value,
                    created_at_us=to_us(now),
                    decided_by=None,
                    decided_at_us=None,
                    reason="",
                    message_ids="[]",
                )
            )
        return self.get(request_id)

    def get(self, request_id: str) -> ReleaseRequest:
        with self.store.read() as conn:
            row = conn.execute(
                select(release_requests).where(release_requests.c.id == request_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no release request {request_id!r}")
        return _request(row)

    def pending(self) -> list[ReleaseRequest]:
        """Requests waiting for a decision, oldest first."""
        with self.store.read() as conn:
            rows = conn.execute(
                select(release_requests)
                .where(release_requests.c.state == ReleaseState.PENDING.value)
                .order_by(release_requests.c.created_at_us)
            )
            return [_request(r) for r in rows]

    def recent(self, limit: int = RECENT_DECISIONS) -> list[ReleaseRequest]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(release_requests)
                .where(release_requests.c.state != ReleaseState.PENDING.value)
                .order_by(desc(release_requests.c.decided_at_us))
                .limit(limit)
            )
            return [_request(r) for r in rows]

    def _check_decider(self, request: ReleaseRequest, decider: Operator) -> None:
        if not decider.can(Permission.RELEASE):
            raise ForbiddenError(f"{decider.role} may not release")
        if decider.name == request.author:
            raise ForbiddenError(
                "the author of a message cannot release or reject it; a second person must"
            )

    def _move(
        self, request_id: str, from_state: ReleaseState, values: dict[str, Any]
    ) -> ReleaseRequest:
        with self.store.write() as conn:
            moved = conn.execute(
                update(release_requests)
                .where(
                    release_requests.c.id == request_id,
                    release_requests.c.state == from_state.value,
                )
                .values(**values)
            ).rowcount
        if not moved:
            current = self.get(request_id)
            raise ProtocolError(
                f"release request {request_id} is {current.state}, not {from_state}",
                code=ErrorCode.INVALID_STATE,
            )
        return self.get(request_id)

    def approve(
        self, request_id: str, releaser: Operator, *, now: datetime, send: Sender
    ) -> ReleaseRequest:
        """Release: the second person approves and the messages are queued by ``send``."""
        self._check_decider(self.get(request_id), releaser)
        claimed = self._move(
            request_id,
            ReleaseState.PENDING,
            {
                "state": ReleaseState.RELEASING.value,
                "decided_by": releaser.name,
                "decided_at_us": to_us(now),
            },
        )
        try:
            ids = send(claimed)
        except Exception:
            self._move(
                request_id,
                ReleaseState.RELEASING,
                {"state": ReleaseState.PENDING.value, "decided_by": None, "decided_at_us": None},
            )
            raise
        return self._move(
            request_id,
            ReleaseState.RELEASING,
            {"state": ReleaseState.RELEASED.value, "message_ids": json.dumps(ids)},
        )

    def reject(
        self, request_id: str, releaser: Operator, reason: str, *, now: datetime
    ) -> ReleaseRequest:
        self._check_decider(self.get(request_id), releaser)
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON_CHARS:
            raise InputError(
                f"a rejection needs a reason of 1 to {MAX_REASON_CHARS} characters",
                fields={"reason": "required"},
            )
        return self._move(
            request_id,
            ReleaseState.PENDING,
            {
                "state": ReleaseState.REJECTED.value,
                "decided_by": releaser.name,
                "decided_at_us": to_us(now),
                "reason": reason,
            },
        )


__all__ = [
    "RELEASE_PRIORITIES",
    "ReleaseQueue",
    "ReleaseRequest",
    "ReleaseState",
    "Sender",
    "needs_release",
]

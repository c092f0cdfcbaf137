"""Translations an operator attaches to a received message.

A translation never replaces the signed original: it is a separate statement (purpose
``translation``) signed by this node on behalf of the operator who made it, naming the message and
the hash of the exact original statement it translates, kept beside the message and logged in
the transcript. Every display marks it as a translation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    insert,
    select,
)

from hotline.core.card import Identity
from hotline.core.encoding import encode_json, format_time, from_us, to_us
from hotline.core.envelope import OPERATOR_NAME
from hotline.core.keys import Purpose
from hotline.errors import ErrorCode, InputError, NotFoundError
from hotline.store.schema import messages, metadata
from hotline.transcript._log import NewEntry, append

#: Longest translation kept (the longest prose a message may carry).
MAX_TRANSLATION_CHARS = 100_000

translations = Table(
    "translations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False, index=True),
    Column("lang", String(16), nullable=False),
    Column("operator", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("statement", LargeBinary, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Translation:
    message_id: str
    lang: str
    operator: str
    text: str
    at_us: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message_id,
            "lang": self.lang,
            "operator": self.operator,
            "text": self.text,
            "at": from_us(self.at_us).isoformat(),
            "translation": True,
        }


def attach(
    conn: Connection,
    identity: Identity,
    *,
    message_id: str,
    lang: str,
    text: str,
    operator: str,
    now: datetime,
) -> Translation:
    """Sign and keep ``operator``'s translation of a message into ``lang`` (usually one received
    from a peer; a translation of one we sent is kept the same way)."""
    if not OPERATOR_NAME.fullmatch(operator):
        raise InputError(f"not an operator name: {operator!r}", fields={"operator": "pattern"})
    if not text.strip() or len(text) > MAX_TRANSLATION_CHARS:
        raise InputError(
            f"a translation is 1 to {MAX_TRANSLATION_CHARS} characters", fields={"text": "length"}
        )
    if not 2 <= len(lang) <= 16:
        raise InputError(f"not a language tag: {lang!r}", fields={"lang": "tag"})
    row = conn.execute(
        select(messages.c.direction, messages.c.kind, messages.c.signed).where(
            messages.c.id == message_id
        )
    ).first()
    if row is None or row.kind != "message":
        raise NotFoundError(f"no message {message_id}", code=ErrorCode.UNKNOWN_MESSAGE)
    payload = encode_json(
        {
            "v": 1,
            "message": message_id,
            "original_sha256": hashlib.sha256(bytes(row.signed)).hexdigest(),
            "lang": lang,
            "text": text,
            "operator": operator,
            "time": format_time(now),
        }
    )
    statement = identity.signing.sign(Purpose.TRANSLATION, payload)
    conn.execute(
        insert(translations).values(
            message_id=message_id,
            lang=lang,
            operator=operator,
            text=text,
            statement=statement,
            at_us=to_us(now),
        )
    )
    append(conn, [NewEntry(statement, "translation", message_id)])
    return Translation(message_id, lang, operator, text, to_us(now))


def translations_of(conn: Connection, message_id: str) -> list[Translation]:
    return [
        Translation(r.message_id, r.lang, r.operator, r.text, int(r.at_us))
        for r in conn.execute(
            select(translations)
            .where(translations.c.message_id == message_id)
            .order_by(translations.c.id)
        )
    ]


__all__ = ["MAX_TRANSLATION_CHARS", "Translation", "attach", "translations_of"]

"""Translations an operator attaches to a received message, from the console or the CLI.

The one implementation is ``hotline.transcript.translations``: each translation is a statement
signed by this node on behalf of the operator, naming the original's hash, kept beside the message
and logged in the transcript; it never replaces the signed original. This module adds what the
console needs: the operator's permission and language checks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import Connection

from hotline.core.card import Identity
from hotline.operators._registry import ForbiddenError, Operator, Permission, check_lang
from hotline.store import Store
from hotline.transcript.translations import MAX_TRANSLATION_CHARS, Translation, attach
from hotline.transcript.translations import translations_of as _translations_of

#: Translations shown per message.
MAX_PER_MESSAGE: Final = 20


def attach_translation(
    store: Store,
    identity: Identity,
    message_id: str,
    lang: str,
    text: str,
    operator: Operator,
    *,
    now: datetime,
) -> Translation:
    if not operator.can(Permission.ACKNOWLEDGE):
        raise ForbiddenError(f"{operator.role} may not attach translations")
    check_lang(lang)
    with store.write() as conn:
        return attach(
            conn,
            identity,
            message_id=message_id,
            lang=lang,
            text=text.replace("\r\n", "\n").strip(),
            operator=operator.name,
            now=now,
        )


def translations_for(conn: Connection, message_id: str) -> list[Translation]:
    return _translations_of(conn, message_id)[:MAX_PER_MESSAGE]


__all__ = ["MAX_TRANSLATION_CHARS", "Translation", "attach_translation", "translations_for"]

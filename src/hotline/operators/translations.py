"""Translations an operator attaches to a message, for the colleagues who read it after them.

Local to this node: never sent to the peer and never signed. An acknowledgement signs the text
the catalog rendered, not an attached translation. Append-only: a better translation is
attached next to the first, and both stay, with who attached each and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, insert, select

from hotline.core.encoding import to_us
from hotline.errors import InputError
from hotline.operators._registry import ForbiddenError, Operator, Permission, check_lang
from hotline.operators._schema import message_translations
from hotline.store import Store

#: Longest translation kept (the catalog's longest prose field).
MAX_TRANSLATION_CHARS: Final = 20_000
#: Translations shown per message.
MAX_PER_MESSAGE: Final = 20


@dataclass(frozen=True, slots=True)
class Translation:
    message_id: str
    lang: str
    text: str
    operator: str
    at_us: int


def attach_translation(
    store: Store, message_id: str, lang: str, text: str, operator: Operator, *, now: datetime
) -> Translation:
    if not operator.can(Permission.ACKNOWLEDGE):
        raise ForbiddenError(f"{operator.role} may not attach translations")
    check_lang(lang)
    text = text.replace("\r\n", "\n").strip()
    if not text or len(text) > MAX_TRANSLATION_CHARS:
        raise InputError(
            f"a translation has 1 to {MAX_TRANSLATION_CHARS} characters",
            fields={"text": "required"},
        )
    done = Translation(message_id, lang, text, operator.name, to_us(now))
    with store.write() as conn:
        conn.execute(
            insert(message_translations).values(
                message_id=message_id,
                lang=lang,
                text=text,
                operator=operator.name,
                at_us=done.at_us,
            )
        )
    return done


def translations_for(conn: Connection, message_id: str) -> list[Translation]:
    t = message_translations.c
    rows = conn.execute(
        select(t.message_id, t.lang, t.text, t.operator, t.at_us)
        .where(t.message_id == message_id)
        .order_by(t.id)
        .limit(MAX_PER_MESSAGE)
    )
    return [Translation(r.message_id, r.lang, r.text, r.operator, int(r.at_us)) for r in rows]


__all__ = ["MAX_TRANSLATION_CHARS", "Translation", "attach_translation", "translations_for"]

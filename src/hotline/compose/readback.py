"""Read-back: the exact text an operator was shown, reproducible from the signed record.

An ACKNOWLEDGED receipt signs the language, the time zone and the SHA-256 of the text the
operator read. ``shown_text`` is the one function that makes that text, for the CLI, the API and
the console alike, so that the hash can be checked later against the signed original.
"""

from __future__ import annotations

import json
from typing import Any

from hotline.compose.i18n import translator
from hotline.compose.render import reader_zone, render, text_hash
from hotline.errors import HotlineError

__all__ = ["shown_text", "text_hash"]


def shown_text(msg_type: str, body: dict[str, Any], lang: str = "en", tz: str = "UTC") -> str:
    """The message as shown to a reader of ``lang`` in zone ``tz``.

    A body the catalog cannot render (an unknown type from a newer peer, an invalid field) is
    shown as its JSON, marked as unformatted, never silently dropped.
    """
    translator(lang)  # refuse an unknown language or zone before anything else
    reader_zone(tz)
    try:
        return render(msg_type, body, lang=lang, tz=tz)
    except HotlineError:
        raw = json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True)
        return f"UNFORMATTED {msg_type}\n{raw}"

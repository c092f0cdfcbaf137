"""Read-back: the exact text an operator was shown, reproducible from the signed record.

An ACKNOWLEDGED receipt signs the language, the time zone and the SHA-256 of the text the
operator read. ``shown_text`` is the one function that makes that text, for the CLI, the API and
the console alike, so that the hash can be checked later against the signed original.
"""

from __future__ import annotations

import json
from typing import Any

from hotline.compose._types import inert
from hotline.compose.i18n import translator
from hotline.compose.render import reader_zone, render, text_hash
from hotline.errors import HotlineError

__all__ = ["body_json", "shown_text", "text_hash"]


def shown_text(msg_type: str, body: dict[str, Any], lang: str = "en", tz: str = "UTC") -> str:
    """The message as shown to a reader of ``lang`` in zone ``tz``.

    A body the catalog cannot render (an unknown type from a newer peer, an invalid field) is
    shown as its JSON, marked as unformatted, never silently dropped; the characters that could
    change what is seen are written as JSON escapes (the catalog refuses them in what it renders).
    """
    translator(lang)  # refuse an unknown language or zone before anything else
    reader_zone(tz)
    try:
        return render(msg_type, body, lang=lang, tz=tz)
    except HotlineError:
        # The type and the body are the peer's, unchecked: nothing in them may act (compose.inert).
        return f"UNFORMATTED {inert(msg_type, lines=False)}\n{body_json(body)}"


def body_json(body: dict[str, Any]) -> str:
    """A body as a person is shown it raw: JSON, keys sorted, two-space indents, non-ASCII text
    as it is, and what could act (``compose.inert``) as a JSON escape."""
    # json.dumps escapes every control inside its strings; its own newlines stay.
    return inert(json.dumps(body, ensure_ascii=False, indent=2, sort_keys=True))

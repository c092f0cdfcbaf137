"""Field types shared by the catalog: bounded text, language tags, UTC times, positions.

Every string a peer sends is checked here for the characters that could mislead a person reading
the rendered text: control characters (a newline in a one-line field could forge a label line) and
Unicode bidirectional overrides (which can reorder what the reader sees).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from hotline.compose.limits import MAX_LANG_TAG_CHARS, MAX_LINE_CHARS, MAX_PROSE_CHARS

_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_LANG_TAG = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


# C0 and C1 controls, DEL, bidirectional embeddings and overrides (U+202A..U+202E) and isolates
# (U+2066..U+2069), line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
# The same without newline and tab, which prose may hold.
_PROSE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def inert(text: str, *, lines: bool = True) -> str:
    """``text`` with every character the catalog refuses in a field (controls, DEL and C1,
    bidirectional embeddings, overrides and isolates, line and paragraph separators) written as
    an escape (``\\u202e``), for showing what was not checked: a peer's body the catalog
    refused, a header it chose, a file name. Newlines and tabs stay when ``lines``. On a terminal
    those characters move the cursor, rewrite lines or set the clipboard; on any screen they
    reorder the text a person reads."""
    return (_PROSE_CONTROL if lines else _CONTROL).sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _check_line(value: str) -> str:
    # One regex scan instead of a Python loop per character: bodies are checked on every send
    # and every receipt.
    if _CONTROL.search(value):
        raise ValueError("must be one line without control or bidirectional-override characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _check_prose(value: str) -> str:
    if _PROSE_CONTROL.search(value):
        raise ValueError(
            "must not contain control or bidirectional-override characters "
            "(newlines and tabs are allowed)"
        )
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _rfc3339_utc(value: object) -> object:
    # A before-validator hands its result to the strict inner check as a Python object, so it
    # parses the string itself.
    if isinstance(value, str):
        if not _RFC3339_UTC.fullmatch(value):
            raise ValueError("must be an RFC 3339 time in UTC, e.g. 2026-05-01T06:00:00Z")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a real date and time") from None
    return value


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError("must be in UTC")
    return value


def _iso_date(value: object) -> object:
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value):
            raise ValueError("must be a date as YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a real date") from None
    return value


def _match_lang(value: str) -> str:
    if not _LANG_TAG.fullmatch(value):
        raise ValueError("must be a language tag such as 'en' or 'ru'")
    return value


#: One line of text: a name, a subject, a callsign, a contact channel.
Line = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_LINE_CHARS),
    AfterValidator(_check_line),
]
#: Prose in the sender's language; newlines and tabs allowed.
Prose = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PROSE_CHARS),
    AfterValidator(_check_prose),
]
#: A BCP 47 language tag, lower-case primary subtag: "en", "ru", "zh-Hant".
LangTag = Annotated[
    str,
    StringConstraints(max_length=MAX_LANG_TAG_CHARS),
    AfterValidator(_match_lang),
]
#: An RFC 3339 time in UTC ("Z" or "+00:00"); serialized with "Z".
UtcDateTime = Annotated[datetime, BeforeValidator(_rfc3339_utc), AfterValidator(_require_utc)]
#: A calendar date, YYYY-MM-DD.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
#: A message id: a UUID in its canonical lower-case form.
MessageId = Annotated[str, StringConstraints(pattern=_UUID)]

Longitude = Annotated[float, Field(ge=-180.0, le=180.0)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0)]
#: A GeoJSON position: [longitude, latitude] in degrees (WGS 84), no altitude.
Position = tuple[Longitude, Latitude]


__all__ = [
    "IsoDate",
    "LangTag",
    "Latitude",
    "Line",
    "Longitude",
    "MessageId",
    "Position",
    "Prose",
    "UtcDateTime",
]

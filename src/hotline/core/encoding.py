"""Strict encodings shared by the security core: JSON payloads, base64, times.

Everything here parses untrusted bytes, so every function has a size limit and raises
``WireError`` with a precise detail; nothing returns a half-parsed value.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from hotline.errors import ErrorCode, WireError

T = TypeVar("T")

#: Largest JSON payload inside any signed statement (a message body, a receipt for a batch).
MAX_PAYLOAD_BYTES = 512 * 1024
#: Deepest nesting accepted in a JSON payload (GeoJSON needs about 6).
MAX_JSON_DEPTH = 16


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON. The bytes are what gets signed; nobody re-encodes them to verify."""
    return msgspec.json.encode(value)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise WireError(f"duplicate JSON key {key!r}", code=ErrorCode.MALFORMED)
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise WireError(f"{name} is not JSON", code=ErrorCode.MALFORMED)


def _is_unicode(text: str) -> bool:
    """False for strings with lone surrogates (valid escapes, but not Unicode text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_tree(value: Any, limit: int) -> str | None:
    """What is wrong with a parsed JSON value (too deep, not Unicode), or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return f"JSON nested deeper than {limit}"
        if isinstance(item, str) and not _is_unicode(item):
            return "a string holds a lone surrogate"
        if isinstance(item, dict):
            if not all(_is_unicode(k) for k in item):
                return "a key holds a lone surrogate"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


def _plainly_within_limits(data: bytes) -> bool:
    """True when ``_check_tree`` could find nothing in what ``data`` parses to, seen from the
    bytes alone (a walk of the parsed value costs more than the parse): a lone surrogate can
    only come from a ``\\u`` escape (strict UTF-8 refuses encoded ones), and no value is
    deeper than one more than the count of brackets and braces."""
    return b"\\u" not in data and data.count(b"[") + data.count(b"{") < MAX_JSON_DEPTH


def decode_json(data: bytes, into: type[T], *, what: str, limit: int = MAX_PAYLOAD_BYTES) -> T:
    """Parse ``data`` as one JSON value of type ``into``, refusing anything ambiguous.

    Refused: more than ``limit`` bytes, invalid UTF-8, duplicate keys (two parsers could read
    them differently), NaN and Infinity, lone surrogate escapes, nesting deeper than
    MAX_JSON_DEPTH, unknown or missing fields, wrong types.
    """
    if len(data) > limit:
        raise WireError(f"{what}: {len(data)} bytes, limit {limit}", code=ErrorCode.TOO_LARGE)
    try:
        text = data.decode("utf-8", errors="strict")
        raw = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except WireError as e:
        raise WireError(f"{what}: {e.detail}", code=e.code) from e
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError(f"{what}: not valid JSON ({e})") from e
    problem = None if _plainly_within_limits(data) else _check_tree(raw, MAX_JSON_DEPTH)
    if problem is not None:
        raise WireError(f"{what}: {problem}")
    try:
        return msgspec.convert(raw, into, strict=True)
    except msgspec.ValidationError as e:
        raise WireError(f"{what}: {e}") from e


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str, size: int | None = None, limit: int = 1 << 20) -> bytes:
    """Standard base64 with padding, validated (no silently dropped characters)."""
    if len(text) > limit * 4 // 3 + 4:
        raise WireError(f"{what}: base64 text too long", code=ErrorCode.TOO_LARGE)
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise WireError(f"{what}: not valid base64 ({e})") from e
    if size is not None and len(data) != size:
        raise WireError(f"{what}: expected {size} bytes, found {len(data)}")
    return data


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z``: the only time format on the wire."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: hotline times are always timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, *, what: str) -> datetime:
    """Parse a wire time written by ``format_time`` (any RFC 3339 offset is accepted)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise WireError(f"{what}: not an RFC 3339 time: {text[:64]!r}") from e
    if value.tzinfo is None:
        raise WireError(f"{what}: time without an offset: {text[:64]!r}")
    try:
        return value.astimezone(UTC)
    except OverflowError as e:  # year 1 at +01:00, year 9999 at -01:00: no UTC instant
        raise WireError(f"{what}: time out of range: {text[:64]!r}") from e


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, the store's time representation."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000)


__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "b64decode",
    "b64encode",
    "decode_json",
    "encode_json",
    "format_time",
    "from_us",
    "parse_time",
    "to_us",
]

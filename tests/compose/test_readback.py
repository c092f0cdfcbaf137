"""Read-back of a message the catalog cannot render: its type and body are the peer's, unchecked,
and are shown (and hashed for an ACKNOWLEDGED receipt) as JSON in which nothing can act on a
terminal or reorder the text a person reads (threat P12)."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from hotline.compose.readback import shown_text

#: Controls but the newline, DEL, C1, bidirectional embeddings, overrides and isolates, line and
#: paragraph separators: never raw in what a reader is shown.
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def test_a_refused_body_is_shown_with_its_active_characters_escaped() -> None:
    body = {"text": "ok\x1b[2K\u202eevil\u2028\x85\x7f", "lang": "en"}
    shown = shown_text("free_text", body)
    head, raw = shown.split("\n", 1)
    assert head == "UNFORMATTED free_text"
    assert not ACTIVE.search(shown)
    assert "\\u001b[2K\\u202eevil\\u2028\\u0085\\u007f" in raw
    assert json.loads(raw) == body  # still the body, as JSON
    # Rendered text (a valid body) is not changed.
    assert "\\u" not in shown_text("free_text", {"text": "Отбой тревоги", "lang": "ru"})


@given(
    msg_type=st.text(max_size=64),
    body=st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4),
)
def test_nothing_active_is_shown_raw_and_the_json_is_the_body(
    msg_type: str, body: dict[str, str]
) -> None:
    shown = shown_text(f"zz_unknown{msg_type}", body)
    assert not ACTIVE.search(shown)
    head, raw = shown.split("\n", 1)
    assert head.startswith("UNFORMATTED zz_unknown")
    assert json.loads(raw) == body  # a newline in the type is escaped: the head is one line

"""The CLI prints what a peer, a file or the store holds as it is (threat P12): never as Rich
markup (a stray closing tag made Rich raise and the command fail; ``[link=...]``, ``[red]`` or an
unknown lowercase tag changed or hid what the peer sent), and never as terminal control (an
escape sequence in a peer's text reached the terminal: it can move the cursor, rewrite lines of
the listing or set the clipboard)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from hotline.cli import main
from hotline.cli._app import OneLineFormatter
from hotline.cli.node import console
from hotline.link import inbox
from hotline.node.home import NodeHome
from hotline.store.schema import security_events

#: Markup Rich would act on: a closing tag with no opening one (MarkupError), a hyperlink that
#: hides its target, a colour and an unknown style (whose text vanished); short enough for the
#: inbox listing, which shows the first 60 characters.
HOSTILE = "[/x] [link=https://e.example]go[/link] [red]FLASH[/red] [ok]"


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console: the hostile text fits in one table cell, unwrapped."""
    monkeypatch.setattr(console, "width", 300)


def _received(pair: dict[str, NodeHome], forge: Any, text: str, **fields: str) -> str:
    """Delivered to washington: a message from moscow with ``text`` (and ``fields``)."""
    washington, moscow = pair["washington"], pair["moscow"]
    envelope = forge(moscow, washington, seq=1, text=text, **fields)
    result = inbox.receive(
        washington.store,
        washington.identity,
        washington.peer_cards(),
        [envelope],
        now=datetime.now(UTC),
        source="test",
    )
    (message_id,) = result.delivered_ids
    return message_id


def test_a_peers_markup_is_printed_as_text_in_the_inbox_and_the_message(
    pair: dict[str, NodeHome], forge: Any, capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    message_id = _received(pair, forge, HOSTILE)
    where = str(pair["washington"].dir)
    assert main(["inbox", "--dir", where]) == 0
    listed = capsys.readouterr()
    assert HOSTILE in listed.out, listed
    assert main(["show", message_id, "--dir", where]) == 0
    shown = capsys.readouterr().out
    assert HOSTILE in shown
    # The same text in JSON, for scripts.
    assert main(["inbox", "--dir", where, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["text"] == HOSTILE


def test_a_peers_escape_sequences_never_reach_the_terminal(
    pair: dict[str, NodeHome], forge: Any, capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    """The catalog refuses control characters in a body, but the message is kept (it is part of
    the record, with a security event): every view must still show them inert."""
    rewrite = "ok\x1b[2K\x1b[1AACKNOWLEDGED\x1b]52;c;ZXZpbA==\x07\u202e"
    message_id = _received(pair, forge, rewrite)
    where = str(pair["washington"].dir)
    for command in (["inbox"], ["show", message_id], ["status", message_id]):
        assert main([*command, "--dir", where]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, command
    assert main(["inbox", "--dir", where]) == 0
    assert "ok\\u001b[2K\\u001b[1AACKNOWLEDGED" in capsys.readouterr().out


def test_security_event_details_are_printed_as_text(
    pair: dict[str, NodeHome], capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    washington = pair["washington"]
    with washington.store.write() as conn:
        conn.execute(
            insert(security_events).values(
                at_us=1, code="malformed", peer=None, source="test", detail=HOSTILE
            )
        )
    assert main(["events", "--dir", str(washington.dir)]) == 0
    assert HOSTILE in capsys.readouterr().out


def test_an_error_keeps_its_code_and_the_files_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error names its code in brackets (``[input_error]`` was read as a style and vanished)
    and may quote the input: both printed as they are."""
    bad = tmp_path / "[red]volumes[ok].json"
    bad.write_text("{not json")
    assert main(["deconflict", "check", str(bad), "--against", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "[invalid_input]" in err and "[red]volumes[ok].json" in err, err


def test_quoted_text_cannot_forge_a_line_of_the_log() -> None:
    """The node's log (hotline serve writes it through this formatter): a message quoting a
    peer's text stays one line, in any script; a traceback follows on indented lines."""
    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    quoted = "ok\nERROR hotline.node: all clear\r\u2028Отбой"

    def line(exc_info: Any = None) -> str:
        record = logging.LogRecord(
            "hotline.link", logging.WARNING, __file__, 1, "%s sent %s", ("moscow", quoted), exc_info
        )
        return formatter.format(record)

    logged = line()
    assert "\n" not in logged and "\r" not in logged and "\u2028" not in logged
    assert logged == (
        "WARNING hotline.link: moscow sent "
        "ok\\u000aERROR hotline.node: all clear\\u000d\\u2028Отбой"
    )
    try:
        raise ValueError(quoted)
    except ValueError:
        with_traceback = line(sys.exc_info())
    first, *rest = with_traceback.splitlines()
    assert first == logged and rest[0] == "  Traceback (most recent call last):"
    assert all(part.startswith("  ") for part in rest)  # the exception's text cannot either


def test_an_unknown_priority_is_shown_as_text_and_a_reply_needs_one_of_ours(
    pair: dict[str, NodeHome], forge: Any, capsys: pytest.CaptureFixture[str], wide: None
) -> None:
    """A receiver stores a peer's ``priority`` unchecked (protocol §4.1): shown as it is, and
    never taken over by an answer, which must carry a priority we send."""
    message_id = _received(pair, forge, "hello", priority="[/x]flash")
    where = str(pair["washington"].dir)
    for command in (["inbox"], ["show", message_id], ["status", message_id]):
        assert main([*command, "--dir", where]) == 0, command
        assert "[/X]FLASH" in capsys.readouterr().out, command
    assert main(["reply", message_id, "--dir", where, "--text", "received"]) == 2
    assert "give --priority" in capsys.readouterr().err
    assert (
        main(
            [
                "reply",
                message_id,
                "--dir",
                where,
                "--text",
                "received",
                "--json",
                "--priority",
                "immediate",
            ]
        )
        == 0
    )

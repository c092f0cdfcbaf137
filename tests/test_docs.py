"""Documentation that cannot drift: settings, CLI commands, error codes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from hotline.cli import app, main
from hotline.errors import MESSAGES, ErrorCode
from hotline.node.home import NodeConfig

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented():
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z_.\[\]]+)` \|", operations, re.MULTILINE))
    settings = {f.name for f in dataclasses.fields(NodeConfig)}
    # listen_host/listen_port are written as one `listen` setting
    # listen_host/listen_port are one `listen` setting; tables are written as [name]
    tables = {"display_names", "ack_deadlines_s", "groups"}
    settings = (
        (settings - {"listen_host", "listen_port", "peer_ack_deadlines_s"} - tables)
        | {
            "listen",
            "[peer_ack_deadlines_s.NAME]",
        }
        | {f"[{t}]" for t in tables}
    )
    assert settings <= documented, settings - documented


def test_readme_shows_the_two_commands_first():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Two commands") : readme.index("## Who it is for")]
    assert "make demo" in section and "make test" in section
    assert readme.index("## Two commands") < readme.index("## A tour of the CLI")


def test_every_error_code_reads_in_both_languages():
    for code in ErrorCode:
        english, russian = MESSAGES[code]
        assert english and russian and english != russian


def test_cli_help_lists_every_command(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for command in (
        "init",
        "card",
        "fingerprint",
        "peer",
        "send",
        "reply",
        "ack",
        "status",
        "show",
        "inbox",
        "outbox",
        "link",
        "serve",
        "demo",
    ):
        assert re.search(rf"\b{command}\b", out), command
    assert app.info.help


def test_every_error_code_is_in_docs_errors():
    errors = (ROOT / "docs" / "errors.md").read_text()
    for code in ErrorCode:
        assert f"`{code.value}`" in errors, code

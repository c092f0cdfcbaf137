"""The root Typer application and the one place where errors become exit codes."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from hotline.compose import inert
from hotline.errors import HotlineError

app = typer.Typer(
    name="hotline",
    help="hotline: a secure, verifiable link between the command centres of rival states.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True)


class OneLineFormatter(logging.Formatter):
    """Each record's message is one line of the log: control characters in it (a peer's text, a
    header it chose, a file name) are written escaped, so that nothing quoted in a message can
    forge a line of its own. A traceback follows on lines indented by two spaces (an exception's
    text may quote a peer too): every line that starts at the margin begins a record."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = inert(record.message, lines=False)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def plain(value: object) -> Text:
    """``value`` as text a terminal shows as it is: for anything from a peer, a file or the
    store. Never read as Rich markup (a stray ``[/x]`` made Rich raise and the command fail;
    ``[link=...]``, ``[red]`` or an unknown lowercase tag changed or hid what was sent), and its
    control characters written escaped (``compose.inert``: an escape sequence in a peer's text
    could move the cursor and rewrite what the listing shows, or set the clipboard). Newlines
    and tabs stay. Inside our own markup, use ``quoted``."""
    return Text(inert(str(value)))


def quoted(value: object) -> str:
    """``plain`` for a value put inside our own markup (an f-string given to ``print``)."""
    return escape(inert(str(value)))


def _mount_groups() -> None:
    # Imported for their side effect of registering commands on ``app``.
    from hotline.cli import audit, backup, deconflict, demo, node, offline, release  # noqa: F401

    app.add_typer(deconflict.app, name="deconflict")
    from hotline.cli import operator

    app.add_typer(operator.app, name="operator")
    from hotline.cli import case, taxii

    app.add_typer(case.app, name="case")
    app.add_typer(taxii.app, name="taxii")
    from hotline.cli import keys

    app.add_typer(keys.app, name="keys")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; callable in-process with ``argv`` (tests) or as the console script."""
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    _mount_groups()
    args = sys.argv[1:] if argv is None else argv
    try:
        # Without standalone mode, click returns the code of a ``typer.Exit`` instead of raising.
        returned = app(args=args, standalone_mode=False)
        if isinstance(returned, int):
            return returned
    except HotlineError as e:
        if "--json" in args:
            print(json.dumps({"error": e.to_dict()}), file=sys.stderr)
        else:
            # The detail may quote bytes from a peer or a file: never let it act as markup.
            # One line whatever the width: a script or a log reads the error whole.
            err_console.print(
                f"[bold red]error[/] {quoted(f'[{e.code}] {e.message()}')}", soft_wrap=True
            )
        return e.exit_code
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except typer.TyperException as e:  # usage errors: unknown option, bad value
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {quoted(e.format_message())}")
        return 2
    finally:
        # Connections the command opened (NodeHome stores) go back now, not at garbage collection.
        from hotline.store import Store

        Store.close_all()
    return 0

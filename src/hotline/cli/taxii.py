"""``hotline taxii``: accounts of the TAXII 2.1 server a node runs at ``/taxii2/``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hotline.core.encoding import from_us
from hotline.errors import InputError
from hotline.node.home import NodeHome
from hotline.referrals import taxii
from hotline.referrals.collections import collections_for

app = typer.Typer(
    help="The TAXII 2.1 server: read-only referral collections for threat-intelligence tools.",
    no_args_is_help=True,
)
user_app = typer.Typer(help="TAXII accounts (HTTP Basic).", no_args_is_help=True)
app.add_typer(user_app, name="user")
console = Console()

DirOption = Annotated[
    Path,
    typer.Option("--dir", envvar="HOTLINE_DIR", help="The node's directory (or HOTLINE_DIR)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The account name, e.g. 'misp'.")],
    dir: DirOption,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create (or replace) an account; the password is read from stdin, never an argument."""
    if not password_stdin:
        raise InputError("give the password on standard input with --password-stdin")
    password = sys.stdin.readline(taxii.MAX_PASSWORD_CHARS + 2).rstrip("\r\n")
    home = NodeHome(dir)
    with home.store.write() as conn:
        taxii.add_user(conn, name, password, datetime.now(UTC))
    console.print(f"TAXII account [bold]{name}[/] saved", highlight=False)


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(help="The account name.")], dir: DirOption
) -> None:
    """Remove an account (its clients are refused from the next request on)."""
    home = NodeHome(dir)
    with home.store.write() as conn:
        taxii.remove_user(conn, name)
    console.print(f"TAXII account [bold]{name}[/] removed", highlight=False)


@user_app.command("list")
def user_list(dir: DirOption, json_out: JsonOption = False) -> None:
    """Accounts, with when each was made."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        users = taxii.list_users(conn)
    if json_out:
        sys.stdout.write(json.dumps([{"name": n, "created_at_us": t} for n, t in users]) + "\n")
        return
    table = Table(title="TAXII accounts")
    table.add_column("name")
    table.add_column("created")
    for n, t in users:
        table.add_row(n, from_us(t).strftime("%Y-%m-%d %H:%M UTC"))
    console.print(table)


@app.command()
def collections(dir: DirOption, json_out: JsonOption = False) -> None:
    """The collections this node serves (two per peer) and their URLs."""
    home = NodeHome(dir)
    found = collections_for(home.peer_cards())
    base = f"{home.config.endpoint}{taxii.PREFIX}/{taxii.API_ROOT}/collections"
    rows = [{"id": c.id, "title": c.title, "url": f"{base}/{c.id}/", "peer": c.peer} for c in found]
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"TAXII 2.1 at {home.config.endpoint}{taxii.PREFIX}/")
    for column in ("title", "url"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["title"], r["url"])
    console.print(table)

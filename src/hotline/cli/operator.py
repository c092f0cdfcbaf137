"""``hotline operator``: the node's local console accounts (see docs/console.md)."""

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
from hotline.operators import MAX_FAILED_LOGINS, OperatorRegistry, Role

console = Console(highlight=False)

app = typer.Typer(help="Local operator accounts of the console.", no_args_is_help=True)

DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="HOTLINE_DIR",
        help="The node's directory (or HOTLINE_DIR).",
        show_default=False,
    ),
]


def registry_for(home: NodeHome) -> OperatorRegistry:
    return OperatorRegistry(home.store, issuer=f"hotline {home.config.name}")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        # One line: the password, without its line ending.
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("password", hide_input=True)
    if typer.prompt("again", hide_input=True) != first:
        raise InputError("the two passwords differ")
    return str(first)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Login name: a-z first, then a-z 0-9 . _ -")],
    dir: DirOption,
    role: Annotated[Role, typer.Option(help="operator, releaser, auditor or admin.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    lang: Annotated[str, typer.Option(help="Console language: en or ru.")] = "en",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create an account and print its TOTP provisioning URI (shown this once only)."""
    home = NodeHome(dir)
    password = _read_password(password_stdin)
    new = registry_for(home).add(name, role, password, now=datetime.now(UTC), lang=lang)
    if json_out:
        data = {"name": name, "role": role.value, "lang": lang, "totp_uri": new.totp_uri}
        sys.stdout.write(json.dumps(data) + "\n")
        return
    console.print(f"created operator [bold]{name}[/] ({role.value})")
    console.print(
        "TOTP provisioning URI (enter it in an authenticator app; it is not shown again):"
    )
    sys.stdout.write(new.totp_uri + "\n")


@app.command("list")
def list_cmd(
    dir: DirOption,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the accounts: role, language, failed logins, lock and state."""
    home = NodeHome(dir)
    now = datetime.now(UTC)
    rows = [
        {
            "name": op.name,
            "role": op.role.value,
            "lang": op.lang,
            "failed_logins": op.failed_logins,
            "locked_until": (
                from_us(op.locked_until_us).isoformat()
                if op.locked(now) and op.locked_until_us
                else None
            ),
            "disabled": op.disabled,
            "created": from_us(op.created_at_us).isoformat(),
        }
        for op in registry_for(home).all()
    ]
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("name", "role", "lang", f"failed (lock at {MAX_FAILED_LOGINS})", "state")
    for r in rows:
        state = (
            "disabled"
            if r["disabled"]
            else f"locked until {r['locked_until']}"
            if r["locked_until"]
            else "active"
        )
        table.add_row(
            str(r["name"]), str(r["role"]), str(r["lang"]), str(r["failed_logins"]), state
        )
    console.print(table)


@app.command("unlock")
def unlock(
    name: Annotated[str, typer.Argument(help="The locked account.")], dir: DirOption
) -> None:
    """Clear an account's failed logins and lock."""
    registry_for(NodeHome(dir)).unlock(name, now=datetime.now(UTC), by="cli")
    console.print(f"unlocked {name}")


@app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="The account.")],
    dir: DirOption,
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead.")] = False,
) -> None:
    """Disable an account (its sessions end at once), or enable it with --enable."""
    registry_for(NodeHome(dir)).set_disabled(name, not enable, now=datetime.now(UTC), by="cli")
    console.print(f"{'enabled' if enable else 'disabled'} {name}")


@app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The account.")],
    dir: DirOption,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set an account's password (its sessions end)."""
    password = _read_password(password_stdin)
    registry_for(NodeHome(dir)).set_password(name, password, now=datetime.now(UTC), by="cli")
    console.print(f"password of {name} set")


@app.command("reset-totp")
def reset_totp(
    name: Annotated[str, typer.Argument(help="The account.")],
    dir: DirOption,
) -> None:
    """Give an account a new TOTP secret (a lost phone) and print its URI once."""
    new = registry_for(NodeHome(dir)).reset_totp(name, now=datetime.now(UTC), by="cli")
    console.print(f"new second factor for {name}; the old codes no longer work")
    console.print(
        "TOTP provisioning URI (enter it in an authenticator app; it is not shown again):"
    )
    sys.stdout.write(new.totp_uri + "\n")


token_app = typer.Typer(
    help="Personal tokens of the local API: each request made with one acts as its operator.",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")


@token_app.command("issue")
def token_issue(
    name: Annotated[str, typer.Argument(help="The operator the token acts as.")],
    dir: DirOption,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Issue a personal API token for an operator and print it (shown this once only)."""
    token, record = registry_for(NodeHome(dir)).issue_api_token(
        name, now=datetime.now(UTC), by="cli"
    )
    if json_out:
        sys.stdout.write(json.dumps({**record.to_dict(), "token": token}) + "\n")
        return
    console.print(f"API token [bold]{record.id}[/] for {name} (it is not shown again):")
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(
    dir: DirOption,
    name: Annotated[str | None, typer.Option("--operator", help="Only this operator's.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the personal API tokens (ids, owners, when made, last used, revoked)."""
    rows = [t.to_dict() for t in registry_for(NodeHome(dir)).api_tokens(name)]
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("id", "operator", "created", "last used", "state")
    for r in rows:
        state = f"revoked {r['revoked']}" if r["revoked"] else "active"
        table.add_row(r["id"], r["operator"], r["created"], r["last_used"] or "never", state)
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `token list`).")],
    dir: DirOption,
) -> None:
    """Revoke a personal API token: requests made with it are refused from now on."""
    record = registry_for(NodeHome(dir)).revoke_api_token(token_id, now=datetime.now(UTC), by="cli")
    console.print(f"revoked API token {record.id} of {record.operator}")

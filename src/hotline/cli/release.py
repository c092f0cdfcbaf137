"""``hotline release``: the two-person rule from the command line.

A message whose priority needs release (FLASH by default) is never sent by the person who wrote
it: ``hotline send --operator ALICE`` puts it in the release queue, and a second person with the
releaser role approves it here after logging in (password and TOTP code), or in the console.
Author and releaser are signed into the message.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from hotline.cli._app import app, plain
from hotline.cli.node import DirOption, JsonOption, _print_json, _wake_node, console
from hotline.cli.operator import registry_for
from hotline.core.encoding import from_us
from hotline.core.envelope import new_id
from hotline.link import outbox
from hotline.node.home import NodeHome
from hotline.operators import Operator
from hotline.operators.release import ReleaseQueue, ReleaseRequest

release_app = typer.Typer(help="Two-person release of FLASH messages.", no_args_is_help=True)
app.add_typer(release_app, name="release")

OperatorOption = Annotated[str, typer.Option("--operator", help="Your operator name.")]
TotpOption = Annotated[str, typer.Option("--totp", help="Your current TOTP code.")]


def _login(home: NodeHome, name: str, code: str) -> Operator:
    """The operator, after password (one line on standard input) and TOTP check."""
    password = sys.stdin.readline().rstrip("\r\n")
    return registry_for(home).authenticate(
        name, password, code, now=datetime.now(UTC), source="cli"
    )


def send_released(home: NodeHome, request: ReleaseRequest) -> list[str]:
    """Queue a released request's messages, author and releaser signed into each."""
    now = datetime.now(UTC)
    # Several recipients: one notification, a sealed copy each (tracked per recipient).
    notification = new_id(now) if len(request.recipients) > 1 else None
    drafts = [
        outbox.Draft(
            peer=home.peer_card(peer),
            msg_type=request.msg_type,
            priority=request.priority,
            body=request.body,
            ttl=timedelta(seconds=home.config.default_ttl_s),
            in_reply_to=request.in_reply_to,
            author=request.author,
            released_by=request.decided_by,
            notification=notification,
        )
        for peer in request.recipients
    ]
    ids = outbox.submit_messages(home.store, home.identity, drafts, now=now)
    _wake_node(home)
    return ids


def _row(r: ReleaseRequest) -> dict[str, object]:
    return {
        "id": r.id,
        "state": r.state.value,
        "author": r.author,
        "type": r.msg_type,
        "priority": r.priority,
        "to": list(r.recipients),
        "body": r.body,
        "created": from_us(r.created_at_us).isoformat(),
        "decided_by": r.decided_by,
        "reason": r.reason,
        "message_ids": list(r.message_ids),
    }


@release_app.command("list")
def release_list(dir: DirOption, json_out: JsonOption = False) -> None:
    """Messages waiting for a second person, then recent decisions."""
    queue = ReleaseQueue(NodeHome(dir).store)
    rows = [_row(r) for r in queue.pending() + queue.recent()]
    if json_out:
        _print_json(rows)
        return
    table = Table("id", "state", "author", "priority", "to", "decided by")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["state"]),
            str(r["author"]),
            str(r["priority"]).upper(),
            ", ".join(map(str, r["to"])),  # type: ignore[call-overload]
            str(r["decided_by"] or ""),
        )
    console.print(table)


@release_app.command("approve")
def release_approve(
    request_id: Annotated[str, typer.Argument(help="The release request.")],
    dir: DirOption,
    operator: OperatorOption,
    totp: TotpOption,
    json_out: JsonOption = False,
) -> None:
    """Release a message written by someone else (password on standard input)."""
    home = NodeHome(dir)
    releaser = _login(home, operator, totp)
    done = ReleaseQueue(home.store).approve(
        request_id, releaser, now=datetime.now(UTC), send=lambda r: send_released(home, r)
    )
    if json_out:
        _print_json(_row(done))
    else:
        console.print(f"released by {releaser.name}: {', '.join(done.message_ids)}")


@release_app.command("reject")
def release_reject(
    request_id: Annotated[str, typer.Argument(help="The release request.")],
    dir: DirOption,
    operator: OperatorOption,
    totp: TotpOption,
    reason: Annotated[str, typer.Option(help="Why (the author sees it).")],
    json_out: JsonOption = False,
) -> None:
    """Refuse to release a message, with a reason (password on standard input)."""
    home = NodeHome(dir)
    releaser = _login(home, operator, totp)
    done = ReleaseQueue(home.store).reject(request_id, releaser, reason, now=datetime.now(UTC))
    if json_out:
        _print_json(_row(done))
    else:
        console.print(plain(f"rejected by {releaser.name}: {reason}"))

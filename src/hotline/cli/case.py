"""``hotline case``: cyber referrals and their cases (open, list, show, update, report).

A case's id is the id of the referral message that opened it. Opening and updating queue a
signed message in the outbox (the running node delivers it); every command first applies any
referral messages the case tables have not seen yet.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hotline.cli._app import plain, quoted
from hotline.compose.catalog import RequestedAction, Tlp
from hotline.compose.priority import Priority
from hotline.core.encoding import from_us, to_us
from hotline.errors import ErrorCode, InputError, NotFoundError
from hotline.node.home import NodeHome
from hotline.referrals import cases, report
from hotline.referrals.messages import CaseState
from hotline.referrals.stix import MAX_BUNDLE_BYTES

app = typer.Typer(
    help="Cyber referrals: STIX 2.1 bundles with requested actions, tracked to closure.",
    no_args_is_help=True,
)
console = Console()

DirOption = Annotated[
    Path,
    typer.Option("--dir", envvar="HOTLINE_DIR", help="The node's directory (or HOTLINE_DIR)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
#: The narrative sent when the operator gives none (the bundle then speaks for itself).
DEFAULT_NARRATIVE = "See the attached STIX 2.1 bundle."


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _wake(home: NodeHome) -> None:
    """Tell the running node (its active replica) to look at its outbox now (best effort: it
    also polls)."""
    from hotline.cli.node import _wake_node

    _wake_node(home)


def _time(us: int | None) -> str:
    return "-" if us is None else from_us(us).strftime("%Y-%m-%d %H:%M UTC")


def parse_deadline(text: str, now: datetime) -> datetime:
    """``72h``, ``3d``, ``90m`` from now, or an RFC 3339 time with its offset."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if len(text) >= 2 and text[-1] in units and text[:-1].isdigit():
        return now + timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(
            f"--deadline takes a duration (72h, 3d, 90m) or an RFC 3339 time, not {text!r}"
        ) from e
    if moment.tzinfo is None:
        raise InputError("--deadline: give the time's UTC offset, e.g. 2026-12-01T12:00:00Z")
    return moment.astimezone(UTC).replace(microsecond=0)


def _read_bundle(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            # Refused before reading: a bundle of 10^5 objects never reaches the parser.
            raise InputError(
                f"{path}: {size} bytes; a referral's bundle may have at most {MAX_BUNDLE_BYTES}",
                code=ErrorCode.TOO_LARGE,
            )
        return path.read_bytes()
    except FileNotFoundError as e:
        raise NotFoundError(f"no bundle file {path}") from e


def _caught_up(home: NodeHome) -> None:
    with home.store.write() as conn:
        cases.catch_up(conn)


@app.command("open")
def open_(
    dir: DirOption,
    to: Annotated[str, typer.Option(help="The peer to refer the incident to.")],
    bundle: Annotated[Path, typer.Option(help="A STIX 2.1 bundle (JSON file).")],
    request: Annotated[
        list[RequestedAction],
        typer.Option(help="A requested action; repeat for several."),
    ],
    deadline: Annotated[str, typer.Option(help="Response deadline: 72h, 3d or RFC 3339.")],
    tlp: Annotated[Tlp, typer.Option(help="TLP 2.0 label the receiver enforces.")] = Tlp.AMBER,
    narrative: Annotated[str, typer.Option(help="What happened, in prose.")] = DEFAULT_NARRATIVE,
    priority: Annotated[Priority, typer.Option(help="Link priority of the referral.")] = (
        Priority.PRIORITY
    ),
    json_out: JsonOption = False,
) -> None:
    """Refer an incident: validate the bundle, mark it with the TLP, send it, open the case."""
    home = NodeHome(dir)
    now = datetime.now(UTC).replace(microsecond=0)
    body = cases.prepare_referral(
        _read_bundle(bundle),
        narrative=narrative,
        actions=request,
        deadline=parse_deadline(deadline, now),
        tlp=tlp,
        now=now,
    )
    case_id = cases.open_referral(
        home.store,
        home.identity,
        home.peer_card(to),
        body,
        now=now,
        ttl=timedelta(seconds=home.config.default_ttl_s),
        priority=priority.value,
    )
    _wake(home)
    if json_out:
        _print_json({"id": case_id, "state": CaseState.REFERRED.value, "peer": to})
    else:
        sys.stdout.write(case_id + "\n")


@app.command("list")
def list_(
    dir: DirOption,
    peer: Annotated[str | None, typer.Option(help="Only cases with this peer.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 200,
    json_out: JsonOption = False,
) -> None:
    """Cases in both directions, newest first; overdue ones are marked."""
    home = NodeHome(dir)
    _caught_up(home)
    now_us = to_us(datetime.now(UTC))
    with home.store.read() as conn:
        found = cases.list_cases(conn, peer=peer, limit=max(1, min(limit, 10_000)))
    if json_out:
        _print_json([c.to_dict(now_us) for c in found])
        return
    table = Table(title="Referral cases")
    for column in ("id", "dir", "peer", "state", "tlp", "opened", "deadline", ""):
        table.add_column(column)
    for c in found:
        table.add_row(
            c.id,
            "sent" if c.direction == "out" else "received",
            c.peer,
            c.state.value,
            c.tlp,
            _time(c.opened_at_us),
            _time(c.deadline_us),
            "[bold red]OVERDUE[/]" if c.overdue(now_us) else "",
        )
    console.print(table)


@app.command()
def show(
    case_id: Annotated[str, typer.Argument(help="The case id (the referral's message id).")],
    dir: DirOption,
    json_out: JsonOption = False,
) -> None:
    """One case with its history of signed transitions."""
    home = NodeHome(dir)
    _caught_up(home)
    now_us = to_us(datetime.now(UTC))
    with home.store.read() as conn:
        case = cases.get_case(conn, case_id)
    if json_out:
        _print_json(case.to_dict(now_us))
        return
    console.print(
        f"[bold]case {quoted(case.id)}[/] "
        f"({'sent to' if case.direction == 'out' else 'from'} {case.peer})",
        highlight=False,
    )
    console.print(
        f"state: [bold]{case.state.value}[/]"
        + ("  [bold red]OVERDUE[/]" if case.overdue(now_us) else "")
    )
    console.print(
        quoted(f"TLP:{case.tlp.upper()}  requested: {', '.join(case.actions)}"), highlight=False
    )
    console.print(f"opened {_time(case.opened_at_us)}, deadline {_time(case.deadline_us)}")
    console.print(
        f"STIX objects: {case.object_count}"
        + ("" if case.served else quoted(f" (not served over TAXII: {case.problem})"))
    )
    table = Table(title="History")
    for column in ("time", "by", "state", "note / reason", "message"):
        table.add_column(column)
    for e in case.events:
        text = e.reason or e.note or ""
        if not e.accepted:
            text = f"REFUSED: {e.problem} {text}".strip()
        table.add_row(_time(e.at_us), e.side, e.state, plain(text), e.message_id)
    console.print(table)


@app.command()
def update(
    case_id: Annotated[str, typer.Argument(help="The case id.")],
    dir: DirOption,
    state: Annotated[CaseState, typer.Option(help="The new state.")],
    note: Annotated[str | None, typer.Option(help="A note for the other side.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (required to decline).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Move a case on (sends a signed case_update): the receiver acknowledges, investigates,
    acts or declines; the referrer closes."""
    home = NodeHome(dir)
    _caught_up(home)
    message_id = cases.update_case(
        home.store,
        home.identity,
        home.peer_cards(),
        case_id,
        state=state,
        note=note,
        reason=reason,
        now=datetime.now(UTC),
        ttl=timedelta(seconds=home.config.default_ttl_s),
    )
    _wake(home)
    if json_out:
        _print_json({"id": case_id, "state": state.value, "message_id": message_id})
    else:
        sys.stdout.write(message_id + "\n")


@app.command("report")
def report_(
    dir: DirOption,
    peer: Annotated[str, typer.Option(help="The peer to account for.")],
    since: Annotated[str | None, typer.Option(help="Only referrals from this date.")] = None,
    format: Annotated[Format, typer.Option(help="table, json or csv.")] = Format.TABLE,
) -> None:
    """Referrals sent and received per month: acknowledged in time, acted on, declined,
    time to acknowledgement and to action (p50, p90), and what is overdue."""
    home = NodeHome(dir)
    _caught_up(home)
    since_us = None
    if since is not None:
        try:
            day = datetime.fromisoformat(since)
        except ValueError as e:
            raise InputError(f"--since takes a date like 2026-01-31, not {since!r}") from e
        since_us = to_us(day if day.tzinfo else day.replace(tzinfo=UTC))
    now_us = to_us(datetime.now(UTC))
    with home.store.read() as conn:
        found = cases.list_cases(conn, peer=peer, since_us=since_us, limit=None)
    rows = report.build_report(found, now_us)
    if format is Format.JSON:
        _print_json(report.to_json(peer, rows))
        return
    if format is Format.CSV:
        sys.stdout.write(report.to_csv(rows))
        return

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.0f}%"

    def hours(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} h"

    table = Table(title=f"Referrals with {peer}")
    for column in (
        "month",
        "dir",
        "n",
        "ack in time",
        "acted",
        "declined",
        "ack p50/p90",
        "action p50/p90",
        "overdue",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.month,
            r.direction,
            str(r.referrals),
            pct(r.acknowledged_in_time),
            pct(r.action_taken),
            pct(r.declined),
            f"{hours(r.ack_p50_h)} / {hours(r.ack_p90_h)}",
            f"{hours(r.action_p50_h)} / {hours(r.action_p90_h)}",
            str(len(r.overdue)),
        )
    console.print(table)
    for r in rows:
        for case_id in r.overdue:
            console.print(f"[bold red]overdue[/] {r.month} {r.direction}: {case_id}")

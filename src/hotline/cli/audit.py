"""The record: our transcript and the peers' tree heads, security events, and the cross-check."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import desc, select

from hotline import transcript
from hotline.cli._app import app
from hotline.cli.node import DirOption, JsonOption, _print_json, console
from hotline.core.encoding import from_us
from hotline.errors import NotFoundError
from hotline.node.home import NodeHome
from hotline.node.runtime import HttpPeerLog, Node
from hotline.store.schema import security_events
from hotline.transcript.crosscheck import (
    ItemCheck,
    check_ours,
    check_theirs,
    exchanged_statements,
    latest_checked_head,
)
from hotline.transcript.heads import latest_own_head, peer_heads

audit_app = typer.Typer(help="Verify the record of a link.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command("transcript")
def transcript_cmd(dir: DirOption, json_out: JsonOption = False) -> None:
    """Our log's size and root, our latest signed head, and each peer's heads."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        size, root = transcript.size_and_root(conn)
        own = latest_own_head(conn)
        peers = {name: peer_heads(conn, name) for name in home.peer_cards()}
    report: dict[str, Any] = {
        "size": size,
        "root": root.hex(),
        "latest_signed_head": None if own is None else {"size": own.size, "root": own.root.hex()},
        "peers": {
            name: {
                "heads": len(heads),
                "latest_checked": next(
                    (h.to_dict() for h in sorted(heads, key=lambda h: -h.size) if h.checked == 1),
                    None,
                ),
                "unchecked": sum(1 for h in heads if h.checked == 0),
                "equivocations": sum(1 for h in heads if h.checked == 2),
            }
            for name, heads in peers.items()
        },
    }
    if json_out:
        _print_json(report)
        return
    console.print(f"our transcript: {size} entries, root {root.hex()}", highlight=False)
    table = Table("peer", "heads", "latest checked size", "unchecked", "equivocations")
    for name, info in report["peers"].items():
        latest = info["latest_checked"]
        table.add_row(
            name,
            str(info["heads"]),
            str(latest["size"]) if latest else "-",
            str(info["unchecked"]),
            f"[bold red]{info['equivocations']}[/]" if info["equivocations"] else "0",
        )
    console.print(table)


@app.command()
def events(
    dir: DirOption,
    code: Annotated[str | None, typer.Option(help="Only events with this code.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_out: JsonOption = False,
) -> None:
    """Security events, newest first: rejected envelopes, gaps, expiries, equivocation."""
    home = NodeHome(dir)
    query = select(security_events).order_by(desc(security_events.c.id)).limit(limit)
    if code is not None:
        query = query.where(security_events.c.code == code)
    with home.store.read() as conn:
        rows = [
            {
                "at": from_us(r.at_us).isoformat(),
                "code": r.code,
                "peer": r.peer,
                "source": r.source,
                "detail": r.detail,
            }
            for r in conn.execute(query)
        ]
    if json_out:
        _print_json(rows)
        return
    table = Table("at", "code", "peer", "detail")
    for r in rows:
        style = "bold red" if r["code"] == "equivocation" else ""
        table.add_row(
            r["at"][:19],
            f"[{style}]{r['code']}[/]" if style else r["code"],
            r["peer"] or "",
            r["detail"],
        )
    console.print(table)


async def _cross_check(home: NodeHome, peer: str) -> list[ItemCheck]:
    node = Node(home)
    if peer not in node.links:
        raise NotFoundError(f"no peer named {peer!r}")
    link = node.links[peer]
    try:
        await node.refresh_peer_head(peer)
        with home.store.read() as conn:
            head = latest_checked_head(conn, peer)
            items = exchanged_statements(conn, peer)
            ours = {ref: check_ours(conn, ref, statement) for ref, _kind, statement in items}
        peer_log = HttpPeerLog(link)
        results = []
        for ref, kind, statement in items:
            theirs, detail_theirs = await check_theirs(head, ref, statement, peer_log)
            mine, detail_mine = ours[ref]
            detail = "; ".join(d for d in (detail_mine, detail_theirs) if d)
            results.append(ItemCheck(ref, kind, mine, theirs, detail))
        return results
    finally:
        await link.close()


@audit_app.command("check")
def audit_check(
    dir: DirOption,
    peer: Annotated[str, typer.Option(help="The peer whose link to check.")],
    json_out: JsonOption = False,
) -> None:
    """For every message and receipt of the link: in both logs, with the same bytes.

    Fetches the peer's current signed head, proves it consistent with every head we kept, then
    proves each statement's inclusion in the peer's log. Exits 4 if anything does not match.
    """
    home = NodeHome(dir)
    results = asyncio.run(_cross_check(home, peer))
    bad = [r for r in results if r.ours != "ok" or r.theirs in ("missing", "mismatch")]
    unproved = [r for r in results if r.theirs == "unproved"]
    with home.store.read() as conn:
        equivocations = sum(1 for h in peer_heads(conn, peer, limit=100_000) if h.checked == 2)
    summary = {
        "peer": peer,
        "items": len(results),
        "ok": sum(1 for r in results if r.ok),
        "problems": [r.to_dict() for r in bad],
        "unproved": [r.to_dict() for r in unproved],
        "equivocations": equivocations,
    }
    if json_out:
        _print_json(summary)
    else:
        console.print(
            f"{summary['ok']} of {len(results)} statements are in both logs with the "
            f"same bytes; {len(unproved)} not yet provable; {len(bad)} problems; "
            f"{equivocations} equivocation alarms",
            highlight=False,
        )
        for r in bad:
            console.print(
                f"  [red]{r.kind} {r.ref}: ours {r.ours}, theirs {r.theirs}[/] {r.detail}",
                highlight=False,
            )
    if bad or equivocations:
        raise typer.Exit(4)

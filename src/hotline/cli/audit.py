"""The record: our transcript and the peers' tree heads, security events, and the cross-check."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import Connection, desc, select

from hotline import transcript
from hotline.cli._app import app, err_console, plain, quoted
from hotline.cli.node import DirOption, JsonOption, _print_json, console
from hotline.core import merkle
from hotline.core.encoding import b64encode, format_time, from_us, to_us
from hotline.errors import HotlineError, InputError, NotFoundError
from hotline.link import keyring
from hotline.node.home import NodeHome
from hotline.node.runtime import HttpPeerLog, Node
from hotline.store.schema import security_events
from hotline.transcript.bundle import (
    MAX_BUNDLE_BYTES,
    encode_bundle,
    sign_bundle,
    statement_key,
    verify_bundle,
)
from hotline.transcript.crosscheck import (
    ItemCheck,
    check_ours,
    cross_check_items,
    exchanged_statements,
    latest_checked_head,
    own_log_section,
    receipt_claims,
)
from hotline.transcript.heads import PeerHead, latest_own_head, own_heads_upto, peer_heads
from hotline.transcript.witnessing import cosignatures_upto, latest_cosignature, witness_lag

audit_app = typer.Typer(help="Verify the record of a link.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command("transcript")
def transcript_cmd(dir: DirOption, json_out: JsonOption = False) -> None:
    """Our log's size and root, our latest signed head, and each peer's heads."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        size, root = transcript.size_and_root(conn)
        own = latest_own_head(conn)
        cards = home.peer_cards()
        peers = {name: peer_heads(conn, name) for name, c in cards.items() if c.role == "node"}
        witness_names = [name for name, c in cards.items() if c.role == "witness"]
        witnessed = {name: latest_cosignature(conn, name) for name in witness_names}
        now_us = to_us(datetime.now(UTC))
        lags = {
            name: witness_lag(conn, name, now_us, home.config.witness_stale_s)
            for name in witness_names
        }
    report: dict[str, Any] = {
        "size": size,
        "root": root.hex(),
        "latest_signed_head": None if own is None else {"size": own.size, "root": own.root.hex()},
        "witnessed": {
            name: None if w is None else {k: v for k, v in w.items() if k != "statement"}
            for name, w in witnessed.items()
        },
        # Entries each witness has not cosigned, how long our oldest such head has waited,
        # and whether that passed witness_stale_s (an alarm at the node).
        "witness_lag": lags,
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
    for name, w in report["witnessed"].items():
        seen = f"size {w['size']} at {w['at'][:19]}" if w else "[yellow]not yet[/]"
        lag = lags[name]
        if lag["stale"]:
            seen += f" [bold red]STALE[/]: {lag['behind']} entries waiting {lag['waiting_s']:.0f} s"
        console.print(f"witnessed by {name}: {seen}", highlight=False)
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
            f"[{style}]{r['code']}[/]" if style else plain(r["code"]),
            plain(r["peer"] or ""),
            plain(r["detail"]),
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
            claims = receipt_claims(conn, peer)
        return await cross_check_items(head, items, ours, claims, HttpPeerLog(link))
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
    proves each statement's inclusion in the peer's log, and each DELIVERED receipt's claim that
    our message is at its leaf_index in the tree it signed. Exits 4 if anything does not match.
    """
    home = NodeHome(dir)
    results = asyncio.run(_cross_check(home, peer))
    bad = [
        r
        for r in results
        if r.ours != "ok" or r.theirs in ("missing", "mismatch") or r.claimed == "false"
    ]
    unproved = [r for r in results if "unproved" in (r.theirs, r.claimed)]
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
                f"  [red]{quoted(r.kind)} {quoted(r.ref)}: ours {r.ours}, theirs {r.theirs}"
                f"{', receipt claim false' if r.claimed == 'false' else ''}[/] {quoted(r.detail)}",
                highlight=False,
            )
    if bad or equivocations:
        raise typer.Exit(4)


async def export_bundle(home: NodeHome, peer: str) -> bytes:
    """The signed audit bundle of the link with ``peer`` (for the CLI and the console)."""
    node = Node(home)
    if peer not in node.links:
        raise NotFoundError(f"no peer named {peer!r}")
    link = node.links[peer]
    peer_log = HttpPeerLog(link)
    try:
        try:
            await node.refresh_peer_head(peer)
        except HotlineError as e:
            err_console.print(
                f"warning: could not reach {peer} ({quoted(e.detail)}); exporting the "
                "heads and proofs already held"
            )
        own_last = node.own_head(max_age_s=0.0, on_hold=True)
        with home.store.read() as conn:
            items = exchanged_statements(conn, peer)
            statements = {statement_key(s): b64encode(s) for _r, _k, s in items}
            own_heads = own_heads_upto(conn, own_last.size)
            own_log = own_log_section(conn, items, own_heads)
            their_heads = [
                h
                for h in peer_heads(conn, peer, limit=1_000_000)
                if h.checked == 1 and h.kind == "tree-head"
            ]
        logs: dict[str, Any] = {home.config.name: own_log}
        if their_heads:
            logs[peer] = await _peer_log_section(peer_log, their_heads, items)
        cards = {
            home.config.name: b64encode(home.card(datetime.now(UTC)).statement),
            peer: b64encode(node.peers[peer].statement),
        }
        with home.store.read() as conn:
            cosigned = cosignatures_upto(conn, own_last.size)
        witness_cards = {n: c for n, c in node.peers.items() if c.role == "witness"}
        witnesses = {
            name: {
                "card": b64encode(card.statement),
                "cosignatures": [b64encode(s) for w, s in cosigned if w == name],
            }
            for name, card in witness_cards.items()
        }
        with home.store.read() as conn:
            key_history = {
                name: section
                for name in (home.config.name, peer)
                if (section := _key_history_section(conn, name)) is not None
            }
        exported_at = format_time(datetime.now(UTC))
        body = encode_bundle(
            link=(home.config.name, peer),
            exported_by=home.config.name,
            exported_at=exported_at,
            cards=cards,
            statements=statements,
            logs=logs,
            witnesses=witnesses,
            key_history=key_history,
        )
        return sign_bundle(home.identity, body, exported_at)
    finally:
        await link.close()


def _key_history_section(conn: Connection, name: str) -> dict[str, Any] | None:
    """A party's first card and key events, if its keys ever changed (docs/audit.md)."""
    events = keyring.events(conn, name)
    if not events:
        return None
    first = keyring.history(conn, name)[0].card
    return {"first_card": b64encode(first.statement), "events": [b64encode(s) for _k, s in events]}


def _their_kind(ours: str) -> str:
    """What the peer's log calls an entry we call ``ours``: our message.out is its message.in."""
    noun, _, direction = ours.partition(".")
    return f"{noun}.{'in' if direction == 'out' else 'out'}"


async def _peer_log_section(
    peer_log: HttpPeerLog, heads: list[PeerHead], items: list[tuple[str, str, bytes]]
) -> dict[str, Any]:
    """The peer's heads we hold, with proofs fetched from the peer (checked before writing)."""
    unique: dict[int, PeerHead] = {}
    for head in sorted(heads, key=lambda h: h.size):
        unique.setdefault(head.size, head)
    chain = list(unique.values())
    last = chain[-1]
    consistency = []
    for a, b in itertools.pairwise(chain):
        proof = await peer_log.consistency_proof(a.size, b.size)
        consistency.append(
            {"first": a.size, "second": b.size, "proof": [b64encode(x) for x in proof]}
        )
    entries = []
    for ref, _kind, statement in items:
        for index in await peer_log.leaf_indexes(ref):
            if index >= last.size:
                continue
            proof = await peer_log.inclusion_proof(index, last.size)
            try:
                merkle.verify_inclusion(
                    leaf_hash=merkle.leaf_hash(statement),
                    index=index,
                    size=last.size,
                    proof=proof,
                    root=last.root,
                )
            except HotlineError:
                continue  # another leaf of the same ref (or a bad one): cross-check reports it
            entries.append(
                {
                    "index": index,
                    "kind": _their_kind(_kind),
                    "ref": ref,
                    "statement": statement_key(statement),
                    "proof": [b64encode(x) for x in proof],
                }
            )
            break
    return {
        "heads": [b64encode(h.evidence) for h in chain],
        "consistency": consistency,
        "entries": entries,
    }


@audit_app.command("export")
def audit_export(
    dir: DirOption,
    peer: Annotated[str, typer.Option(help="The peer whose link to export.")],
    out: Annotated[Path, typer.Option(help="Where to write the bundle.")],
) -> None:
    """Write a self-contained audit bundle of the link with ``peer`` (docs/audit.md)."""
    data = asyncio.run(export_bundle(NodeHome(dir), peer))
    out.write_bytes(data)
    console.print(f"wrote {out} ({len(data):,} bytes)", highlight=False)


@audit_app.command("verify")
def audit_verify(
    bundle: Annotated[Path, typer.Argument(help="An audit bundle file.")],
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes for signatures.")] = (
        os.cpu_count() or 1
    ),
    json_out: JsonOption = False,
) -> None:
    """Verify a bundle offline: every signature, inclusion and consistency proof.

    Needs no node, no store and no key but those in the bundle. Exits 4 naming the first item
    that fails.
    """
    try:
        size = bundle.stat().st_size
    except FileNotFoundError as e:
        raise NotFoundError(f"no bundle file {bundle}") from e
    if size > MAX_BUNDLE_BYTES:
        raise InputError(f"{bundle}: {size} bytes is over the bundle limit")
    report = verify_bundle(bundle, workers=workers)
    if json_out:
        _print_json({"ok": True, **report.to_dict()})
        return
    # What follows comes from the bundle, a file: shown as text (cli._app.plain).
    link = quoted(f"{report.link[0]} <-> {report.link[1]}, exported by {report.exported_by}")
    console.print(f"[green]VERIFIED[/] link {link}", highlight=False)
    console.print(
        f"  {report.messages} messages, {report.receipts} receipts, "
        f"{report.signature_checks} statements' signatures checked",
        highlight=False,
    )
    console.print(f"  senders: {quoted(str(report.senders))}", highlight=False)
    changed = {name: n for name, n in report.keys.items() if n > 1}
    if changed:
        console.print(
            f"  key history replayed (keys per party): {quoted(str(changed))}", highlight=False
        )
    for line in report.suspect[:20]:
        console.print(f"  [yellow]SUSPECT[/] {quoted(line)}", highlight=False)
    console.print(quoted(f"  from {report.first} to {report.last}"), highlight=False)
    for name, log in report.logs.items():
        console.print(
            f"  {quoted(name)}'s log: size {log.size}, {log.heads} signed heads, "
            f"{log.entries} entries of this link proved, "
            f"{len(log.unproved)} statements not in it",
            highlight=False,
        )

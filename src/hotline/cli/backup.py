"""``hotline backup`` and ``hotline restore``: the store to one file and back (docs/operations)."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hotline.cli._app import app, plain
from hotline.core.encoding import to_us
from hotline.errors import ErrorCode, InputError, StorageError
from hotline.link import keyring
from hotline.node.home import NodeHome
from hotline.store import backup as store_backup
from hotline.store.db import is_postgresql
from hotline.transcript import hold
from hotline.transcript.recovered import list_recovered

console = Console(highlight=False)
log = logging.getLogger("hotline.node")

DirOption = Annotated[
    Path, typer.Option("--dir", envvar="HOTLINE_DIR", help="Node directory; or HOTLINE_DIR.")
]


def _print_summary(title: str, summary: store_backup.Summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": summary.to_dict()}))
        return
    console.print(f"{title}: transcript of {summary.transcript_size} entries")
    for peer, (out_seq, in_seq) in sorted(summary.peers.items()):
        console.print(f"  {peer}: sent up to seq {out_seq}, received up to seq {in_seq}")


@app.command()
def backup(
    dir: DirOption,
    out: Annotated[Path, typer.Option(help="The backup file to write.")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Copy the store to one file while the node runs (SQLite online backup, or pg_dump).

    The private keys are not in it: back up DIR/keys apart."""
    home = NodeHome(dir)
    store_backup.backup(home.store_url, out)
    _print_summary(f"backup written to {out}", store_backup.summarize(home.store), json_out)


def _refuse_if_serving(home: NodeHome) -> None:
    """A running node must not have its store replaced under it.

    Anything accepting connections on the node's listen address counts as the node (plain HTTP
    or TLS alike): refusing a restore wrongly costs a retry, allowing it wrongly costs the store.
    """
    address = (home.config.listen_host, home.config.listen_port)
    try:
        with socket.create_connection(address, timeout=2.0):
            pass
    except OSError:
        return
    raise InputError(
        f"a process listens on {address[0]}:{address[1]}: stop every process of this node first"
    )


@app.command()
def restore(
    backup_file: Annotated[Path, typer.Argument(help="A file made by 'hotline backup'.")],
    dir: DirOption,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Replace the store with a backup. Stop every process of the node first.

    Everything committed after the backup is gone: read docs/operations.md ("Restore") for what
    the peers hold and how they will see it."""
    home = NodeHome(dir)
    if not backup_file.is_file():
        raise InputError(f"no backup file {backup_file}")
    _refuse_if_serving(home)
    leadership = None
    if is_postgresql(home.store_url):
        from hotline.node.replica import Leadership

        # Holding the leader lock proves no replica of this node is active on the store, and
        # keeps a standby from becoming active half-way through.
        leadership = Leadership(home.store_url)
        if not leadership.try_acquire():
            raise StorageError(
                "a process of this node is active on this store: stop every replica first",
                code=ErrorCode.STANDBY,
            )
    try:
        home.close()
        kept = store_backup.restore(home.store_url, backup_file)
    finally:
        if leadership is not None:
            leadership.release()
    restored = NodeHome(dir)
    summary = store_backup.summarize(restored.store)
    peers = sorted(n for n, c in restored.peer_cards().items() if c.role == "node")
    if peers:
        # The backup may be older than what the peers saw: append nothing until each of them
        # has shown, in a heartbeat, that it holds nothing of ours beyond this store (hold.py).
        with restored.store.write() as conn:
            hold.put_on_hold(
                conn,
                reason=hold.RESTORED,
                detail=f"restored from {backup_file.name} (a log of {summary.transcript_size} "
                f"entries); waiting for a heartbeat of each peer ({', '.join(peers)}) to show "
                "that it holds nothing of ours beyond it",
                now_us=to_us(datetime.now(UTC)),
            )
    log.warning(
        "store of %s restored from %s: log of %d entries, on hold until %s confirm it",
        restored.config.name,
        backup_file,
        summary.transcript_size,
        ", ".join(peers) or "no peer",
    )
    if json_out:
        print(
            json.dumps(
                {
                    "summary": summary.to_dict(),
                    "kept": str(kept) if kept else None,
                    "on_hold_until_confirmed_by": peers,
                }
            )
        )
        return
    _print_summary(f"restored {backup_file}", summary, False)
    if kept is not None:
        console.print(f"the replaced store is kept in {kept}")
    console.print(
        "Anything committed after the backup is gone from this store. Peers still hold it: "
        "see docs/operations.md (Restore) before starting the node."
    )
    if peers:
        console.print(
            f"The transcript is on hold until {', '.join(peers)} confirm(s) in a heartbeat that "
            "they hold nothing of ours beyond this backup; if one holds more, the node says "
            "exactly what is missing (security event log_behind), stays on hold, and fetches "
            "the link's lost messages from the peer as verified evidence (hotline recovered)."
        )


@app.command()
def recovered(
    dir: DirOption,
    peer: Annotated[
        str | None, typer.Option(help="Only what was recovered from this peer.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Messages a restore lost, fetched back from the peer as verified evidence.

    Each was checked (its author's signature, its inclusion in the peer's log under a signed
    head of the peer consistent with those we hold) and is kept apart: never in this node's
    transcript, which stays on hold (docs/operations.md, "Restore")."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        rows = list_recovered(conn, peer, compromised=keyring.compromise_times(conn))
        state = hold.current(conn)
    if json_out:
        print(
            json.dumps(
                {
                    "hold": None
                    if state is None
                    else {"reason": state.reason, "detail": state.detail},
                    "recovered": [r.to_dict() for r in rows],
                },
                ensure_ascii=False,
            )
        )
        return
    if state is not None:
        console.print(f"transcript on hold ({state.reason})", markup=False)
    if not rows:
        console.print("nothing recovered")
        return
    me = home.config.name
    for row in rows:
        sender, recipient = (row.peer, me) if row.direction == "in" else (me, row.peer)
        # Text from a peer is shown as it is (cli._app.plain).
        console.print(
            plain(
                f"{sender} -> {recipient} seq {row.seq} {row.kind} {row.ref} "
                f"[{row.msg_type} {row.priority}] signed {row.created}"
            )
        )
        console.print(plain(f"  {row.body}"))
        console.print(
            f"  verified: signed by {sender}'s key {row.key_id[:16]}; leaf {row.leaf_index} of "
            f"{row.peer}'s log of size {row.tree_size} (root {row.tree_root[:16]}...)",
            markup=False,
        )
        if row.key_suspect:
            console.print(
                f"  KEY SUSPECT: key {row.key_id[:16]} was revoked as compromised as of a time "
                "at or before this statement: it may be the thief's",
                markup=False,
            )

"""Key lifecycle commands: rotate and revoke this node's keys, list their history, and confirm
a peer's new key after a fresh fingerprint check (docs/protocol.md §15)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hotline.cli._app import plain, quoted
from hotline.cli.node import (
    DirOption,
    JsonOption,
    _parse_ttl,
    _print_json,
    _wake_node,
    console,
    peer_app,
)
from hotline.core.card import normalize_fingerprint
from hotline.core.encoding import parse_time, to_us
from hotline.core.keyevents import (
    MAX_EVENT_FILE_BYTES,
    MAX_OVERLAP,
    event_file,
    parse_event_file,
)
from hotline.errors import HotlineError, InputError, NotFoundError
from hotline.link import keyring
from hotline.node.home import NodeHome

app = typer.Typer(help="This node's keys: rotation, revocation, history.", no_args_is_help=True)

PassphraseStdin = Annotated[
    bool,
    typer.Option(
        "--passphrase-stdin",
        help="Read the keys' passphrase from stdin (the new keys are sealed under it too).",
    ),
]


def _home(directory: Path, passphrase_stdin: bool) -> NodeHome:
    passphrase = sys.stdin.readline().rstrip("\r\n") if passphrase_stdin else None
    return NodeHome(directory, passphrase=passphrase)


def _event_out(event: keyring.OwnEvent) -> dict[str, Any]:
    return {
        "kind": event.kind.value,
        "old_key_id": event.old_key_id,
        "new_key_id": event.new_key_id,
        "new_fingerprint": event.new_fingerprint,
        "sent_to": event.message_ids,
        "dropped": event.dropped,
    }


@app.command("rotate")
def rotate(
    dir: DirOption,
    overlap: Annotated[
        str, typer.Option(help="How long peers accept the old key too, e.g. 7d (at most 90d).")
    ] = "7d",
    passphrase_stdin: PassphraseStdin = False,
    json_out: JsonOption = False,
) -> None:
    """New keys; a rotation statement signed by the old and the new key goes to every peer."""
    length = _parse_ttl(overlap, "--overlap") or timedelta(days=7)
    if not timedelta(0) < length <= MAX_OVERLAP:
        raise InputError(f"--overlap must be more than 0 and at most {MAX_OVERLAP.days}d")
    home = _home(dir, passphrase_stdin)
    event = home.change_keys(datetime.now(UTC), overlap=length, compromised_at=None)
    _wake_node(home)
    if json_out:
        _print_json(_event_out(event))
        return
    console.print(f"rotated: key {event.old_key_id} -> [bold]{event.new_key_id}[/]")
    console.print(f"new fingerprint: [bold]{event.new_fingerprint}[/]", highlight=False)
    console.print(
        f"queued to {len(event.message_ids)} peer(s): {', '.join(event.message_ids) or '-'}; "
        f"they accept the old key for {overlap} more"
    )


@app.command("revoke")
def revoke(
    dir: DirOption,
    compromised_at: Annotated[
        str,
        typer.Option(
            help="When the key may have been compromised (RFC 3339, e.g. "
            "2026-11-26T03:00:00Z), or 'now'."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Also write the revocation to this file, to hand to peers out of band "
            "(hotline peer confirm-key --revocation FILE) if the link cannot carry it."
        ),
    ] = None,
    passphrase_stdin: PassphraseStdin = False,
    json_out: JsonOption = False,
) -> None:
    """Declare the current key compromised; new keys; every peer must check the new
    fingerprint with you by telephone (hotline peer confirm-key) before it accepts them."""
    now = datetime.now(UTC)
    since = now if compromised_at == "now" else _time(compromised_at)
    if since > now:
        raise InputError("--compromised-at is in the future")
    home = _home(dir, passphrase_stdin)
    event = home.change_keys(now, compromised_at=since)
    if out is not None:
        out.write_bytes(event_file(event.statement))
    _wake_node(home)
    if json_out:
        _print_json(_event_out(event))
        return
    console.print(f"revoked key {event.old_key_id} as compromised since {since.isoformat()}")
    console.print(f"new key {event.new_key_id}")
    console.print(
        f"READ THIS FINGERPRINT TO EACH PEER BY TELEPHONE: [bold]{event.new_fingerprint}[/]",
        highlight=False,
    )
    if event.dropped:
        console.print(
            f"{len(event.dropped)} queued message(s) were signed by the revoked key and will "
            f"not be delivered; send them again: {', '.join(event.dropped[:10])}"
        )


def _time(text: str) -> datetime:
    try:
        return parse_time(text, what="--compromised-at")
    except HotlineError as e:
        raise InputError(e.detail, fields={"compromised_at": "RFC 3339 time"}) from e


@app.command("retire")
def retire(
    dir: DirOption,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Delete the earlier decryption keys retired longer ago than this, e.g. 30d "
            "(default: the relay's hold plus a message's default lifetime, 8d unless "
            "configured otherwise)."
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Delete the decryption keys of earlier generations (threat model K2).

    A rotation keeps the old decryption key so that envelopes already sealed to it still open.
    Once none can come any more, deleting it means a copy of this directory made later cannot
    open what was recorded of that generation. Envelopes sealed to a deleted key are refused.
    """
    home = NodeHome(dir)
    parsed = _parse_ttl(older_than, "--older-than")
    age = parsed if parsed is not None else home.previous_keys_kept
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("no terminal to confirm on: pass --yes")
        typer.confirm(
            f"Delete {home.config.name}'s earlier decryption keys retired over "
            f"{age.total_seconds() / 86400:g} days ago? Nothing sealed to them opens again",
            abort=True,
        )
    deleted = home.retire_previous_keys(datetime.now(UTC), age)
    if json_out:
        _print_json({"deleted": deleted})
        return
    if not deleted:
        console.print("no earlier decryption key is that old")
        return
    console.print(f"deleted the decryption keys of {len(deleted)} earlier generation(s):")
    for key_id in deleted:
        console.print(f"  {key_id}", highlight=False)
    console.print("a running node forgets them when it restarts", highlight=False)


@app.command("list")
def list_keys(dir: DirOption, json_out: JsonOption = False) -> None:
    """This node's keys, oldest first: active, overlap, retired or revoked."""
    home = NodeHome(dir)
    now = datetime.now(UTC)
    with home.store.write() as conn:
        keyring.ensure_own_key(conn, home.card(now), to_us(now))
        records = keyring.history(conn, home.config.name)
    rows = [r.to_dict(to_us(now)) for r in records]
    if json_out:
        _print_json(rows)
        return
    _print_keys(rows)


def _print_keys(rows: list[dict[str, Any]]) -> None:
    table = Table("key id", "state", "fingerprint", "added", "until / compromised")
    for r in rows:
        table.add_row(
            r["key_id"],
            r["state"],
            r["fingerprint"],
            (r["added"] or "")[:19],
            (r["valid_until"] or r["compromised_at"] or "")[:19],
        )
    console.print(table)


@peer_app.command("confirm-key")
def confirm_key(
    name: Annotated[str, typer.Argument(help="The peer whose new key to confirm.")],
    dir: DirOption,
    fingerprint: Annotated[
        str | None, typer.Option(help="The new fingerprint, read out of band (for scripts).")
    ] = None,
    revocation: Annotated[
        Path | None,
        typer.Option(
            help="The peer's revocation file (hotline keys revoke --out), when its revocation "
            "did not arrive over the link."
        ),
    ] = None,
) -> None:
    """Accept a peer's new key after its revocation, once its fingerprint is checked again."""
    home = NodeHome(dir)
    if revocation is not None:
        try:
            with revocation.open("rb") as f:
                data = f.read(MAX_EVENT_FILE_BYTES + 1)
        except FileNotFoundError as e:
            raise NotFoundError(f"no revocation file {revocation}") from e
        statement = parse_event_file(data)
        with home.store.write() as conn:
            offered = keyring.import_revocation(
                conn, home.peer_card(name), statement, to_us(datetime.now(UTC))
            )
        console.print(f"{name}'s revocation recorded; its new key's fingerprint is {offered}")
    if fingerprint is None:
        if not sys.stdin.isatty():
            raise InputError("no terminal to confirm on: pass --fingerprint CODE")
        fingerprint = typer.prompt("Read the new fingerprint with the other side; type it")
    now_us = to_us(datetime.now(UTC))
    with home.store.write() as conn:
        record = keyring.confirm_peer_key(
            conn, home.identity, name, normalize_fingerprint(fingerprint), now_us
        )
    console.print(f"confirmed {name}'s key {record.key_id}; it is now the peer's key")
    _wake_node(home)


@peer_app.command("show")
def peer_show(
    name: Annotated[str, typer.Argument(help="A peer's name.")],
    dir: DirOption,
    json_out: JsonOption = False,
) -> None:
    """A peer's card and the state of each of its keys (active, overlap, revoked, pending)."""
    home = NodeHome(dir)
    card = home.peer_card(name)
    now_us = to_us(datetime.now(UTC))
    with home.store.read() as conn:
        records = keyring.history(conn, name)
    keys = [r.to_dict(now_us) for r in records]
    out: dict[str, Any] = {
        "name": card.name,
        "role": card.role,
        "fingerprint": card.fingerprint,
        "endpoints": list(card.endpoints),
        "display_names": card.display_names,
        "keys": keys,
    }
    if json_out:
        _print_json(out)
        return
    console.print(f"[bold]{card.name}[/] ({quoted(card.role)}) fingerprint {card.fingerprint}")
    console.print(plain(f"endpoints: {', '.join(card.endpoints)}"))
    _print_keys(keys)

"""``hotline offline``: envelopes on a file, for a courier or a one-way data diode.

``export --to moscow FILE`` writes every envelope still waiting for moscow's DELIVERED receipt
(messages and ACKNOWLEDGED receipts, lowest sequence first) as one batch file.
``import FILE --receipts-out REPLY`` delivers a batch file through the same inbox as the network
(every check, exactly once) and writes the signed DELIVERED receipts to REPLY, which goes back the
same way: importing REPLY on the first side marks the messages delivered.

File format: a hotline batch (docs/protocol.md §6): ``"HLB1" | u16 count | (u32 length |
envelope)*``, at most 256 envelopes. Nothing in it is readable or forgeable without the keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from hotline.cli._app import app
from hotline.cli.node import DirOption, JsonOption, _print_json, console
from hotline.core.encoding import to_us
from hotline.core.envelope import MAX_BATCH_BYTES, MAX_BATCH_ENVELOPES, decode_batch, encode_batch
from hotline.errors import InputError, NotFoundError
from hotline.link import inbox
from hotline.node.home import NodeHome
from hotline.store.messages import State, add_events, count_attempts, pending_outgoing

offline_app = typer.Typer(
    help="Envelopes on files, for a courier or a data diode.", no_args_is_help=True
)
app.add_typer(offline_app, name="offline")


@offline_app.command("export")
def offline_export(
    file: Annotated[Path, typer.Argument(help="The file to write.")],
    dir: DirOption,
    to: Annotated[str, typer.Option(help="The peer the file is for.")],
    json_out: JsonOption = False,
) -> None:
    """Write the envelopes waiting for ``to`` (at most 256; export again for more)."""
    home = NodeHome(dir)
    home.peer_card(to)
    now_us = to_us(datetime.now(UTC))
    with home.store.write() as conn:
        pending = pending_outgoing(conn, to, MAX_BATCH_ENVELOPES)
        count_attempts(conn, [o.id for o in pending])
        add_events(
            conn, [(o.id, State.SENT, now_us, "offline file") for o in pending if o.attempts == 0]
        )
    file.write_bytes(encode_batch([o.envelope for o in pending]))
    if json_out:
        _print_json(
            {
                "file": str(file),
                "envelopes": len(pending),
                "first_seq": pending[0].seq if pending else None,
            }
        )
    else:
        console.print(f"wrote {len(pending)} envelope(s) for {to} to {file}", highlight=False)


@offline_app.command("import")
def offline_import(
    file: Annotated[Path, typer.Argument(help="A file written by 'offline export'.")],
    dir: DirOption,
    receipts_out: Annotated[
        Path | None, typer.Option(help="Where to write the receipts to send back.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Deliver a file's envelopes with every check of the network path; write the receipts."""
    home = NodeHome(dir)
    try:
        size = file.stat().st_size
    except FileNotFoundError as e:
        raise NotFoundError(f"no file {file}") from e
    if size > MAX_BATCH_BYTES:
        raise InputError(f"{file}: {size} bytes, more than a batch holds")
    envelopes = decode_batch(file.read_bytes())
    result = inbox.receive(
        home.store,
        home.identity,
        home.peer_cards(),
        envelopes,
        now=datetime.now(UTC),
        source=f"file:{file.name}",
    )
    receipts = [r for sender in result.receipts for r in result.receipts[sender]]
    if receipts and receipts_out is None:
        raise InputError(
            "the file held messages: give --receipts-out to send their receipts "
            "back (they are kept and will be sent again with any duplicate)"
        )
    if receipts_out is not None:
        receipts_out.write_bytes(encode_batch(receipts))
    rejected = [o.to_dict() for o in result.outcomes if o.status == "rejected"]
    summary: dict[str, object] = {
        "accepted": sum(1 for o in result.outcomes if o.status == "accepted"),
        "duplicates": sum(1 for o in result.outcomes if o.status == "duplicate"),
        "receipts_applied": sum(1 for o in result.outcomes if o.status == "receipt"),
        "rejected": rejected,
        "receipts_written": len(receipts),
    }
    if json_out:
        _print_json(summary)
    else:
        console.print(
            f"{summary['accepted']} delivered, {summary['duplicates']} duplicate(s), "
            f"{summary['receipts_applied']} receipt(s) applied, "
            f"{len(rejected)} rejected; {len(receipts)} receipt(s) to send back",
            highlight=False,
        )
    if rejected:
        raise typer.Exit(4)

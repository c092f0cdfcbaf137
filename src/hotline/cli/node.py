"""Node commands: identity, peers, sending and reading messages, serving, link state."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

from hotline.cli._app import app, err_console, plain, quoted
from hotline.compose import check_outgoing, validate_body
from hotline.compose.priority import Priority
from hotline.compose.readback import shown_text, text_hash
from hotline.core.card import MAX_CARD_FILE_BYTES, normalize_fingerprint, parse_card_file
from hotline.core.encoding import from_us, to_us
from hotline.core.envelope import new_id
from hotline.errors import ConfigError, ErrorCode, HotlineError, InputError, NotFoundError
from hotline.link import outbox
from hotline.link.deadlines import overdue as find_overdue
from hotline.link.status import LinkReport, link_report, transport_names, transport_reports
from hotline.link.tls import spki_sha256
from hotline.node.home import PASSPHRASE_ENV, NodeHome
from hotline.operators.release import needs_release
from hotline.store.messages import (
    MessageView,
    acknowledgement_of,
    get_message,
    list_messages,
    notification_copies,
    peer_names,
)
from hotline.transcript.translations import attach as attach_translation
from hotline.transcript.translations import translations_of

if TYPE_CHECKING:
    from hotline.node.replica import Leadership

console = Console()

DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="HOTLINE_DIR",
        help="The node's directory (or HOTLINE_DIR).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

peer_app = typer.Typer(help="Manage peers (other parties' nodes).", no_args_is_help=True)
app.add_typer(peer_app, name="peer")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _wake_urls(home: NodeHome) -> list[str]:
    """Where to wake the node, in order: the address the active replica recorded in the store
    (with replicas, this directory's ``endpoint`` may be a dead or standby process), then this
    directory's endpoints."""
    from hotline.node.replica import active_url

    try:
        recorded = active_url(home.store)
    except HotlineError as e:
        logging.getLogger("hotline.cli").info("no active replica address: %s", e)
        recorded = None
    urls: list[str] = []
    for url in (recorded, home.config.endpoint, *home.config.alternate_endpoints):
        if url and url not in urls:
            urls.append(url)
    return urls


def _wake_node(home: NodeHome) -> bool:
    """Tell the running node (the active replica) to look at its outbox now; True when one
    answered. Best effort: it also polls. A standby answers 503, a dead process not at all: the
    next address is tried."""
    for url in _wake_urls(home):
        try:
            response = httpx.post(
                f"{url}/api/v1/wake",
                headers={"authorization": f"Bearer {home.api_token}"},
                timeout=2.0,
                trust_env=False,
                verify=home.local_verify(),
            )
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            return True
    return False


def _own_url(home: NodeHome) -> str:
    """The URL this process answers at, for the active replica's record: its listen address, or
    for a wildcard one (0.0.0.0, ::) the URL of its card on its port."""
    config = home.config
    host = config.listen_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (recognising a wildcard, not binding one)
        for url in (config.endpoint, *config.alternate_endpoints):
            if urlsplit(url).port == config.listen_port:
                return url
        host = "127.0.0.1"
    scheme = "https" if config.tls else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{config.listen_port}"


# -- identity ------------------------------------------------------------------------------


@app.command()
def init(
    name: Annotated[str, typer.Option(help="This node's name, e.g. 'washington'.")],
    dir: DirOption,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve on.")] = "127.0.0.1:8400",
    display_en: Annotated[str | None, typer.Option(help="Display name in English.")] = None,
    display_ru: Annotated[str | None, typer.Option(help="Display name in Russian.")] = None,
    role: Annotated[str, typer.Option(help="node, witness or relay.")] = "node",
    unsafe_plain_http: Annotated[
        bool,
        typer.Option(
            "--unsafe-plain-http",
            help="Serve plain HTTP instead of TLS 1.3 with a pinned certificate "
            "(loopback tests and demos only).",
        ),
    ] = False,
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="Read the keys' passphrase from stdin.")
    ] = False,
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Keys in the clear (tests, demos only).")
    ] = False,
    store_url: Annotated[
        str,
        typer.Option(
            help="The store: a PostgreSQL database (postgresql+psycopg://USER@HOST/DB); "
            "default store.sqlite in DIR."
        ),
    ] = "",
) -> None:
    """Create a node: keys encrypted under a passphrase (0600 files), config, empty store."""
    if role not in ("node", "witness", "relay"):
        raise InputError(f"role must be node, witness or relay, not {role!r}")
    names = {"en": display_en or name.capitalize()}
    if display_ru:
        names["ru"] = display_ru
    passphrase = None if no_passphrase else _new_passphrase(passphrase_stdin)
    home = NodeHome.init(
        dir,
        name=name,
        listen=listen,
        display_names=names,
        role=role,
        passphrase=passphrase,
        store_url=store_url,
        tls=not unsafe_plain_http,
    )
    card = home.card(datetime.now(UTC))
    console.print(f"created node [bold]{name}[/] in {dir}, serving {home.config.endpoint}")
    console.print(f"fingerprint: [bold]{card.fingerprint}[/]")
    if card.tls_cert is not None:
        console.print(f"TLS certificate (SHA-256 of its key): {spki_sha256(card.tls_cert)}")


def _new_passphrase(from_stdin: bool) -> str:
    """The passphrase for new key files: stdin, HOTLINE_PASSPHRASE, or asked twice."""
    if from_stdin:
        passphrase = sys.stdin.readline().rstrip("\r\n")
    elif os.environ.get(PASSPHRASE_ENV):
        passphrase = os.environ[PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        passphrase = typer.prompt(
            "passphrase for the node's keys", hide_input=True, confirmation_prompt=True
        )
    else:
        raise InputError(
            "no passphrase: give --passphrase-stdin, set HOTLINE_PASSPHRASE, or "
            "--no-passphrase for a test node"
        )
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InputError(f"a passphrase has at least {MIN_PASSPHRASE_CHARS} characters")
    return passphrase


#: Shortest passphrase accepted for key files (scrypt slows guessing; length still matters).
MIN_PASSPHRASE_CHARS = 12


@app.command()
def card(
    dir: DirOption,
    out: Annotated[Path | None, typer.Option(help="Write the card to this file.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Write this node's contact card and print its fingerprint."""
    home = NodeHome(dir)
    node_card = home.card(datetime.now(UTC))
    if out is not None:
        out.write_bytes(node_card.to_file_bytes())
    if json_out:
        _print_json(
            {
                "name": node_card.name,
                "fingerprint": node_card.fingerprint,
                "file": str(out) if out else None,
            }
        )
        return
    if out is None:
        sys.stdout.write(node_card.to_file_bytes().decode() + "\n")
    console.print(
        f"fingerprint of {node_card.name}: [bold]{node_card.fingerprint}[/]", highlight=False
    )


def _read_card(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CARD_FILE_BYTES:
            raise InputError(f"{path}: {size} bytes is too large for a card")
        return parse_card_file(path.read_bytes())
    except FileNotFoundError as e:
        raise NotFoundError(f"no card file {path}") from e


@app.command()
def fingerprint(card_file: Annotated[Path, typer.Argument(help="A card file.")]) -> None:
    """Print the fingerprint of a card file, alone on a line (after verifying the card)."""
    sys.stdout.write(_read_card(card_file).fingerprint + "\n")


@peer_app.command("add")
def peer_add(
    card_file: Annotated[Path, typer.Argument(help="The peer's card file.")],
    dir: DirOption,
    fingerprint: Annotated[
        str | None, typer.Option(help="The fingerprint read out of band (for scripts).")
    ] = None,
) -> None:
    """Add a peer after its card verifies and the operator confirms its fingerprint."""
    home = NodeHome(dir)
    peer_card = _read_card(card_file)
    console.print(
        f"peer [bold]{peer_card.name}[/] fingerprint: [bold]{peer_card.fingerprint}[/]",
        highlight=False,
    )
    if fingerprint is None:
        if not sys.stdin.isatty():
            raise InputError("no terminal to confirm on: pass --fingerprint CODE")
        typed = typer.prompt("Read the fingerprint with the other side; type it to confirm")
        fingerprint = typed
    home.add_peer(peer_card, normalize_fingerprint(fingerprint), datetime.now(UTC))
    console.print(f"added peer {peer_card.name}")
    _wake_node(home)


@peer_app.command("list")
def peer_list(dir: DirOption, json_out: JsonOption = False) -> None:
    """List peers with their fingerprints and endpoints."""
    home = NodeHome(dir)
    cards = home.peer_cards()
    rows = [
        {
            "name": c.name,
            "fingerprint": c.fingerprint,
            "endpoints": list(c.endpoints),
            "display_names": c.display_names,
            "tls_pin": spki_sha256(c.tls_cert) if c.tls_cert else None,
        }
        for c in cards.values()
    ]
    if json_out:
        _print_json(rows)
        return
    table = Table("peer", "fingerprint", "endpoint")
    for c in cards.values():
        table.add_row(c.name, c.fingerprint, plain(", ".join(c.endpoints)))
    console.print(table)


# -- messages ------------------------------------------------------------------------------


def _parse_ttl(text: str | None, option: str = "--ttl") -> timedelta | None:
    """A duration such as ``30m`` or ``7d`` given to ``option`` (None: not given)."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InputError(f"{option} takes a number and a unit s, m, h or d, e.g. 30m; not {text!r}")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def _read_body(source: str) -> dict[str, Any]:
    """A message body from a JSON file, or from standard input with ``-``."""
    try:
        data = sys.stdin.buffer.read(MAX_BODY_FILE_BYTES + 1) if source == "-" else None
        if data is None:
            path = Path(source)
            if path.stat().st_size > MAX_BODY_FILE_BYTES:
                raise InputError(f"{source}: larger than {MAX_BODY_FILE_BYTES} bytes")
            data = path.read_bytes()
    except FileNotFoundError as e:
        raise NotFoundError(f"no body file {source}") from e
    if len(data) > MAX_BODY_FILE_BYTES:
        raise InputError(f"body larger than {MAX_BODY_FILE_BYTES} bytes")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{source}: not JSON ({e})") from e
    if not isinstance(body, dict):
        raise InputError(f"{source}: a message body is a JSON object")
    return body


MAX_BODY_FILE_BYTES = 1024 * 1024


@app.command()
def send(
    dir: DirOption,
    to: Annotated[
        list[str],
        typer.Option(
            help="A peer to send to; repeat for several, or 'all' for every peer "
            "node. Each gets its own sealed copy under one notification id."
        ),
    ],
    text: Annotated[str | None, typer.Option(help="Free text (type free_text).")] = None,
    lang: Annotated[str, typer.Option(help="Language of --text.")] = "en",
    msg_type: Annotated[
        str, typer.Option("--type", help="Catalog type, e.g. activity_notification.")
    ] = "free_text",
    body: Annotated[
        str | None, typer.Option(help="JSON file with the body of a formatted message, or -.")
    ] = None,
    priority: Annotated[Priority, typer.Option(help="flash, immediate, priority, routine.")] = (
        Priority.ROUTINE
    ),
    ttl: Annotated[str | None, typer.Option(help="Give up after this long, e.g. 6h.")] = None,
    operator: Annotated[
        str | None,
        typer.Option(
            help="Your operator name, signed in as the author. A FLASH message needs "
            "it (with --totp and your password on standard input): it goes to the "
            "release queue for a second person."
        ),
    ] = None,
    totp: Annotated[str | None, typer.Option(help="Your current TOTP code.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Queue a message durably; the node delivers it. Prints the message id.

    Free text with --text; any catalog type with --type and --body (checked field by field
    before anything is signed). A priority that needs two-person release (FLASH) is held in the
    release queue instead, and its request id printed.
    """
    if (text is None) == (body is None):
        raise InputError("give either --text or --body")
    if text is not None:
        if msg_type != "free_text":
            raise InputError("--text makes a free_text message; use --body for other types")
        message_body: dict[str, Any] = {"text": text, "lang": lang}
    else:
        message_body = _read_body(body or "-")
    home = NodeHome(dir)
    recipients = resolve_recipients(home, to)
    in_reply_to = message_body.get("in_reply_to") if msg_type == "response" else None
    if needs_release(priority.value):
        _hold_for_release(
            home,
            operator,
            totp,
            recipients,
            msg_type,
            priority.value,
            message_body,
            in_reply_to,
            json_out,
        )
        return
    now = datetime.now(UTC)
    _warn_rules(msg_type, message_body, now)
    notification = new_id(now) if len(recipients) > 1 else None
    ttl_delta = _parse_ttl(ttl) or timedelta(seconds=home.config.default_ttl_s)
    ids = outbox.submit_messages(
        home.store,
        home.identity,
        [
            outbox.Draft(
                peer=home.peer_card(peer),
                msg_type=msg_type,
                priority=priority.value,
                body=message_body,
                ttl=ttl_delta,
                in_reply_to=in_reply_to,
                author=operator,
                notification=notification,
            )
            for peer in recipients
        ],
        now=now,
    )
    _wake_node(home)
    if json_out:
        out: dict[str, Any] = {"id": notification or ids[0], "state": "queued"}
        if notification:
            out["copies"] = dict(zip(recipients, ids, strict=True))
        _print_json(out)
    else:
        sys.stdout.write((notification or ids[0]) + "\n")


def _warn_rules(msg_type: str, body: dict[str, Any], now: datetime) -> None:
    """Say, before sending, where a notification falls short of a regime's rules (late notice,
    observers not invited); the operator decides. Invalid bodies are refused later, field by
    field, by the outbox."""
    try:
        model = validate_body(msg_type, body)
    except HotlineError:
        return
    for finding in check_outgoing(msg_type, model, now):
        err_console.print(f"[yellow]warning[/] {quoted(finding.text('en'))}")


def resolve_recipients(home: NodeHome, names: list[str]) -> list[str]:
    """Peer names, with ``all`` for every peer node (not witnesses) and the groups named in
    node.toml; each peer once."""
    cards = home.peer_cards()
    out: list[str] = []
    for name in names:
        if name == "all":
            expanded = sorted(n for n, c in cards.items() if c.role == "node")
        else:
            expanded = home.config.groups.get(name, [name])
        for peer in expanded:
            if peer not in cards:
                raise NotFoundError(f"no peer named {peer!r}; add it with 'hotline peer add'")
            if peer not in out:
                out.append(peer)
    if not out:
        raise InputError("no recipients")
    return out


def _hold_for_release(
    home: NodeHome,
    operator: str | None,
    totp: str | None,
    to: list[str],
    msg_type: str,
    priority: str,
    body: dict[str, Any],
    in_reply_to: str | None,
    json_out: bool,
) -> None:
    from hotline.cli.operator import registry_for
    from hotline.operators.release import ReleaseQueue

    if operator is None or totp is None:
        raise InputError(
            f"a {priority.upper()} message needs a second person's release: give --operator and "
            "--totp (password on standard input) to submit it to the release queue",
            code=ErrorCode.RELEASE_REQUIRED,
        )

    password = sys.stdin.readline().rstrip("\r\n")
    author = registry_for(home).authenticate(
        operator, password, totp, now=datetime.now(UTC), source="cli"
    )
    request = ReleaseQueue(home.store).submit(
        author,
        msg_type=msg_type,
        priority=priority,
        recipients=to,
        body=outbox.checked_body(msg_type, body),
        in_reply_to=in_reply_to,
        now=datetime.now(UTC),
    )
    if json_out:
        _print_json({"release_request": request.id, "state": request.state.value})
    else:
        console.print(f"held for release by a second person: {request.id}", highlight=False)


@app.command()
def reply(
    message_id: Annotated[str, typer.Argument(help="The received message to answer.")],
    dir: DirOption,
    text: Annotated[str, typer.Option(help="The answer.")],
    action_taken: Annotated[str | None, typer.Option(help="An action taken, if any.")] = None,
    priority: Annotated[
        Priority | None, typer.Option(help="Default: the priority of the message answered.")
    ] = None,
    operator: Annotated[str | None, typer.Option(help="Your operator name (the author).")] = None,
    totp: Annotated[str | None, typer.Option(help="Your TOTP code, for a FLASH answer.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Answer a received message with a ``response`` that names it (FLASH: held for release)."""
    home = NodeHome(dir)
    original = _message(home, message_id)
    if original.direction != "in":
        raise InputError(f"{message_id} is a message we sent; reply to a received one")
    answer: dict[str, Any] = {"in_reply_to": message_id, "text": text}
    if action_taken:
        answer["action_taken"] = action_taken
    if priority is None:
        # The peer's priority is not checked on receipt (protocol §4.1): ours must be one we send.
        try:
            priority = Priority(original.priority)
        except ValueError:
            raise InputError(
                f"the message answered has a priority we do not know "
                f"({original.priority[:16]!r}): give --priority",
                fields={"priority": "required"},
            ) from None
    reply_priority = priority.value
    if needs_release(reply_priority):
        # An answer at FLASH is a FLASH message: two people, like any other.
        _hold_for_release(
            home,
            operator,
            totp,
            [original.peer],
            "response",
            reply_priority,
            answer,
            message_id,
            json_out,
        )
        return
    answer_id = outbox.submit_message(
        home.store,
        home.identity,
        home.peer_card(original.peer),
        msg_type="response",
        priority=reply_priority,
        body=answer,
        now=datetime.now(UTC),
        ttl=timedelta(seconds=home.config.default_ttl_s),
        in_reply_to=message_id,
        author=operator,
    )
    _wake_node(home)
    if json_out:
        _print_json({"id": answer_id, "state": "queued"})
    else:
        sys.stdout.write(answer_id + "\n")


@app.command()
def ack(
    message_id: Annotated[str, typer.Argument(help="The received message to acknowledge.")],
    dir: DirOption,
    operator: Annotated[str, typer.Option(help="Who read it.")] = os.environ.get(
        "USER", "operator"
    ),
    lang: Annotated[str, typer.Option(help="Language the message was read in.")] = "en",
    tz: Annotated[str, typer.Option(help="Time zone it was read in.")] = "UTC",
    json_out: JsonOption = False,
) -> None:
    """Send a signed ACKNOWLEDGED receipt: a person has read the message.

    The receipt signs the language, the time zone and the hash of the exact text that
    ``hotline show ID --lang L --tz Z`` shows, so what was understood can be settled later.
    """
    home = NodeHome(dir)
    original = _message(home, message_id)
    if original.direction != "in" or original.kind != "message":
        raise InputError(f"{message_id} is not a received message")
    shown = shown_text(original.msg_type, original.body, lang, tz)
    receipt_id = outbox.acknowledge(
        home.store,
        home.identity,
        home.peer_card(original.peer),
        message_id,
        now=datetime.now(UTC),
        ttl=timedelta(seconds=home.config.default_ttl_s),
        operator=operator,
        lang=lang,
        tz=tz,
        text_hash=text_hash(shown),
    )
    _wake_node(home)
    if json_out:
        _print_json({"id": receipt_id, "acknowledges": message_id, "text_hash": text_hash(shown)})
    else:
        sys.stdout.write(receipt_id + "\n")


def _message(home: NodeHome, message_id: str) -> MessageView:
    with home.store.read() as conn:
        view = get_message(conn, message_id, home.config.name)
    if view is None:
        raise NotFoundError(f"no message {message_id}", code=ErrorCode.UNKNOWN_MESSAGE)
    return view


def _time(us: int) -> str:
    return from_us(us).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
def status(
    message_id: Annotated[str, typer.Argument(help="A message or notification id.")],
    dir: DirOption,
    json_out: JsonOption = False,
) -> None:
    """A message's current state and every state change with its time; for a notification to
    many peers, each recipient's copy: who has received it and who has acknowledged it."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        copies = notification_copies(conn, message_id, home.config.name)
    if copies:
        if json_out:
            _print_json(
                {
                    "notification": message_id,
                    "recipients": {c.peer: {"id": c.id, "state": c.state.value} for c in copies},
                    "received": sorted(c.peer for c in copies if c.state.value in _RECEIVED),
                    "acknowledged": sorted(
                        c.peer for c in copies if c.state.value in ("acknowledged", "answered")
                    ),
                }
            )
            return
        table = Table("recipient", "copy", "state")
        for c in copies:
            table.add_row(c.peer, c.id, c.state.value.upper())
        console.print(table)
        return
    view = _message(home, message_id)
    if json_out:
        _print_json(view.to_dict())
        return
    console.print(
        f"{view.id}  [bold]{view.state.value.upper()}[/]  "
        f"{view.sender} -> {view.recipient}  {quoted(view.priority.upper())}",
        highlight=False,
    )
    for event in view.events:
        console.print(
            f"  {_time(event.at_us)}  {event.state:<13} {quoted(event.detail)}", highlight=False
        )


_RECEIVED = ("delivered", "acknowledged", "answered")


def _acknowledgement(home: NodeHome, message_id: str) -> dict[str, Any] | None:
    with home.store.read() as conn:
        return acknowledgement_of(conn, message_id)


@app.command()
def show(
    message_id: Annotated[str, typer.Argument(help="A message id.")],
    dir: DirOption,
    lang: Annotated[str, typer.Option(help="Show in this language (en, ru).")] = "en",
    tz: Annotated[str, typer.Option(help="Also show times in this zone.")] = "UTC",
    as_acknowledged: Annotated[
        bool,
        typer.Option(
            help="Show the text exactly as the acknowledging operator read it, "
            "and check it against the hash signed in the receipt."
        ),
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """A message in full: header, formatted text in your language, state history."""
    home = NodeHome(dir)
    view = _message(home, message_id)
    readback: dict[str, Any] | None = None
    if as_acknowledged:
        ack_body = _acknowledgement(home, message_id)
        if ack_body is None or "text_hash" not in ack_body:
            raise NotFoundError(f"{message_id} has no acknowledgement with a read-back hash")
        lang, tz = str(ack_body.get("lang", "en")), str(ack_body.get("tz", "UTC"))
        shown = shown_text(view.msg_type, view.body, lang, tz)
        readback = {
            "operator": ack_body.get("operator"),
            "lang": lang,
            "tz": tz,
            "signed_hash": ack_body["text_hash"],
            "computed_hash": text_hash(shown),
            "matches": text_hash(shown) == ack_body["text_hash"],
        }
    else:
        shown = (
            shown_text(view.msg_type, view.body, lang, tz)
            if view.kind == "message"
            else json.dumps(view.body, ensure_ascii=False, indent=2)
        )
    with home.store.read() as conn:
        attached = [t for t in translations_of(conn, message_id) if t.lang == lang]
    if json_out:
        _print_json(
            {
                **view.to_dict(),
                "shown": shown,
                "lang": lang,
                "tz": tz,
                "readback": readback,
                "translations": [t.to_dict() for t in attached],
            }
        )
        if readback is not None and not readback["matches"]:
            raise typer.Exit(4)
        return
    console.print(
        f"[bold]{quoted(view.priority.upper())}[/]  {quoted(view.msg_type)}  from {view.sender} "
        f"to {view.recipient}  seq {view.seq}",
        highlight=False,
    )
    console.print(
        f"id {view.id}   created {_time(view.created_at_us)}   state {view.state.value}",
        highlight=False,
    )
    if view.in_reply_to:
        console.print(f"in reply to {quoted(view.in_reply_to)}", highlight=False)
    console.print()
    # Text from a peer is shown as it is: never markup, its control characters escaped.
    console.print(plain(shown), highlight=False)
    console.print()
    for t in attached:
        console.print(
            f"[yellow]TRANSLATION into {t.lang} by {t.operator} "
            f"({_time(t.at_us)}), not the signed original:[/]",
            highlight=False,
        )
        console.print(plain(t.text), highlight=False)
        console.print()
    if readback is not None:
        verdict = "[green]MATCHES[/]" if readback["matches"] else "[bold red]DOES NOT MATCH[/]"
        console.print(
            f"read back as acknowledged by {readback['operator']} ({lang}, {tz}): "
            f"hash {verdict} the signed receipt",
            highlight=False,
        )
        if not readback["matches"]:
            raise typer.Exit(4)
        return
    for event in view.events:
        console.print(
            f"  {_time(event.at_us)}  {event.state:<13} {quoted(event.detail)}", highlight=False
        )


def _message_table(views: list[MessageView], who: str) -> Table:
    table = Table("id", "priority", who, "state", "created", "text")
    for v in views:
        table.add_row(
            v.id,
            plain(v.priority.upper()),
            v.peer,
            v.state.value,
            _time(v.created_at_us),
            plain(v.text[:60].replace("\n", " ")),
        )
    return table


@app.command("inbox")
def inbox_cmd(
    dir: DirOption,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_out: JsonOption = False,
) -> None:
    """Received messages, newest first."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        views = list_messages(conn, home.config.name, direction="in", limit=limit)
    if json_out:
        _print_json([v.to_dict() for v in views])
    else:
        console.print(_message_table(views, "from"))


@app.command("outbox")
def outbox_cmd(
    dir: DirOption,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    json_out: JsonOption = False,
) -> None:
    """Sent and queued messages, newest first."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        views = list_messages(conn, home.config.name, direction="out", limit=limit)
    if json_out:
        _print_json([v.to_dict() for v in views])
    else:
        console.print(_message_table(views, "to"))


@app.command()
def translate(
    message_id: Annotated[str, typer.Argument(help="The received message.")],
    dir: DirOption,
    lang: Annotated[str, typer.Option(help="Language of the translation.")],
    text: Annotated[str, typer.Option(help="The translation.")],
    operator: Annotated[str, typer.Option(help="Who translated it (signed in).")],
    json_out: JsonOption = False,
) -> None:
    """Attach a signed translation to a received message; the original stays as signed."""
    home = NodeHome(dir)
    with home.store.write() as conn:
        attached = attach_translation(
            conn,
            home.identity,
            message_id=message_id,
            lang=lang,
            text=text,
            operator=operator,
            now=datetime.now(UTC),
        )
    if json_out:
        _print_json(attached.to_dict())
    else:
        console.print(
            f"translation into {lang} by {operator} attached to {message_id}", highlight=False
        )


@app.command()
def overdue(dir: DirOption, json_out: JsonOption = False) -> None:
    """Messages past their acknowledgement deadline: theirs to acknowledge, and ours."""
    home = NodeHome(dir)
    with home.store.read() as conn:
        late = find_overdue(conn, to_us(datetime.now(UTC)), home.config.deadlines_for)
    if json_out:
        _print_json([o.to_dict() for o in late])
        return
    table = Table("id", "priority", "who must acknowledge", "due", "overdue", "escalations")
    for o in late:
        who = f"{o.peer} (theirs)" if o.direction == "out" else "us"
        table.add_row(
            o.id,
            f"[bold red]{quoted(o.priority.upper())}[/]",
            who,
            _time(o.due_us),
            f"{o.overdue_s / 60:.1f} min",
            str(o.escalations),
        )
    console.print(table)


@app.command()
def link(dir: DirOption, json_out: JsonOption = False) -> None:
    """Each peer's link state (up, degraded, down), last heartbeat and round-trip time, and
    the same for each of its transports (direct endpoints, then relays) in the order used."""
    home = NodeHome(dir)
    now_us = to_us(datetime.now(UTC))
    interval = home.config.heartbeat_interval_s
    cards = home.peer_cards()
    relays = [r for r in home.config.relays if r in cards and cards[r].role == "relay"]
    with home.store.read() as conn:
        reports = [
            (
                link_report(conn, name, now_us, interval),
                transport_reports(
                    conn,
                    name,
                    transport_names(
                        cards[name].endpoints, relays if cards[name].role == "node" else []
                    ),
                    now_us,
                    interval,
                )
                if name in cards
                else [],
            )
            for name in peer_names(conn)
            if name not in cards or cards[name].role != "relay"
        ]
    if json_out:
        _print_json([{**r.to_dict(), "transports": [t.to_dict() for t in ts]} for r, ts in reports])
        return
    table = Table("peer / transport", "state", "last heartbeat", "rtt ms", "last error")
    colours = {"up": "green", "degraded": "yellow", "down": "bold red", "unknown": "dim"}

    def row(name: str, r: LinkReport) -> None:
        table.add_row(
            name,
            f"[{colours[r.state]}]{r.state.upper()}[/]",
            _time(r.last_heartbeat_us) if r.last_heartbeat_us else "never",
            f"{r.rtt_ms:.1f}" if r.rtt_ms is not None else "-",
            quoted(r.last_error or ""),
        )

    for r, transports in reports:
        row(f"[bold]{r.peer}[/]", r)
        for t in transports:
            row(f"  {quoted(t.transport or '')}", t)
    console.print(table)


def _become_active(home: NodeHome, log_level: str) -> Leadership | None:
    """On PostgreSQL, several processes of a node may share the store; one is active
    (docs/operations.md, "Replicas"). Return once this one is, its writes fenced by the lock."""
    import logging

    from hotline.store.db import fence_writes, is_postgresql

    if not is_postgresql(home.store_url):
        return None
    from hotline.node.replica import Leadership, serve_standby

    leadership = Leadership(home.store_url)
    if not leadership.try_acquire() and not serve_standby(
        leadership,
        name=home.config.name,
        host=home.config.listen_host,
        port=home.config.listen_port,
        log_level=log_level,
    ):
        raise typer.Exit(0)
    if leadership.session_pid is None:  # pragma: no cover - serve_standby's contract
        raise typer.Exit(1)
    fence_writes(home.store.engine, leadership.session_pid)
    leadership.watch()
    from hotline.node.replica import record_active

    try:
        record_active(home.store, _own_url(home), leadership.session_pid, to_us(datetime.now(UTC)))
    except HotlineError as e:  # CLI wakes then fall back to the endpoints; the node still runs
        logging.getLogger("hotline.replica").warning("could not record this replica: %s", e)
    logging.getLogger("hotline.replica").warning(
        "%s: active (holds the store's leader lock)", home.config.name
    )
    return leadership


@app.command()
def serve(
    dir: DirOption,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="Read the keys' passphrase from stdin.")
    ] = False,
) -> None:
    """Run the node: link endpoints, local API, delivery and heartbeats."""
    _serve(dir, log_level, passphrase_stdin)


relay_app = typer.Typer(help="Run a relay: a neutral party's mailbox.", no_args_is_help=True)
app.add_typer(relay_app, name="relay")


@relay_app.command("serve")
def relay_serve(
    dir: DirOption,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
    passphrase_stdin: Annotated[
        bool, typer.Option("--passphrase-stdin", help="Read the keys' passphrase from stdin.")
    ] = False,
) -> None:
    """Run a relay (made with init --role relay): it keeps sealed envelopes that registered
    nodes (its peers) deposit for each other, until the recipient pulls them."""
    if NodeHome(dir).config.role != "relay":
        raise InputError(f"{dir} is not a relay: make one with hotline init --role relay")
    _serve(dir, log_level, passphrase_stdin)


@relay_app.command("status")
def relay_status(dir: DirOption, json_out: JsonOption = False) -> None:
    """Envelopes the relay holds, per recipient."""
    from hotline.link.mailbox import Mailbox, MailboxLimits

    home = NodeHome(dir)
    config = home.config
    held = Mailbox(
        name=config.name,
        store=home.store,
        peers={},
        limits=MailboxLimits(
            config.relay_hold_s, config.relay_max_envelopes, config.relay_max_bytes
        ),
    ).held()
    if json_out:
        _print_json(held)
        return
    table = Table("recipient", "envelopes held")
    for name, count in sorted(held.items()):
        table.add_row(name, str(count))
    console.print(table)


def _serve(dir: Path, log_level: str, passphrase_stdin: bool) -> None:
    import logging

    import uvicorn

    from hotline.node.app import create_app
    from hotline.node.limits import (
        SHUTDOWN_GRACE_S,
        bounded_server,
        guarded_protocol,
        raise_open_file_limit,
    )
    from hotline.node.runtime import Node

    logging.getLogger().setLevel(log_level.upper())
    passphrase = sys.stdin.readline().rstrip("\r\n") if passphrase_stdin else None
    home = NodeHome(dir, passphrase=passphrase)
    if not home.keys_encrypted:
        logging.getLogger("hotline.node").warning(
            "UNSAFE: the private keys of %s are not encrypted (made with --no-passphrase); "
            "use this node for tests and demos only",
            home.config.name,
        )
    # Held until the server stops: the leader session (and so the lock) lives with this object.
    leadership = _become_active(home, log_level)
    node = Node(home)
    tls = home.server_tls() if home.config.tls else None
    if tls is None and home.config.listen_host not in ("127.0.0.1", "::1", "localhost"):
        logging.getLogger("hotline.node").warning(
            "UNSAFE: %s serves plain HTTP on %s (made with --unsafe-plain-http): link metadata, "
            "the console's logins and the API token cross the network in the clear",
            home.config.name,
            home.config.listen_host,
        )
    raise_open_file_limit()
    server = bounded_server(
        uvicorn.Config(
            create_app(node),
            host=home.config.listen_host,
            port=home.config.listen_port,
            log_level=log_level,
            loop="uvloop",
            http=guarded_protocol(home.config.request_timeout_s),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            access_log=False,
            # TLS 1.3 only, with the certificate the card carries (hotline.link.tls).
            ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
        )
    )
    try:
        server.run()
    except SystemExit:  # uvicorn's own exit (3) when it cannot bind: answered as ours below
        if server.started:
            raise
    finally:
        if leadership is not None:
            leadership.release()
    if not server.started:
        raise ConfigError(
            f"{home.config.name} could not serve on {home.config.listen_host}:"
            f"{home.config.listen_port} (the address is taken, or start-up failed: see above)"
        )

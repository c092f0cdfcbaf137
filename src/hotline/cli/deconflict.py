"""``hotline deconflict``: check volumes for conflicts, and manage the node's active volumes.

``check`` works with no node (a planner's tool: ``--against FILE``) or against the node's active
volumes (``--dir DIR`` or ``HOTLINE_DIR``). Files are GeoJSON FeatureCollections or ASTM F3548
Volume4D JSON (one object, a list, or ``{"volumes": [...]}``); the format is recognised.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hotline.cli._app import plain, quoted
from hotline.deconfliction import (
    FT,
    NM,
    OWN,
    Conflict,
    Engine,
    NearMiss,
    Registry,
    Volume,
    format_time,
    parse_geojson,
    parse_time,
    parse_volume4d,
    to_geojson,
    to_us,
    to_volume4d,
)
from hotline.errors import HotlineError, InputError
from hotline.node.home import CONFIG_FILE, NodeHome

#: Largest volume file we read (a million volumes of a dozen vertices is about 300 MB).
MAX_FILE_BYTES = 512 * 1024 * 1024

app = typer.Typer(
    help="4D deconfliction: find where activities would meet, and keep the active volumes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console()
err = Console(stderr=True, soft_wrap=True)

DirOpt = Annotated[
    Path | None,
    typer.Option(
        "--dir", envvar="HOTLINE_DIR", help="Node directory (its store.sqlite); or HOTLINE_DIR."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Reference time (RFC 3339) for expiry; default: the clock."),
]


class ExportFormat(StrEnum):
    GEOJSON = "geojson"
    VOLUME4D = "volume4d"


def _handled(json_flag: bool, fn: Callable[[], None]) -> None:
    """Run ``fn``; render a HotlineError once for a person (or as JSON) and exit with its code."""
    try:
        fn()
    except HotlineError as e:
        if json_flag:
            print(json.dumps({"error": e.to_dict()}), file=sys.stderr)
        else:
            err.print(f"[bold red]error[/] {quoted(f'[{e.code}] {e.message()}')}", highlight=False)
            if e.fields:
                err.print(f"  {json.dumps(e.fields)}", highlight=False, markup=False)
        raise typer.Exit(e.exit_code) from None


def _now_us(now: str | None) -> int:
    if now is None:
        return to_us(datetime.now(UTC))
    return parse_time(now, "--now", "now")


def read_volumes(path: Path, *, owner: str | None = None) -> list[Volume]:
    """Volumes from a GeoJSON or Volume4D file, with the file's size bounded."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                f"{path}: {size} bytes, more than the limit of {MAX_FILE_BYTES}",
                fields={"file": str(path)},
            )
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", fields={"file": str(path)}) from e
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text", fields={"file": str(path)}) from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path} is not JSON: {e.msg} at line {e.lineno}", fields={"file": str(path)}
        ) from e
    except RecursionError as e:
        raise InputError(f"{path} nests too deeply", fields={"file": str(path)}) from e
    if isinstance(obj, dict) and obj.get("type") in ("FeatureCollection", "Feature"):
        return parse_geojson(obj, owner=owner)
    return parse_volume4d(obj, owner=owner)


def _registry(directory: Path | None, now_us: int) -> Registry:
    if directory is None:
        raise InputError(
            "no node directory: give --dir DIR or set HOTLINE_DIR", fields={"field": "dir"}
        )
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory", fields={"field": "dir"})
    if (directory / CONFIG_FILE).is_file():
        # A node's directory: its store, wherever the node keeps it (SQLite or PostgreSQL).
        return Registry.open(NodeHome(directory).store_url, now_us=now_us)
    return Registry.open(directory, now_us=now_us)


def _print_conflicts(conflicts: list[Conflict], near: list[NearMiss] | None, as_json: bool) -> None:
    if as_json:
        doc: Any = [c.to_dict() for c in conflicts]
        if near is not None:
            doc = {"conflicts": doc, "near_misses": [n.to_dict() for n in near]}
        print(json.dumps(doc, indent=1))
        return
    if not conflicts:
        out.print("no conflicts")
    else:
        table = Table(title=f"{len(conflicts)} conflict(s)")
        for col in ("query", "active", "kind", "from", "to", "lower m", "upper m", "area km2"):
            table.add_column(col)
        for c in conflicts:
            d = c.to_dict()
            table.add_row(
                plain(f"{c.query.owner}/{c.query.id}"),
                plain(f"{c.active.owner}/{c.active.id}"),
                d["kind"],
                d["time_start"],
                d["time_end"],
                f"{c.altitude_lower:g}",
                f"{c.altitude_upper:g}",
                f"{c.area_m2 / 1e6:.3f}",
            )
        out.print(table)
    if near:
        table = Table(title=f"{len(near)} near miss(es)")
        for col in ("query", "active", "from", "to", "horizontal m", "vertical m"):
            table.add_column(col)
        for n in near:
            d = n.to_dict()
            table.add_row(
                plain(f"{n.query.owner}/{n.query.id}"),
                plain(f"{n.active.owner}/{n.active.id}"),
                d["time_start"],
                d["time_end"],
                f"{n.horizontal_m:.0f}",
                f"{n.vertical_m:.0f}",
            )
        out.print(table)


@app.command()
def check(
    queries: Annotated[Path, typer.Argument(help="Volumes to check (GeoJSON or Volume4D).")],
    against: Annotated[
        Path | None,
        typer.Option("--against", help="Active volumes file; with no node needed."),
    ] = None,
    directory: DirOpt = None,
    near_nm: Annotated[
        float | None,
        typer.Option("--near-nm", help="Also report near misses within this many NM ..."),
    ] = None,
    near_ft: Annotated[
        float, typer.Option("--near-ft", help="... and this many feet (with --near-nm).")
    ] = 1000.0,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print every conflict between QUERIES and the active volumes."""

    def run() -> None:
        qs = read_volumes(queries)
        if against is not None:
            engine = Engine()
            engine.add(read_volumes(against))
        else:
            engine = _registry(directory, _now_us(now)).engine
        conflicts = engine.conflicts(qs)
        near = None
        if near_nm is not None:
            near = engine.near_misses(qs, horizontal_m=near_nm * NM, vertical_m=near_ft * FT)
        _print_conflicts(conflicts, near, as_json)

    _handled(as_json, run)


@app.command()
def add(
    path: Annotated[Path, typer.Argument(help="Volumes to add (GeoJSON or Volume4D).")],
    directory: DirOpt = None,
    owner: Annotated[
        str, typer.Option("--owner", help='"own" (default) or the peer that notified them.')
    ] = OWN,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add (or change) active volumes in the node's store; print their conflicts."""

    def run() -> None:
        now_us = _now_us(now)
        reg = _registry(directory, now_us)
        vols = read_volumes(path, owner=owner)
        stored = reg.add(vols, now_us=now_us)
        conflicts = reg.engine.conflicts(stored)
        if as_json:
            print(
                json.dumps(
                    {
                        "added": [
                            {"owner": v.owner, "id": v.id, "version": v.version} for v in stored
                        ],
                        "conflicts": [c.to_dict() for c in conflicts],
                    },
                    indent=1,
                )
            )
        else:
            out.print(f"added {len(stored)} volume(s)")
            _print_conflicts(conflicts, None, False)

    _handled(as_json, run)


@app.command("list")
def list_(
    directory: DirOpt = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's.")] = None,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the active volumes."""

    def run() -> None:
        vols = _registry(directory, _now_us(now)).list(owner=owner)
        rows = [
            {
                "owner": v.owner,
                "id": v.id,
                "version": v.version,
                "shape": str(v.shape.kind),
                "time_start": format_time(v.time_start_us),
                "time_end": format_time(v.time_end_us),
                "altitude_lower": v.altitude_lower,
                "altitude_upper": v.altitude_upper,
            }
            for v in vols
        ]
        if as_json:
            print(json.dumps(rows, indent=1))
            return
        table = Table(title=f"{len(rows)} active volume(s)")
        for col in ("owner", "id", "version", "shape", "from", "to", "lower m", "upper m"):
            table.add_column(col)
        for r in rows:
            table.add_row(*(plain(x) for x in r.values()))
        out.print(table)

    _handled(as_json, run)


@app.command()
def remove(
    volume_id: Annotated[str, typer.Argument(help="Id of the volume to remove.")],
    directory: DirOpt = None,
    owner: Annotated[str, typer.Option("--owner", help="Owner of the volume.")] = OWN,
    now: NowOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an active volume."""

    def run() -> None:
        now_us = _now_us(now)
        v = _registry(directory, now_us).remove((owner, volume_id), now_us=now_us)
        if as_json:
            print(json.dumps({"removed": {"owner": v.owner, "id": v.id}}))
        else:
            out.print(plain(f"removed {v.owner}/{v.id}"))

    _handled(as_json, run)


@app.command()
def export(
    directory: DirOpt = None,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="geojson or volume4d.")
    ] = ExportFormat.GEOJSON,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    now: NowOpt = None,
) -> None:
    """Export the active volumes as GeoJSON or ASTM F3548 Volume4D."""

    def run() -> None:
        vols = _registry(directory, _now_us(now)).list(owner=owner)
        doc: Any = to_geojson(vols) if fmt == ExportFormat.GEOJSON else to_volume4d(vols)
        text = json.dumps(doc, indent=1)
        if output is None:
            print(text)
        else:
            output.write_text(text + "\n", encoding="utf-8")

    _handled(False, run)

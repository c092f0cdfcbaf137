"""JSON Schemas of the catalog, one file per message type (docs/schemas/<type>.json).

    python -m hotline.compose.schemas [--out DIR]   # write them (default: the repo's docs/schemas)
    python -m hotline.compose.schemas --check       # exit 1 if the written files differ

The schemas describe the wire form for peers and other implementations; the models stay the
authority (some checks, such as closed rings, UTC offsets and vertex totals, are not expressible
in JSON Schema and are stated in the descriptions instead). A test fails when a model changes
and the committed schemas do not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hotline.compose.catalog import MESSAGE_TYPES

#: docs/schemas of the source tree this module sits in (src/hotline/compose/schemas.py).
DEFAULT_DIR = Path(__file__).resolve().parents[3] / "docs" / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(msg_type: str) -> dict[str, Any]:
    """The JSON Schema of one message type's body."""
    model = MESSAGE_TYPES[msg_type]
    schema: dict[str, Any] = {"$schema": DIALECT}
    schema.update(model.model_json_schema(mode="validation"))
    schema["title"] = msg_type
    return schema


def schema_text(msg_type: str) -> str:
    """The exact bytes written for ``msg_type``: sorted keys, two-space indent, final newline."""
    return json.dumps(schema_for(msg_type), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale(out: Path = DEFAULT_DIR) -> list[str]:
    """Message types whose schema file is missing or differs from the models."""
    return [
        msg_type
        for msg_type in MESSAGE_TYPES
        if not (out / f"{msg_type}.json").exists()
        or (out / f"{msg_type}.json").read_text(encoding="utf-8") != schema_text(msg_type)
    ]


def write_all(out: Path = DEFAULT_DIR) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for msg_type in MESSAGE_TYPES:
        (out / f"{msg_type}.json").write_text(schema_text(msg_type), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[args.index("--out") + 1]) if "--out" in args else DEFAULT_DIR
    if "--check" in args:
        bad = stale(out)
        if bad:
            print(f"out of date in {out}: {', '.join(bad)}; run python -m hotline.compose.schemas")
            return 1
        return 0
    write_all(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Copy the console's front-end files from node_modules into ``static/vendor`` (build time).

    python3 src/hotline/web/vendor.py [NODE_MODULES] [OUT]     # what `make install` runs
    python3 src/hotline/web/vendor.py --check [OUT]            # exit 1 if a file is missing

The packages and their versions are pinned in package.json and package-lock.json at the
repository root and installed with ``npm ci``; this script takes only the files the console
serves, with each package's licence, and writes ``MANIFEST.json`` (package -> version). Nothing
is fetched at run time: the node serves these files itself. Standard library only, so it runs
before the project is installed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
DEFAULT_OUT: Final = HERE / "static" / "vendor"
DEFAULT_NODE_MODULES: Final = HERE.parents[2] / "node_modules"

#: Served file (under static/vendor) -> source file (under node_modules).
FILES: Final[dict[str, str]] = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "htmx.LICENSE": "htmx.org/LICENSE",
    "leaflet/leaflet.js": "leaflet/dist/leaflet.js",
    "leaflet/leaflet.css": "leaflet/dist/leaflet.css",
    "leaflet/images/layers.png": "leaflet/dist/images/layers.png",
    "leaflet/images/layers-2x.png": "leaflet/dist/images/layers-2x.png",
    "leaflet/images/marker-icon.png": "leaflet/dist/images/marker-icon.png",
    "leaflet/images/marker-icon-2x.png": "leaflet/dist/images/marker-icon-2x.png",
    "leaflet/images/marker-shadow.png": "leaflet/dist/images/marker-shadow.png",
    "leaflet/LICENSE": "leaflet/LICENSE",
    "topojson-client.min.js": "topojson-client/dist/topojson-client.min.js",
    "topojson-client.LICENSE": "topojson-client/LICENSE",
    "countries-110m.json": "world-atlas/countries-110m.json",
    "countries-50m.json": "world-atlas/countries-50m.json",
    "world-atlas.LICENSE": "world-atlas/LICENSE",
}
PACKAGES: Final = ("htmx.org", "leaflet", "topojson-client", "world-atlas")
MANIFEST: Final = "MANIFEST.json"


def copy(node_modules: Path, out: Path) -> dict[str, str]:
    """Copy ``FILES`` and write the manifest; returns package -> version."""
    missing = [src for src in FILES.values() if not (node_modules / src).is_file()]
    if missing:
        raise SystemExit(f"missing in {node_modules}: {', '.join(missing)} (run npm ci)")
    for served, src in FILES.items():
        target = out / served
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node_modules / src, target)
    versions = {
        name: str(json.loads((node_modules / name / "package.json").read_text())["version"])
        for name in PACKAGES
    }
    (out / MANIFEST).write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    return versions


def missing_files(out: Path = DEFAULT_OUT) -> list[str]:
    return [served for served in [*FILES, MANIFEST] if not (out / served).is_file()]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
        missing = missing_files(out)
        if missing:
            print(f"console assets missing in {out}: {', '.join(missing)}; run make install")
            return 1
        return 0
    node_modules = Path(argv[0]) if argv else DEFAULT_NODE_MODULES
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    versions = copy(node_modules, out)
    print("console assets:", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

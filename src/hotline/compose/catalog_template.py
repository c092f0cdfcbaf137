"""Build ``locales/messages.pot``: every msgid of the code and of the rules files.

    python -m hotline.compose.catalog_template          # rewrite messages.pot
    python -m hotline.compose.catalog_template --check  # exit 1 if it is out of date

Strings are found by Babel's Python extractor under the names ``_`` (Translator._), ``N_``
(mark only) and ``ngettext``; the titles of the rules files' documents are added to them.
"""

from __future__ import annotations

import io
import sys
import tomllib
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import write_po

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE = PACKAGE_DIR / "locales" / "messages.pot"
KEYWORDS: dict[str, tuple[int, ...] | None] = {"_": None, "N_": None, "ngettext": (1, 2)}


def extract() -> Catalog:
    """Every message to translate, in a stable order, without dates or line numbers."""
    catalog = Catalog(project="hotline", fuzzy=False, header_comment="# hotline message catalog")
    for source in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = source.relative_to(PACKAGE_DIR).as_posix()
        for lineno, message, _comments, _context in extract_from_file(
            "python", str(source), keywords=KEYWORDS
        ):
            catalog.add(message, locations=[(rel, lineno)])
    for rules in sorted((PACKAGE_DIR / "rules").glob("*.toml")):
        title = tomllib.loads(rules.read_text(encoding="utf-8"))["document"]["title"]
        catalog.add(title, locations=[(f"rules/{rules.name}", 1)])
    return catalog


def render_template() -> str:
    out = io.BytesIO()
    write_po(out, extract(), omit_header=True, sort_output=True, width=100, include_lineno=False)
    return out.getvalue().decode("utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render_template()
    if "--check" in args:
        current = TEMPLATE.read_text(encoding="utf-8") if TEMPLATE.exists() else ""
        if current != text:
            print(f"{TEMPLATE} is out of date; run python -m hotline.compose.catalog_template")
            return 1
        return 0
    TEMPLATE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Message catalogs for everything hotline renders for a person: labels, values, units, findings.

English is the source language: the msgids in the code *are* the English text, so English needs
no catalog. Every other language is one gettext file, ``locales/<lang>.po``, read with Babel and
compiled in memory the first time that language is used (no .mo files to build or ship; fuzzy
entries are skipped). ``messages.pot`` beside them lists every msgid; a test regenerates it from
the code and the rules files and fails when a catalog lacks a translation.

Adding a language: copy ``messages.pot`` to ``locales/<lang>.po``, set its Language and
Plural-Forms headers, translate every entry. See docs/catalog.md.
"""

from __future__ import annotations

import functools
import io
from datetime import date, datetime
from importlib import resources
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations

from hotline.errors import ErrorCode, InputError

#: The language of the msgids in the code.
SOURCE_LANGUAGE: Final = "en"
_LOCALES = "locales"


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated later, where it is shown."""
    return message


def available_languages() -> tuple[str, ...]:
    """English plus every language that has a catalog file, sorted."""
    folder = resources.files("hotline.compose").joinpath(_LOCALES)
    langs = {SOURCE_LANGUAGE}
    for entry in folder.iterdir():
        if entry.name.endswith(".po"):
            langs.add(entry.name.removesuffix(".po"))
    return tuple(sorted(langs))


@functools.cache
def _translations(lang: str) -> NullTranslations:
    if lang == SOURCE_LANGUAGE:
        return NullTranslations()
    source = resources.files("hotline.compose").joinpath(_LOCALES, f"{lang}.po")
    with source.open("rb") as fp:
        catalog = read_po(fp, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled)


class Translator:
    """Translation, numbers and dates for one language; get one with ``translator(lang)``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.locale = Locale.parse(lang)
        self._t = _translations(lang)

    def _(self, message: str) -> str:
        return self._t.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._t.ngettext(singular, plural, n)

    def number(self, value: float, pattern: str | None = None) -> str:
        """A number with the locale's separators ("9,000" in English, "9 000" in Russian)."""
        return format_decimal(value, format=pattern, locale=self.locale)

    def language_name(self, tag: str) -> str:
        """The name of the language ``tag`` in this locale ("Russian", "английский"), or "?"."""
        try:
            name = Locale.parse(tag, sep="-").get_display_name(self.locale)
        except (UnknownLocaleError, ValueError, TypeError):
            return "?"
        return name or "?"

    def date(self, value: date | datetime) -> str:
        """A date written out in full ("1 December 2026" style of the locale)."""
        return format_date(value, format="long", locale=self.locale)


@functools.cache
def translator(lang: str) -> Translator:
    """The translator for ``lang``; raises InputError for a language without a catalog."""
    if lang not in available_languages():
        raise InputError(
            f"no message catalog for language {lang!r}",
            code=ErrorCode.INVALID_INPUT,
            fields={"lang": f"must be one of: {', '.join(available_languages())}"},
        )
    try:
        return Translator(lang)
    except (UnknownLocaleError, ValueError) as exc:  # a .po named after no real locale
        raise InputError(
            f"language {lang!r} is not a known locale",
            code=ErrorCode.INVALID_INPUT,
            fields={"lang": "must name a known locale"},
        ) from exc


__all__ = ["N_", "SOURCE_LANGUAGE", "Translator", "available_languages", "translator"]

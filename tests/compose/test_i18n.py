"""Every language catalog is complete, current, and keeps the placeholders of its msgids."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from babel.messages.pofile import read_po

from hotline.compose import catalog_template
from hotline.compose.i18n import available_languages, translator
from hotline.errors import InputError

PLACEHOLDER = re.compile(r"\{[a-z]+\}")
CATALOGS = [lang for lang in available_languages() if lang != "en"]


def _template_ids() -> set[object]:
    return {m.id for m in catalog_template.extract() if m.id}


def test_languages() -> None:
    assert available_languages() == ("en", "ru")


def test_template_is_current() -> None:
    assert catalog_template.main(["--check"]) == 0


@pytest.mark.parametrize("lang", CATALOGS)
def test_catalog_is_complete(lang: str) -> None:
    source = resources.files("hotline.compose").joinpath("locales", f"{lang}.po")
    with source.open("rb") as fp:
        po = read_po(fp, locale=lang)
    entries = {m.id: m for m in po if m.id}
    wanted = _template_ids()
    assert sorted(map(str, wanted - set(entries))) == [], "untranslated"
    assert sorted(map(str, set(entries) - wanted)) == [], "obsolete"
    for msgid, message in entries.items():
        assert not message.fuzzy, msgid
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"empty translation of {msgid!r}"
        expected = set(PLACEHOLDER.findall(ids[-1]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == expected, (msgid, text)
        if isinstance(msgid, tuple):
            assert len(strings) == po.num_plurals


def test_russian_plurals() -> None:
    tr = translator("ru")
    forms = [tr.ngettext("{n} day", "{n} days", n).replace("{n}", str(n)) for n in (1, 2, 5, 21)]
    assert forms == ["1 день", "2 дня", "5 дней", "21 день"]


def test_numbers_and_dates_follow_the_locale() -> None:
    from datetime import date

    assert translator("en").number(9000) == "9,000"
    assert translator("ru").number(9000) == "9\xa0000"
    assert translator("ru").date(date(2026, 12, 1)) == "1 декабря 2026\u202fг."


def test_unknown_language() -> None:
    with pytest.raises(InputError) as info:
        translator("tlh")
    assert set(info.value.fields) == {"lang"}

"""The package's public surface is exactly its __all__, and the data files ship with it."""

from __future__ import annotations

from importlib import resources
from types import ModuleType

import hotline.compose as compose


def test_all_is_honest() -> None:
    # Submodules appear as attributes once imported; they are reached by their own paths.
    public = {
        name
        for name, value in vars(compose).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(compose.__all__)
    for name in compose.__all__:
        assert hasattr(compose, name), name


def test_data_files_are_inside_the_package() -> None:
    # hatchling ships everything under src/hotline, so what importlib.resources finds here is
    # what an installed wheel holds.
    root = resources.files("hotline.compose")
    assert root.joinpath("locales", "ru.po").is_file()
    assert root.joinpath("locales", "messages.pot").is_file()
    assert root.joinpath("rules", "vienna_document_2011.toml").is_file()

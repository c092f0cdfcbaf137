"""The console tests' marker (registered here: pyproject.toml's marker list is shared)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium with Playwright (skipped without it)"
    )

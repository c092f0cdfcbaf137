"""Helpers of the console tests: Chromium's path and flags, the shared password, and the
integration tests' helpers for real node processes (loaded by path: tests/ is not a package)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"


def _load_integration_helpers() -> ModuleType:
    # tests/ is not a package; load the shared helpers for real node processes by path.
    path = Path(__file__).parents[1] / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("hotline_integration_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


integration = _load_integration_helpers()


def chromium_missing_reason() -> str | None:
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(bash scripts/setup-system.sh chromium; CI does)"
        )
    if (
        shutil.which("node") is None
        and not (Path(__file__).parents[2] / "src/hotline/web/static/vendor/htmx.min.js").exists()
    ):
        return "console assets missing: run make install"
    return None

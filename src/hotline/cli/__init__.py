"""The ``hotline`` command: every operation of a node, for people and for scripts.

Each sub-command group lives in its own module and is mounted here. Every read command takes
``--json``; errors are ``HotlineError`` values rendered once, in ``main``.
"""

from __future__ import annotations

from hotline.cli._app import app, main

__all__ = ["app", "main"]

"""`make demo` keeps working: the scripted exchange completes and the nodes stop."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_exchange(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hotline", "demo", "--dir", str(tmp_path / "demo"), "--exit-after"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for state in ("QUEUED", "SENT", "DELIVERED", "ACKNOWLEDGED", "ANSWERED"):
        assert state in result.stdout
    assert "jones releases it" in result.stdout
    assert "the link works" in result.stdout
    assert "a message of every type" in result.stdout.lower()
    assert "TOTP secret" in result.stdout and "(releaser)" in result.stdout

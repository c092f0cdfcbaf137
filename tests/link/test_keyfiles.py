"""Private keys encrypted at rest under a passphrase."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from hotline.cli import main
from hotline.errors import ConfigError
from hotline.node.home import ENCRYPTION_KEY_FILE, SIGNING_KEY_FILE, NodeHome

PASSPHRASE = "correct horse battery staple"


def test_an_encrypted_node_opens_only_with_its_passphrase(tmp_path, monkeypatch):
    monkeypatch.delenv("HOTLINE_PASSPHRASE", raising=False)
    made = NodeHome.init(
        tmp_path / "w",
        name="washington",
        listen="127.0.0.1:1",
        display_names={},
        passphrase=PASSPHRASE,
    )
    fingerprint = made.card(datetime.now(UTC)).fingerprint
    made.close()
    for name in (SIGNING_KEY_FILE, ENCRYPTION_KEY_FILE):
        assert (tmp_path / "w" / name).read_bytes().startswith(b"HLK1")
    with pytest.raises(ConfigError, match="encrypted"):
        NodeHome(tmp_path / "w").identity  # noqa: B018
    with pytest.raises(ConfigError, match="wrong passphrase"):
        NodeHome(tmp_path / "w", passphrase="not the passphrase").identity  # noqa: B018
    home = NodeHome(tmp_path / "w", passphrase=PASSPHRASE)
    assert home.keys_encrypted
    assert home.card(datetime.now(UTC)).fingerprint == fingerprint
    monkeypatch.setenv("HOTLINE_PASSPHRASE", PASSPHRASE)
    assert NodeHome(tmp_path / "w").card(datetime.now(UTC)).fingerprint == fingerprint


def test_the_cli_makes_encrypted_keys_unless_told_not_to(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HOTLINE_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSPHRASE + "\n"))
    assert (
        main(["init", "--name", "moscow", "--dir", str(tmp_path / "m"), "--passphrase-stdin"]) == 0
    )
    assert NodeHome(tmp_path / "m").keys_encrypted
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["init", "--name", "kyiv", "--dir", str(tmp_path / "k"), "--passphrase-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["init", "--name", "kyiv", "--dir", str(tmp_path / "k")]) == 2  # no passphrase
    assert main(["init", "--name", "kyiv", "--dir", str(tmp_path / "k"), "--no-passphrase"]) == 0
    assert not NodeHome(tmp_path / "k").keys_encrypted
    # Commands that need the keys read the passphrase from the environment.
    monkeypatch.setenv("HOTLINE_PASSPHRASE", PASSPHRASE)
    capsys.readouterr()
    assert main(["card", "--dir", str(tmp_path / "m"), "--json"]) == 0

"""The CLI refuses invalid messages before anything is signed or queued."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from hotline.cli import main
from hotline.node.home import NodeHome
from hotline.store.schema import messages


def _nodes(tmp_path):
    homes = {}
    for name, port in (("washington", 18601), ("moscow", 18602)):
        homes[name] = NodeHome.init(
            tmp_path / name, name=name, listen=f"127.0.0.1:{port}", display_names={"en": name}
        )
    card = tmp_path / "moscow.card"
    assert main(["card", "--dir", str(homes["moscow"].dir), "--out", str(card)]) == 0
    fingerprint = (
        homes["moscow"]
        .card(__import__("datetime").datetime.now(__import__("datetime").UTC))
        .fingerprint
    )
    assert (
        main(
            [
                "peer",
                "add",
                str(card),
                "--dir",
                str(homes["washington"].dir),
                "--fingerprint",
                fingerprint,
            ]
        )
        == 0
    )
    return homes


def _queued(home: NodeHome) -> int:
    with home.store.read() as conn:
        return conn.execute(select(func.count()).select_from(messages)).scalar_one()


def test_invalid_formatted_message_gets_field_errors_and_nothing_is_queued(tmp_path, capsys):
    homes = _nodes(tmp_path)
    body = tmp_path / "activity.json"
    body.write_text(json.dumps({"kind": "air", "volumes": [], "units": [], "contact": ""}))
    code = main(
        [
            "send",
            "--dir",
            str(homes["washington"].dir),
            "--to",
            "moscow",
            "--type",
            "activity_notification",
            "--body",
            str(body),
            "--json",
        ]
    )
    assert code == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "invalid_message"
    assert "volumes" in error["fields"]
    assert _queued(homes["washington"]) == 0


def test_unknown_type_and_wrong_fingerprint_are_refused(tmp_path, capsys):
    homes = _nodes(tmp_path)
    body = tmp_path / "b.json"
    body.write_text("{}")
    assert (
        main(
            [
                "send",
                "--dir",
                str(homes["washington"].dir),
                "--to",
                "moscow",
                "--type",
                "launch_codes",
                "--body",
                str(body),
            ]
        )
        == 2
    )
    card = tmp_path / "w.card"
    main(["card", "--dir", str(homes["washington"].dir), "--out", str(card)])
    code = main(
        [
            "peer",
            "add",
            str(card),
            "--dir",
            str(homes["moscow"].dir),
            "--fingerprint",
            "00000 00000 00000 00000 00000 00000",
        ]
    )
    assert code == 4
    assert "fingerprint_mismatch" in capsys.readouterr().err.replace("\n", "")
    assert homes["moscow"].peer_cards() == {}


def test_fingerprint_command_prints_the_code_alone(tmp_path, capsys):
    homes = _nodes(tmp_path)
    card = tmp_path / "w.card"
    main(["card", "--dir", str(homes["washington"].dir), "--out", str(card)])
    capsys.readouterr()
    assert main(["fingerprint", str(card)]) == 0
    out = capsys.readouterr().out
    assert out.strip().replace(" ", "").isdigit() and len(out.strip()) == 35


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["inbox", "--no-such-option"]) == 2

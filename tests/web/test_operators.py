"""The operator registry: accounts, argon2id, TOTP (once per code), lock-out, sessions, log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher

from hotline.errors import AuthError, ErrorCode, InputError
from hotline.operators import (
    LOCKOUT,
    MAX_FAILED_LOGINS,
    SESSION_IDLE,
    SESSION_LIFETIME,
    OperatorRegistry,
    Permission,
    Role,
    operators,
)
from hotline.store import Store

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
#: Cheap parameters keep the tests fast; production uses argon2-cffi's defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def registry(tmp_path: Path, store_url) -> Iterator[OperatorRegistry]:
    store = Store.open(store_url(tmp_path / "store.sqlite"))
    yield OperatorRegistry(store, issuer="hotline test", hasher=FAST)
    store.close()


def code(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


def test_add_stores_an_argon2id_hash_and_returns_the_totp_uri_once(
    registry: OperatorRegistry,
) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW, lang="ru")
    assert new.totp_uri.startswith("otpauth://totp/")
    assert "secret=" + new.totp_secret in new.totp_uri
    assert "issuer=hotline%20test" in new.totp_uri
    assert new.operator.role is Role.OPERATOR and new.operator.lang == "ru"
    with registry.store.read() as conn:
        stored = conn.execute(operators.select()).one()
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert [o.name for o in registry.all()] == ["alice"]


@pytest.mark.parametrize(
    ("name", "role", "password"),
    [
        ("Alice", "operator", PASSWORD),  # upper case
        ("a", "operator", PASSWORD),  # too short
        ("alice bob", "operator", PASSWORD),
        ("alice", "king", PASSWORD),
        ("alice", "operator", "short"),
        ("alice", "operator", "x" * 2000),
    ],
)
def test_add_refuses_bad_names_roles_and_passwords(
    registry: OperatorRegistry, name: str, role: str, password: str
) -> None:
    with pytest.raises(InputError):
        registry.add(name, role, password, now=NOW)


def test_add_refuses_a_duplicate(registry: OperatorRegistry) -> None:
    registry.add("alice", "operator", PASSWORD, now=NOW)
    with pytest.raises(InputError, match="exists"):
        registry.add("alice", "admin", PASSWORD, now=NOW)


def test_roles_grant_what_the_issue_says() -> None:
    from hotline.operators import PERMISSIONS

    assert Permission.RELEASE not in PERMISSIONS[Role.OPERATOR]
    assert Permission.RELEASE in PERMISSIONS[Role.RELEASER]
    assert Permission.SEND not in PERMISSIONS[Role.AUDITOR]
    assert PERMISSIONS[Role.ADMIN] == frozenset(Permission)


def test_login_with_password_and_totp(registry: OperatorRegistry) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    op = registry.authenticate("alice", PASSWORD, code(new.totp_secret, NOW), now=NOW)
    assert op.name == "alice" and op.failed_logins == 0


def test_a_totp_code_works_only_once(registry: OperatorRegistry) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    once = code(new.totp_secret, NOW)
    registry.authenticate("alice", PASSWORD, once, now=NOW)
    with pytest.raises(AuthError) as e:
        registry.authenticate("alice", PASSWORD, once, now=NOW)
    assert e.value.code is ErrorCode.LOGIN_FAILED


def test_totp_of_a_neighbouring_step_is_accepted_but_not_older(
    registry: OperatorRegistry,
) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    registry.authenticate(
        "alice", PASSWORD, code(new.totp_secret, NOW - timedelta(seconds=30)), now=NOW
    )
    with pytest.raises(AuthError):
        registry.authenticate(
            "alice", PASSWORD, code(new.totp_secret, NOW - timedelta(seconds=90)), now=NOW
        )


@pytest.mark.parametrize("which", ["password", "totp", "name", "code_format"])
def test_wrong_credentials_are_refused_alike(registry: OperatorRegistry, which: str) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    name, password, totp = "alice", PASSWORD, code(new.totp_secret, NOW)
    if which == "password":
        password = "wrong password!!"
    elif which == "totp":
        totp = f"{(int(totp) + 1) % 1_000_000:06d}"
    elif which == "name":
        name = "mallory"
    else:
        totp = "12345x"
    with pytest.raises(AuthError) as e:
        registry.authenticate(name, password, totp, now=NOW)
    assert e.value.code is ErrorCode.LOGIN_FAILED
    assert [a.action for a in registry.actions(limit=1)] == ["login_failed"]


def test_lock_out_after_repeated_failures_then_unlock(registry: OperatorRegistry) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(AuthError) as e:
            registry.authenticate("alice", "wrong password!!", "000000", now=NOW)
        assert e.value.code is ErrorCode.LOGIN_FAILED
    assert registry.get_required("alice").locked(NOW)
    # The right credentials are refused while locked, and only then is the lock told.
    with pytest.raises(AuthError) as e:
        registry.authenticate("alice", PASSWORD, code(new.totp_secret, NOW), now=NOW)
    assert e.value.code is ErrorCode.ACCOUNT_LOCKED
    later = NOW + LOCKOUT + timedelta(seconds=60)
    assert not registry.get_required("alice").locked(later)
    registry.unlock("alice", now=NOW)
    op = registry.authenticate(
        "alice", PASSWORD, code(new.totp_secret, NOW + timedelta(seconds=30)), now=NOW
    )
    assert op.failed_logins == 0


def test_disabled_account_cannot_log_in(registry: OperatorRegistry) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    registry.set_disabled("alice", True, now=NOW)
    with pytest.raises(AuthError):
        registry.authenticate("alice", PASSWORD, code(new.totp_secret, NOW), now=NOW)


def test_sessions_expire_when_idle_or_old_and_end_on_logout(registry: OperatorRegistry) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    token, session = registry.create_session(new.operator, now=NOW)
    assert token not in session.token_hash
    found = registry.session(token, now=NOW + timedelta(minutes=5))
    assert found is not None and found.csrf == session.csrf
    assert registry.session("not-a-token", now=NOW) is None
    assert registry.session(token, now=NOW + timedelta(minutes=5) + SESSION_IDLE) is None
    # Kept alive by use, it still ends at its lifetime.
    t = NOW
    while t < NOW + SESSION_LIFETIME - timedelta(minutes=30):
        t += timedelta(minutes=30)
        assert registry.session(token, now=t) is not None
    assert registry.session(token, now=NOW + SESSION_LIFETIME) is None
    token2, session2 = registry.create_session(new.operator, now=NOW)
    registry.end_session(session2.token_hash)
    assert registry.session(token2, now=NOW) is None


def test_language_switch_and_action_log(registry: OperatorRegistry) -> None:
    registry.add("alice", "auditor", PASSWORD, now=NOW)
    registry.set_lang("alice", "ru", now=NOW)
    assert registry.get_required("alice").lang == "ru"
    with pytest.raises(InputError):
        registry.set_lang("alice", "fr", now=NOW)
    registry.record_action("alice", "acknowledge", now=NOW, target="m-1", detail="lang=ru")
    last = registry.actions(limit=1, operator="alice")[0]
    assert (last.action, last.target, last.detail) == ("acknowledge", "m-1", "lang=ru")


def test_cli_operator_add_reads_the_password_from_stdin_and_prints_the_uri_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import json

    from hotline.cli import main
    from hotline.node.home import NodeHome

    home = NodeHome.init(tmp_path / "n", name="washington", listen="127.0.0.1:1", display_names={})
    home.close()
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    args = ["operator", "add", "alice", "--role", "admin", "--password-stdin"]
    assert main([*args, "--dir", str(tmp_path / "n")]) == 0
    out = capsys.readouterr().out
    assert out.count("otpauth://totp/hotline%20washington:alice?secret=") == 1
    assert main(["operator", "list", "--json", "--dir", str(tmp_path / "n")]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["role"], r["disabled"]) for r in listed] == [("alice", "admin", False)]
    assert "otpauth" not in json.dumps(listed)
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    assert main([*args[:2], "bob", *args[3:], "--dir", str(tmp_path / "n")]) == 2
    # Personal API tokens: shown once, listed without the token, revoked by id.
    where = ["--dir", str(tmp_path / "n")]
    assert main(["operator", "token", "issue", "alice", "--json", *where]) == 0
    issued = json.loads(capsys.readouterr().out)
    assert issued["token"].startswith("hlt_") and issued["operator"] == "alice"
    assert main(["operator", "token", "list", "--json", *where]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["id"], t["revoked"]) for t in listed] == [(issued["id"], None)]
    assert issued["token"] not in json.dumps(listed)
    assert main(["operator", "token", "revoke", issued["id"], *where]) == 0
    capsys.readouterr()
    assert main(["operator", "token", "list", "--json", *where]) == 0
    assert json.loads(capsys.readouterr().out)[0]["revoked"] is not None
    assert main(["operator", "token", "revoke", "nosuchid", *where]) == 6
    assert main(["operator", "token", "issue", "nobody", *where]) == 6


def test_new_password_and_new_totp_end_the_sessions(registry: OperatorRegistry) -> None:
    new = registry.add("alice", "operator", PASSWORD, now=NOW)
    token, _ = registry.create_session(new.operator, now=NOW)
    registry.set_password("alice", "another long password", now=NOW)
    assert registry.session(token, now=NOW) is None
    with pytest.raises(AuthError):
        registry.authenticate("alice", PASSWORD, code(new.totp_secret, NOW), now=NOW)
    token, _ = registry.create_session(new.operator, now=NOW)
    fresh = registry.reset_totp("alice", now=NOW)
    assert registry.session(token, now=NOW) is None
    assert fresh.totp_secret != new.totp_secret and fresh.totp_uri.startswith("otpauth://")
    later = NOW + timedelta(seconds=60)
    with pytest.raises(AuthError):  # the old phone's code
        registry.authenticate(
            "alice", "another long password", code(new.totp_secret, later), now=later
        )
    op = registry.authenticate(
        "alice", "another long password", code(fresh.totp_secret, later), now=later
    )
    assert op.name == "alice"
    assert [a.action for a in registry.actions(limit=4)][:2] == ["login", "login_failed"]

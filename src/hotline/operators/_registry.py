"""The local operator registry: accounts, roles, logins, sessions and the action log.

Login rules, in the order ``authenticate`` applies them:

1. The name must be an account that is not disabled. For an unknown name the password is still
   checked against a dummy hash, so the time taken does not tell which names exist.
2. The password must verify against the argon2id hash (rehashed when the parameters change).
3. The one-time code must be the TOTP of the current 30-second step or one step either side,
   and of a later step than the last code accepted (a code works once).
4. An account with ``MAX_FAILED_LOGINS`` failures in a row is locked for ``LOCKOUT``; while
   locked, even right credentials are refused (and only then is "locked" said, so a guesser
   learns nothing). An admin unlocks with ``hotline operator unlock``.

"Now" is passed in by the caller, never read here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, delete, desc, insert, select, update

from hotline.core.encoding import from_us, to_us
from hotline.errors import AuthError, ErrorCode, InputError, NotFoundError
from hotline.operators._schema import (
    operator_actions,
    operator_api_tokens,
    operator_sessions,
    operators,
)
from hotline.store import Store

#: Consecutive failed logins after which an account is locked.
MAX_FAILED_LOGINS: Final = 5
#: How long a locked account stays locked (unless an admin unlocks it sooner).
LOCKOUT: Final = timedelta(minutes=15)
#: Shortest password: a passphrase of a few words. Longest: bounds the hashing work per try.
MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 1024
#: A session ends this long after login, whatever happens (a long duty shift)...
SESSION_LIFETIME: Final = timedelta(hours=12)
#: ... or after this long without a request.
SESSION_IDLE: Final = timedelta(hours=1)
#: ``last_seen`` is written at most this often (one write per page would be wasted work).
SESSION_TOUCH_INTERVAL: Final = timedelta(seconds=60)
#: TOTP codes of this many 30-second steps before or after now are accepted (clock drift).
TOTP_WINDOW_STEPS: Final = 1
TOTP_STEP_S: Final = 30
#: Languages of the console.
LANGUAGES: Final = ("en", "ru")
#: How a personal API token begins (the node's own ``api.token`` is checked first, whatever it is).
API_TOKEN_PREFIX: Final = "hlt_"  # noqa: S105 (a prefix, not a secret)
#: Longest free text kept in one action-log row.
MAX_ACTION_DETAIL_CHARS: Final = 2000

_NAME = re.compile(r"[a-z][a-z0-9._-]{1,31}")
_CODE = re.compile(r"[0-9]{6}")


class ForbiddenError(AuthError):
    """A logged-in operator asked for something their role (or the two-person rule) forbids."""

    default_code = ErrorCode.FORBIDDEN
    http_status = 403


class Role(StrEnum):
    OPERATOR = "operator"
    RELEASER = "releaser"
    AUDITOR = "auditor"
    ADMIN = "admin"


class Permission(StrEnum):
    VIEW = "view"  # read the pages
    SEND = "send"  # compose and send, or submit for release
    ACKNOWLEDGE = "acknowledge"  # acknowledge and answer received messages
    RELEASE = "release"  # approve or reject another person's message
    AUDIT = "audit"  # read the audit pages and export bundles
    ADMIN = "admin"  # manage accounts


PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.SEND, Permission.ACKNOWLEDGE}),
    Role.RELEASER: frozenset(
        {Permission.VIEW, Permission.SEND, Permission.ACKNOWLEDGE, Permission.RELEASE}
    ),
    Role.AUDITOR: frozenset({Permission.VIEW, Permission.AUDIT}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: Role
    lang: str
    failed_logins: int
    locked_until_us: int | None
    disabled: bool
    created_at_us: int

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    def locked(self, now: datetime) -> bool:
        return self.locked_until_us is not None and self.locked_until_us > to_us(now)


@dataclass(frozen=True, slots=True)
class NewOperator:
    operator: Operator
    #: The ``otpauth://`` URI for an authenticator app; shown once, at creation.
    totp_uri: str
    totp_secret: str


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    operator: Operator
    csrf: str
    created_at_us: int
    last_seen_us: int
    expires_at_us: int


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A personal token of the local API (the token itself is never stored)."""

    id: str
    operator: str
    created_at_us: int
    revoked_at_us: int | None
    last_used_us: int | None

    def to_dict(self) -> dict[str, Any]:
        def time(us: int | None) -> str | None:
            return None if us is None else from_us(us).isoformat()

        return {
            "id": self.id,
            "operator": self.operator,
            "created": time(self.created_at_us),
            "revoked": time(self.revoked_at_us),
            "last_used": time(self.last_used_us),
        }


@dataclass(frozen=True, slots=True)
class Action:
    id: int
    at_us: int
    operator: str
    action: str
    target: str
    detail: str
    source: str


def check_operator_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"operator name {name!r} must be 2-32 characters: a-z first, then a-z 0-9 . _ -",
            fields={"name": "2-32 characters: a-z first, then a-z 0-9 . _ -"},
        )
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InputError(
            f"a password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            fields={"password": f"{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"},
        )
    return password


def check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise InputError(
            f"language must be one of {', '.join(LANGUAGES)}", fields={"lang": "en or ru"}
        )
    return lang


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _operator(row: Any) -> Operator:
    return Operator(
        name=row.name,
        role=Role(row.role),
        lang=row.lang,
        failed_logins=int(row.failed_logins),
        locked_until_us=row.locked_until_us,
        disabled=bool(row.disabled),
        created_at_us=int(row.created_at_us),
    )


_OPERATOR_COLUMNS = [
    operators.c.name,
    operators.c.role,
    operators.c.lang,
    operators.c.failed_logins,
    operators.c.locked_until_us,
    operators.c.disabled,
    operators.c.created_at_us,
]


class OperatorRegistry:
    """The accounts of one node, in that node's store."""

    def __init__(self, store: Store, *, issuer: str, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        #: Shown by authenticator apps next to the account ("hotline washington").
        self.issuer = issuer
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory defaults
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.store.write() as conn:
            yield conn

    # -- accounts --------------------------------------------------------------------------

    def add(
        self, name: str, role: Role | str, password: str, *, now: datetime, lang: str = "en"
    ) -> NewOperator:
        """Create an account; returns its TOTP secret and provisioning URI (shown once)."""
        check_operator_name(name)
        try:
            role = Role(role)
        except ValueError:
            raise InputError(
                f"role must be one of {', '.join(Role)}", fields={"role": ", ".join(Role)}
            ) from None
        check_password(password)
        check_lang(lang)
        secret = pyotp.random_base32()
        password_hash = self.hasher.hash(password)
        with self._write() as conn:
            if conn.execute(select(operators.c.name).where(operators.c.name == name)).first():
                raise InputError(f"operator {name!r} exists", fields={"name": "already taken"})
            conn.execute(
                insert(operators).values(
                    name=name,
                    role=role.value,
                    password_hash=password_hash,
                    totp_secret=secret,
                    totp_last_step=0,
                    lang=lang,
                    failed_logins=0,
                    locked_until_us=None,
                    disabled=0,
                    created_at_us=to_us(now),
                )
            )
            self._log(conn, now, "system", "operator_added", name, f"role={role.value}", "")
        uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=self.issuer)
        return NewOperator(self.get_required(name), uri, secret)

    def get(self, name: str) -> Operator | None:
        with self.store.read() as conn:
            row = conn.execute(select(*_OPERATOR_COLUMNS).where(operators.c.name == name)).first()
        return None if row is None else _operator(row)

    def get_required(self, name: str) -> Operator:
        found = self.get(name)
        if found is None:
            raise NotFoundError(f"no operator named {name!r}")
        return found

    def all(self) -> list[Operator]:
        with self.store.read() as conn:
            rows = conn.execute(select(*_OPERATOR_COLUMNS).order_by(operators.c.name))
            return [_operator(r) for r in rows]

    def set_lang(self, name: str, lang: str, *, now: datetime) -> None:
        check_lang(lang)
        with self._write() as conn:
            done = conn.execute(
                update(operators).where(operators.c.name == name).values(lang=lang)
            ).rowcount
            if not done:
                raise NotFoundError(f"no operator named {name!r}")
            self._log(conn, now, name, "set_lang", name, lang, "")

    def unlock(self, name: str, *, now: datetime, by: str = "system") -> None:
        with self._write() as conn:
            done = conn.execute(
                update(operators)
                .where(operators.c.name == name)
                .values(failed_logins=0, locked_until_us=None)
            ).rowcount
            if not done:
                raise NotFoundError(f"no operator named {name!r}")
            self._log(conn, now, by, "operator_unlocked", name, "", "")

    def set_disabled(self, name: str, disabled: bool, *, now: datetime, by: str = "system") -> None:
        with self._write() as conn:
            done = conn.execute(
                update(operators).where(operators.c.name == name).values(disabled=int(disabled))
            ).rowcount
            if not done:
                raise NotFoundError(f"no operator named {name!r}")
            if disabled:
                conn.execute(delete(operator_sessions).where(operator_sessions.c.operator == name))
            action = "operator_disabled" if disabled else "operator_enabled"
            self._log(conn, now, by, action, name, "", "")

    def set_password(self, name: str, password: str, *, now: datetime, by: str = "system") -> None:
        """A new password; the account's sessions end."""
        check_password(password)
        password_hash = self.hasher.hash(password)
        with self._write() as conn:
            done = conn.execute(
                update(operators)
                .where(operators.c.name == name)
                .values(password_hash=password_hash)
            ).rowcount
            if not done:
                raise NotFoundError(f"no operator named {name!r}")
            conn.execute(delete(operator_sessions).where(operator_sessions.c.operator == name))
            self._log(conn, now, by, "password_set", name, "", "")

    def reset_totp(self, name: str, *, now: datetime, by: str = "system") -> NewOperator:
        """A new TOTP secret (a lost or replaced phone); the account's sessions end. The new
        provisioning URI is returned once."""
        secret = pyotp.random_base32()
        with self._write() as conn:
            done = conn.execute(
                update(operators)
                .where(operators.c.name == name)
                .values(totp_secret=secret, totp_last_step=0)
            ).rowcount
            if not done:
                raise NotFoundError(f"no operator named {name!r}")
            conn.execute(delete(operator_sessions).where(operator_sessions.c.operator == name))
            self._log(conn, now, by, "totp_reset", name, "", "")
        uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=self.issuer)
        return NewOperator(self.get_required(name), uri, secret)

    # -- login -----------------------------------------------------------------------------

    def authenticate(
        self, name: str, password: str, code: str, *, now: datetime, source: str = ""
    ) -> Operator:
        """Check a login (see the module docstring); raises ``AuthError`` on any failure."""
        failed = AuthError("login failed", code=ErrorCode.LOGIN_FAILED)
        with self.store.read() as conn:
            row = (
                conn.execute(
                    select(
                        operators.c.password_hash,
                        operators.c.totp_secret,
                        operators.c.totp_last_step,
                        operators.c.disabled,
                        operators.c.locked_until_us,
                    ).where(operators.c.name == name)
                ).first()
                if _NAME.fullmatch(name)
                else None
            )
        # 1. A known, enabled account (the hash is checked either way, see above).
        stored_hash = row.password_hash if row is not None else self._dummy_hash
        password_ok = len(password) <= MAX_PASSWORD_CHARS and self._verify(stored_hash, password)
        if row is None or row.disabled:
            self.record_action("?" if row is None else name, "login_failed", now=now, source=source)
            raise failed
        # 3. A fresh TOTP code.
        step = self._totp_step(row.totp_secret, code, now, int(row.totp_last_step))
        ok = password_ok and step is not None
        locked = row.locked_until_us is not None and row.locked_until_us > to_us(now)
        with self._write() as conn:
            if ok and not locked:
                values: dict[str, Any] = {
                    "failed_logins": 0,
                    "locked_until_us": None,
                    "totp_last_step": step,
                }
                if self.hasher.check_needs_rehash(stored_hash):
                    values["password_hash"] = self.hasher.hash(password)
                done = conn.execute(
                    update(operators)
                    .where(operators.c.name == name, operators.c.totp_last_step < step)
                    .values(**values)
                ).rowcount
                if not done:  # a concurrent login spent this code first
                    raise failed
                self._log(conn, now, name, "login", "", "", source)
                ok_row = conn.execute(
                    select(*_OPERATOR_COLUMNS).where(operators.c.name == name)
                ).first()
                return _operator(ok_row)
            # 4. Count the failure; lock at the limit. Right credentials on a locked account
            # are not a failure, but the code is spent all the same.
            if ok:
                conn.execute(
                    update(operators).where(operators.c.name == name).values(totp_last_step=step)
                )
                self._log(conn, now, name, "login_refused_locked", "", "", source)
                raise AuthError("account locked", code=ErrorCode.ACCOUNT_LOCKED)
            failures = 1 + int(
                conn.execute(
                    select(operators.c.failed_logins).where(operators.c.name == name)
                ).scalar_one()
            )
            values = {"failed_logins": failures}
            if failures >= MAX_FAILED_LOGINS and not locked:
                values["locked_until_us"] = to_us(now + LOCKOUT)
            conn.execute(update(operators).where(operators.c.name == name).values(**values))
            self._log(conn, now, name, "login_failed", "", "", source)
        raise failed

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _totp_step(secret: str, code: str, now: datetime, last_step: int) -> int | None:
        """The step whose code ``code`` is (within the window, after ``last_step``), or None."""
        if not _CODE.fullmatch(code):
            return None
        totp = pyotp.TOTP(secret, interval=TOTP_STEP_S)
        current = int(now.timestamp()) // TOTP_STEP_S
        found = None
        for step in range(current - TOTP_WINDOW_STEPS, current + TOTP_WINDOW_STEPS + 1):
            if step > last_step and hmac.compare_digest(totp.generate_otp(step), code):
                found = step
        return found

    # -- sessions --------------------------------------------------------------------------

    def create_session(self, operator: Operator, *, now: datetime) -> tuple[str, Session]:
        """A new session for a logged-in operator: (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        session = Session(
            token_hash=_token_hash(token),
            operator=operator,
            csrf=secrets.token_urlsafe(32),
            created_at_us=to_us(now),
            last_seen_us=to_us(now),
            expires_at_us=to_us(now + SESSION_LIFETIME),
        )
        with self._write() as conn:
            # Sessions that ended are deleted as new ones start (the table stays small).
            conn.execute(
                delete(operator_sessions).where(
                    (operator_sessions.c.expires_at_us < to_us(now))
                    | (operator_sessions.c.last_seen_us < to_us(now - SESSION_IDLE))
                )
            )
            conn.execute(
                insert(operator_sessions).values(
                    token_hash=session.token_hash,
                    operator=operator.name,
                    csrf=session.csrf,
                    created_at_us=session.created_at_us,
                    last_seen_us=session.last_seen_us,
                    expires_at_us=session.expires_at_us,
                )
            )
        return token, session

    def session(self, token: str, *, now: datetime) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired, idle, disabled)."""
        if not token or len(token) > 128:
            return None
        token_hash = _token_hash(token)
        now_us = to_us(now)
        with self.store.read() as conn:
            row = conn.execute(
                select(
                    operator_sessions.c.csrf,
                    operator_sessions.c.created_at_us,
                    operator_sessions.c.last_seen_us,
                    operator_sessions.c.expires_at_us,
                    *_OPERATOR_COLUMNS,
                )
                .join(operators, operators.c.name == operator_sessions.c.operator)
                .where(operator_sessions.c.token_hash == token_hash)
            ).first()
        if row is None or row.disabled:
            return None
        idle_limit = row.last_seen_us + int(SESSION_IDLE.total_seconds() * 1e6)
        if now_us >= row.expires_at_us or now_us >= idle_limit:
            return None
        last_seen = int(row.last_seen_us)
        if now_us - last_seen > SESSION_TOUCH_INTERVAL.total_seconds() * 1e6:
            with self._write() as conn:
                conn.execute(
                    update(operator_sessions)
                    .where(operator_sessions.c.token_hash == token_hash)
                    .values(last_seen_us=now_us)
                )
            last_seen = now_us
        return Session(
            token_hash=token_hash,
            operator=_operator(row),
            csrf=row.csrf,
            created_at_us=int(row.created_at_us),
            last_seen_us=last_seen,
            expires_at_us=int(row.expires_at_us),
        )

    def end_session(self, token_hash: str) -> None:
        with self._write() as conn:
            conn.execute(
                delete(operator_sessions).where(operator_sessions.c.token_hash == token_hash)
            )

    # -- personal API tokens ---------------------------------------------------------------

    def issue_api_token(
        self, name: str, *, now: datetime, by: str = "system"
    ) -> tuple[str, ApiToken]:
        """A new personal token of the local API for operator ``name``: (the token, shown once;
        its record). Requests made with it act as that operator, within its role."""
        operator = self.get_required(name)
        if operator.disabled:
            raise InputError(f"operator {name!r} is disabled", fields={"name": "disabled"})
        token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiToken(
            id=secrets.token_hex(6),
            operator=name,
            created_at_us=to_us(now),
            revoked_at_us=None,
            last_used_us=None,
        )
        with self._write() as conn:
            conn.execute(
                insert(operator_api_tokens).values(
                    token_hash=_token_hash(token),
                    id=record.id,
                    operator=name,
                    created_at_us=record.created_at_us,
                )
            )
            self._log(conn, now, by, "api_token_issued", name, f"token {record.id}", "")
        return token, record

    def api_tokens(self, name: str | None = None) -> list[ApiToken]:
        query = select(
            operator_api_tokens.c.id,
            operator_api_tokens.c.operator,
            operator_api_tokens.c.created_at_us,
            operator_api_tokens.c.revoked_at_us,
            operator_api_tokens.c.last_used_us,
        ).order_by(operator_api_tokens.c.created_at_us, operator_api_tokens.c.id)
        if name is not None:
            query = query.where(operator_api_tokens.c.operator == name)
        with self.store.read() as conn:
            return [ApiToken(*row) for row in conn.execute(query)]

    def revoke_api_token(self, token_id: str, *, now: datetime, by: str = "system") -> ApiToken:
        with self._write() as conn:
            row = conn.execute(
                select(operator_api_tokens.c.operator, operator_api_tokens.c.revoked_at_us).where(
                    operator_api_tokens.c.id == token_id
                )
            ).first()
            if row is None:
                raise NotFoundError(f"no API token {token_id!r}")
            if row.revoked_at_us is None:
                conn.execute(
                    update(operator_api_tokens)
                    .where(operator_api_tokens.c.id == token_id)
                    .values(revoked_at_us=to_us(now))
                )
                self._log(conn, now, by, "api_token_revoked", row.operator, f"token {token_id}", "")
        return next(t for t in self.api_tokens(row.operator) if t.id == token_id)

    def api_token_operator(self, token: str, *, now: datetime) -> Operator | None:
        """The operator a personal API token acts as, or None (unknown, revoked, disabled)."""
        if not token.startswith(API_TOKEN_PREFIX) or len(token) > 128:
            return None
        token_hash = _token_hash(token)
        with self.store.read() as conn:
            row = conn.execute(
                select(
                    operator_api_tokens.c.revoked_at_us,
                    operator_api_tokens.c.last_used_us,
                    *_OPERATOR_COLUMNS,
                )
                .join(operators, operators.c.name == operator_api_tokens.c.operator)
                .where(operator_api_tokens.c.token_hash == token_hash)
            ).first()
        if row is None or row.revoked_at_us is not None or row.disabled:
            return None
        now_us = to_us(now)
        last_used = row.last_used_us
        if last_used is None or now_us - last_used > SESSION_TOUCH_INTERVAL.total_seconds() * 1e6:
            with self._write() as conn:
                conn.execute(
                    update(operator_api_tokens)
                    .where(operator_api_tokens.c.token_hash == token_hash)
                    .values(last_used_us=now_us)
                )
        return _operator(row)

    # -- the action log --------------------------------------------------------------------

    @staticmethod
    def _log(
        conn: Connection,
        now: datetime,
        operator: str,
        action: str,
        target: str,
        detail: str,
        source: str,
    ) -> None:
        conn.execute(
            insert(operator_actions).values(
                at_us=to_us(now),
                operator=operator[:32],
                action=action[:32],
                target=target[:128],
                detail=detail[:MAX_ACTION_DETAIL_CHARS],
                source=source[:128],
            )
        )

    def record_action(
        self,
        operator: str,
        action: str,
        *,
        now: datetime,
        target: str = "",
        detail: str = "",
        source: str = "",
        conn: Connection | None = None,
    ) -> None:
        """Append one row to the action log (in the caller's transaction when given one)."""
        if conn is not None:
            self._log(conn, now, operator, action, target, detail, source)
            return
        with self._write() as own:
            self._log(own, now, operator, action, target, detail, source)

    def actions(self, *, limit: int = 100, operator: str | None = None) -> list[Action]:
        query = select(operator_actions).order_by(desc(operator_actions.c.id)).limit(limit)
        if operator is not None:
            query = query.where(operator_actions.c.operator == operator)
        with self.store.read() as conn:
            return [
                Action(r.id, r.at_us, r.operator, r.action, r.target, r.detail, r.source)
                for r in conn.execute(query)
            ]


__all__ = [
    "LANGUAGES",
    "LOCKOUT",
    "MAX_FAILED_LOGINS",
    "MIN_PASSWORD_CHARS",
    "PERMISSIONS",
    "SESSION_IDLE",
    "SESSION_LIFETIME",
    "Action",
    "ForbiddenError",
    "NewOperator",
    "Operator",
    "OperatorRegistry",
    "Permission",
    "Role",
    "Session",
    "check_lang",
    "check_operator_name",
    "check_password",
]

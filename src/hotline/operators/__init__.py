"""Local operator accounts of a node: roles, argon2id passwords, TOTP, lock-out, sessions.

    OperatorRegistry(store, issuer=...)       the accounts in a node's store
      .add(name, role, password, now=)        -> NewOperator (TOTP URI shown once)
      .authenticate(name, password, code, now=) -> Operator, or AuthError
      .create_session / .session / .end_session
      .record_action / .actions               the append-only log of what each operator did
      .issue_api_token / .api_token_operator  personal tokens of the local API

See docs/console.md.
"""

from hotline.operators._registry import (
    API_TOKEN_PREFIX,
    LANGUAGES,
    LOCKOUT,
    MAX_FAILED_LOGINS,
    MIN_PASSWORD_CHARS,
    PERMISSIONS,
    SESSION_IDLE,
    SESSION_LIFETIME,
    Action,
    ApiToken,
    ForbiddenError,
    NewOperator,
    Operator,
    OperatorRegistry,
    Permission,
    Role,
    Session,
    check_lang,
    check_operator_name,
    check_password,
)
from hotline.operators._schema import (
    operator_actions,
    operator_sessions,
    operators,
    release_requests,
)

__all__ = [
    "API_TOKEN_PREFIX",
    "LANGUAGES",
    "LOCKOUT",
    "MAX_FAILED_LOGINS",
    "MIN_PASSWORD_CHARS",
    "PERMISSIONS",
    "SESSION_IDLE",
    "SESSION_LIFETIME",
    "Action",
    "ApiToken",
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
    "operator_actions",
    "operator_sessions",
    "operators",
    "release_requests",
]

"""Tables of the local operator registry (migration 0006), on the store's shared ``metadata``.

Secrets are kept as little as possible: passwords as argon2id hashes, session tokens as SHA-256
of the token (the cookie holds the only copy of the token). The TOTP secret has to be kept as it
is, since verifying a code needs it; the store file is mode 0600 inside the node directory.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from hotline.store.schema import metadata

# One row per local account. ``failed_logins`` counts failures since the last success;
# ``locked_until_us`` is set when it reaches the limit. ``totp_last_step`` is the last accepted
# 30-second step, so a code cannot be used twice.
operators = Table(
    "operators",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("totp_secret", String(64), nullable=False),
    Column("totp_last_step", BigInteger, nullable=False, default=0),
    Column("lang", String(8), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until_us", BigInteger, nullable=True),
    Column("disabled", Integer, nullable=False, default=0),
    Column("created_at_us", BigInteger, nullable=False),
)

# Console sessions: the SHA-256 of the cookie's token, its owner, its CSRF token and its times.
operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("operator", String(32), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
)
Index("ix_operator_sessions_operator", operator_sessions.c.operator)

# Append-only record of what each operator did in the console (and each failed login).
operator_actions = Table(
    "operator_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("operator", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(128), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Column("source", String(128), nullable=False, default=""),
)
Index("ix_operator_actions_operator", operator_actions.c.operator, operator_actions.c.id)

# Messages waiting for a second person (two-person release), and what became of them. The body
# is kept exactly as composed; ``message_ids`` (JSON list) are the messages queued on release.
release_requests = Table(
    "release_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("author", String(32), nullable=False),
    Column("msg_type", String(64), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("recipients", Text, nullable=False),  # JSON list of peer names
    Column("body", Text, nullable=False),  # JSON object
    Column("in_reply_to", String(36), nullable=True),
    Column("state", String(16), nullable=False),  # pending | releasing | released | rejected
    Column("created_at_us", BigInteger, nullable=False),
    Column("decided_by", String(32), nullable=True),
    Column("decided_at_us", BigInteger, nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("message_ids", Text, nullable=False, default="[]"),
)
Index("ix_release_requests_state", release_requests.c.state, release_requests.c.created_at_us)

# Personal tokens of the local operator API (migration 0015): the SHA-256 of the token (the
# operator holds the only copy), a short public id to list and revoke it by, and its owner,
# whose name and role every request made with it carries.
operator_api_tokens = Table(
    "operator_api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("id", String(16), nullable=False, unique=True),
    Column("operator", String(32), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("revoked_at_us", BigInteger, nullable=True),
    Column("last_used_us", BigInteger, nullable=True),
)
Index("ix_operator_api_tokens_operator", operator_api_tokens.c.operator)

__all__ = [
    "operator_actions",
    "operator_api_tokens",
    "operator_sessions",
    "operators",
    "release_requests",
]

"""The console's browser-facing defences: headers, cookies, CSRF and same-origin checks.

- Content-Security-Policy allows scripts, styles, images and connections from this origin only:
  no inline script, no inline style, no eval (htmx is configured not to need them).
- The session cookie is ``__Host-`` prefixed, Secure, HttpOnly and SameSite=Strict. Browsers
  store Secure cookies from http://127.0.0.1 and http://localhost (a secure context), so the
  console works on loopback without TLS; on any other address it must be served over HTTPS.
- Every POST carries a CSRF token: the session's own (synchronizer token) after login, a
  double-submit cookie before it. A POST whose Origin or Sec-Fetch-Site says it came from
  another site is refused as well.
"""

from __future__ import annotations

import hmac
from typing import Final

from starlette.requests import Request

from hotline.errors import AuthError, ErrorCode

SESSION_COOKIE: Final = "__Host-hotline-session"
LOGIN_COOKIE: Final = "__Host-hotline-login"
CSRF_FIELD: Final = "csrf"
#: Largest form body the console reads (a compose form with a large JSON field fits).
MAX_FORM_BYTES: Final = 1024 * 1024 + 64 * 1024

CSP: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class RefusedError(AuthError):
    """A logged-in request the console refuses: no CSRF token, another site, a role too low."""

    http_status = 403


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser says came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise RefusedError(f"cross-site request ({site})", code=ErrorCode.CSRF_FAILED)
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise RefusedError(f"request from origin {origin!r}", code=ErrorCode.CSRF_FAILED)


def check_token(expected: str | None, given: object) -> None:
    """Compare a submitted CSRF token with the expected one, in constant time."""
    if (
        not expected
        or not isinstance(given, str)
        or not hmac.compare_digest(expected.encode(), given.encode())
    ):
        raise RefusedError("missing or wrong CSRF token", code=ErrorCode.CSRF_FAILED)


__all__ = [
    "CSP",
    "CSRF_FIELD",
    "HEADERS",
    "LOGIN_COOKIE",
    "MAX_FORM_BYTES",
    "SESSION_COOKIE",
    "RefusedError",
    "check_same_origin",
    "check_token",
]

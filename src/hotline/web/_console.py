"""The console's routes: pages, forms and the live-update stream, on the node's own app.

Every handler takes the request only and goes through ``_guarded``: a ``HotlineError`` becomes an
error page in the operator's language with its stable code; anything else is logged and shown as
``internal`` without its text. Pages need a session (else a redirect to /login); each POST checks
the origin and the CSRF token before anything else, then the operator's role.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MultiDict
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.staticfiles import StaticFiles

from hotline.compose import inert, render, text_hash
from hotline.compose.priority import Priority
from hotline.compose.readback import body_json, shown_text
from hotline.core.encoding import from_us, to_us
from hotline.errors import AuthError, ErrorCode, HotlineError, InputError
from hotline.link import keyring
from hotline.node.runtime import Node
from hotline.operators import (
    LANGUAGES,
    ForbiddenError,
    OperatorRegistry,
    Permission,
    Session,
)
from hotline.operators.release import ReleaseQueue, ReleaseRequest, needs_release
from hotline.operators.translations import attach_translation, translations_for
from hotline.store.messages import MessageView
from hotline.transcript.recovered import list_recovered
from hotline.web import _audit, _map
from hotline.web import _queries as q
from hotline.web._compose import COMPOSABLE, body_from_form, field_errors, form_fields
from hotline.web._i18n import field_label, translate
from hotline.web._security import (
    CSRF_FIELD,
    HEADERS,
    LOGIN_COOKIE,
    MAX_FORM_BYTES,
    SESSION_COOKIE,
    check_same_origin,
    check_token,
)

log = logging.getLogger(__name__)

#: Recovered statements the links page lists at most (a lost tail is short; the CLI lists all).
RECOVERED_SHOWN: Final = 200
#: A comment line is sent on the live stream this often, so proxies and browsers keep it open
#: and a closed tab is noticed.
KEEPALIVE_S: Final = 15.0
#: A live stream ends after this long and the browser opens a new one at once, resuming from
#: the last event it saw. A node that shuts down waits for open responses to finish, so this
#: bounds how long an open console can hold up a graceful restart.
STREAM_LIFETIME_S: Final = 25.0
#: How soon the browser reconnects after a stream ends or breaks.
RECONNECT_MS: Final = 500
#: Failed logins from one address within ``LOGIN_WINDOW_S`` after which that address's further
#: attempts are refused without being checked (the per-account lock-out does not stop one
#: password being tried against every account).
MAX_FAILURES_PER_SOURCE: Final = 20
LOGIN_WINDOW_S: Final = 600.0
#: Addresses remembered for that (the oldest are forgotten first).
MAX_SOURCES_TRACKED: Final = 10_000
#: The time zone messages are rendered in (times are also shown in UTC by the catalog).
DISPLAY_TZ: Final = "UTC"
#: Cases listed on the Cases page, newest first.
CASES_SHOWN: Final = 200
#: Cases per peer read for the accountability chart (months of referrals).
CASES_IN_REPORT: Final = 5_000
#: Most form fields one request may carry.
MAX_FORM_FIELDS: Final = 500
STATIC_DIR: Final = Path(str(resources.files("hotline.web").joinpath("static")))

Handler = Callable[[Request], Awaitable[Response]]


class Redirect(Exception):
    """Raised inside a handler to answer with a redirect (e.g. to the login page)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def fmt_time(us: int | None) -> str:
    if us is None:
        return "—"
    return from_us(us).strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_iso(value: str | None) -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return value


def _safe_next(value: object) -> str:
    """A local path to go back to (never another site: no scheme, no '//')."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value[:200]
    return "/inbox"


def _inert_value(value: Any) -> Any:
    """What a page shows of any value: the characters that could reorder or hide text (a peer's
    bidirectional override in a body the catalog refused, or in a type or priority it chose) as
    escapes (``compose.inert``), before HTML escaping; markup we made stays markup."""
    if isinstance(value, Markup):
        # Markup stays markup: inert only replaces characters with ASCII escapes.
        return Markup(inert(str(value)))  # noqa: S704
    if isinstance(value, str):
        return inert(value)
    return value


class Console:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = OperatorRegistry(node.store, issuer=f"hotline {node.name}")
        self.releases = ReleaseQueue(node.store)
        self.env = Environment(
            loader=PackageLoader("hotline.web", "templates"),
            autoescape=True,  # every value is escaped; peer text never becomes markup
            finalize=_inert_value,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["time"] = fmt_time
        self.env.filters["iso"] = fmt_iso
        #: Set when the process is asked to stop: live streams end so the server can exit.
        self.closing = False
        self._signals_hooked = False
        self._map_cache: tuple[tuple[int, ...], _map.MapData, dict[str, Any]] | None = None
        self._partials: dict[tuple[str, str], tuple[int, Markup]] = {}
        self._login_failures: dict[str, deque[float]] = {}

    # -- plumbing --------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, Handler, list[str]]]:
        return [
            ("/", self.home, ["GET"]),
            ("/login", self.login_page, ["GET"]),
            ("/login", self.login, ["POST"]),
            ("/logout", self.logout, ["POST"]),
            ("/settings/lang", self.set_lang, ["POST"]),
            ("/links", self.links, ["GET"]),
            ("/links/live", self.links_live, ["GET"]),
            ("/inbox", self.inbox, ["GET"]),
            ("/inbox/live", self.inbox_live, ["GET"]),
            ("/outbox", self.outbox, ["GET"]),
            ("/outbox/live", self.outbox_live, ["GET"]),
            ("/messages/{message_id}", self.message, ["GET"]),
            ("/messages/{message_id}/live", self.message_live, ["GET"]),
            ("/messages/{message_id}/ack", self.acknowledge, ["POST"]),
            ("/messages/{message_id}/translation", self.translation_attach, ["POST"]),
            ("/compose", self.compose_page, ["GET"]),
            ("/compose", self.compose_send, ["POST"]),
            ("/compose/preview", self.compose_preview, ["POST"]),
            ("/releases", self.releases_page, ["GET"]),
            ("/releases/live", self.releases_live, ["GET"]),
            ("/releases/{request_id}/approve", self.release_approve, ["POST"]),
            ("/releases/{request_id}/reject", self.release_reject, ["POST"]),
            ("/map", self.map_page, ["GET"]),
            ("/map/live", self.map_live, ["GET"]),
            ("/map/data.json", self.map_data, ["GET"]),
            ("/cases", self.cases_page, ["GET"]),
            ("/audit", self.audit_page, ["GET"]),
            ("/audit/export", self.audit_export, ["POST"]),
            ("/events", self.events, ["GET"]),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except Redirect as r:
                if request.headers.get("hx-request"):
                    response = Response(status_code=401, headers={"HX-Redirect": r.url})
                else:
                    response = RedirectResponse(r.url, status_code=303)
            except HotlineError as e:
                log.info("console %s %s -> %s", request.method, request.url.path, e)
                response = self._error(request, e)
            except Exception:
                log.exception("console: unexpected error on %s %s", request.method, request.url)
                response = self._error(request, HotlineError("internal error"))
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return run

    def _error(self, request: Request, error: HotlineError) -> Response:
        session = self._session(request)
        lang = session.operator.lang if session else self._guess_lang(request)
        return self._page(
            "error.html",
            request,
            session,
            status=error.http_status,
            lang=lang,
            error=error,
            message=error.message(lang),
        )

    def _guess_lang(self, request: Request) -> str:
        wanted = request.query_params.get("lang")
        if wanted in LANGUAGES:
            return wanted
        accept = request.headers.get("accept-language", "")
        return "ru" if accept.lower().startswith("ru") else "en"

    def _page(
        self,
        template: str,
        request: Request,
        session: Session | None,
        *,
        status: int = 200,
        lang: str | None = None,
        **ctx: Any,
    ) -> HTMLResponse:
        lang = lang or (session.operator.lang if session else self._guess_lang(request))
        html = self.env.get_template(template).render(
            t=translate(lang),
            label=field_label(lang),
            lang=lang,
            session=session,
            operator=session.operator if session else None,
            csrf=session.csrf if session else "",
            node_name=self.node.name,
            path=request.url.path,
            now_ms=int(datetime.now(UTC).timestamp() * 1000),
            marks=".".join(str(m) for m in self._marks()) if session else "",
            Permission=Permission,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    def _session(self, request: Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        return self.registry.session(token, now=datetime.now(UTC)) if token else None

    def _require(self, request: Request, permission: Permission = Permission.VIEW) -> Session:
        session = self._session(request)
        if session is None:
            raise Redirect("/login")
        if not session.operator.can(permission):
            raise ForbiddenError(f"{session.operator.role} may not {permission.value}")
        return session

    async def _form(self, request: Request) -> MultiDict:
        """The URL-encoded form of a POST, size-limited, after the same-origin check."""
        check_same_origin(request)
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
            raise InputError(f"form body must declare a length of at most {MAX_FORM_BYTES} bytes")
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            raise InputError(f"forms must be URL-encoded, not {kind!r}")
        raw = await request.body()
        try:
            pairs = parse_qsl(
                raw.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=MAX_FORM_FIELDS,
            )
        except (UnicodeDecodeError, ValueError) as e:
            raise InputError(f"form is not valid: {e}") from e
        return MultiDict(pairs)

    async def _post(
        self, request: Request, permission: Permission = Permission.VIEW
    ) -> tuple[Session, MultiDict]:
        """A logged-in POST: session, then origin and CSRF token, then role."""
        session = self._session(request)
        if session is None:
            raise Redirect("/login")
        form = await self._form(request)
        check_token(session.csrf, form.get(CSRF_FIELD))
        if not session.operator.can(permission):
            raise ForbiddenError(f"{session.operator.role} may not {permission.value}")
        return session, form

    def _record(
        self, session: Session, request: Request, action: str, target: str = "", detail: str = ""
    ) -> None:
        self.registry.record_action(
            session.operator.name,
            action,
            now=datetime.now(UTC),
            target=target,
            detail=detail,
            source=request.client.host if request.client else "",
        )

    # -- login -----------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        self._require(request)
        return RedirectResponse("/inbox", status_code=303)

    async def login_page(self, request: Request) -> Response:
        return self._login_form(request, error=None)

    def _login_form(
        self, request: Request, error: HotlineError | None, status: int = 200
    ) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        lang = self._guess_lang(request)
        response = self._page(
            "login.html",
            request,
            None,
            status=status,
            lang=lang,
            login_csrf=token,
            error=error.message(lang) if error else None,
            other_lang="ru" if lang == "en" else "en",
        )
        response.set_cookie(
            LOGIN_COOKIE, token, secure=True, httponly=True, samesite="strict", path="/"
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        check_token(request.cookies.get(LOGIN_COOKIE), form.get(CSRF_FIELD))
        name = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))
        code = str(form.get("totp", "")).strip()
        source = request.client.host if request.client else ""
        if self._throttled(source):
            self.registry.record_action(
                name or "?", "login_throttled", now=datetime.now(UTC), source=source
            )
            failed = AuthError("too many failed logins from here", code=ErrorCode.LOGIN_FAILED)
            return self._login_form(request, failed, status=429)
        try:
            operator = await run_in_threadpool(
                self.registry.authenticate,
                name,
                password,
                code,
                now=datetime.now(UTC),
                source=source,
            )
        except AuthError as e:
            self._note_failure(source)
            return self._login_form(request, e, status=401)
        token, _ = self.registry.create_session(operator, now=datetime.now(UTC))
        response = RedirectResponse("/inbox", status_code=303)
        response.set_cookie(
            SESSION_COOKIE, token, secure=True, httponly=True, samesite="strict", path="/"
        )
        response.delete_cookie(
            LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
        return response

    def _recent_failures(self, source: str) -> deque[float]:
        window = self._login_failures.get(source)
        if window is None:
            return deque()
        cutoff = time.monotonic() - LOGIN_WINDOW_S
        while window and window[0] < cutoff:
            window.popleft()
        return window

    def _throttled(self, source: str) -> bool:
        return len(self._recent_failures(source)) >= MAX_FAILURES_PER_SOURCE

    def _note_failure(self, source: str) -> None:
        window = self._recent_failures(source)
        window.append(time.monotonic())
        self._login_failures[source] = window
        if len(self._login_failures) > MAX_SOURCES_TRACKED:
            del self._login_failures[next(iter(self._login_failures))]

    async def logout(self, request: Request) -> Response:
        session, _ = await self._post(request)
        self.registry.end_session(session.token_hash)
        self._record(session, request, "logout")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict"
        )
        return response

    async def set_lang(self, request: Request) -> Response:
        session, form = await self._post(request)
        lang = str(form.get("lang", ""))
        self.registry.set_lang(session.operator.name, lang, now=datetime.now(UTC))
        return RedirectResponse(_safe_next(form.get("next")), status_code=303)

    # -- links -----------------------------------------------------------------------------

    def _links_ctx(self) -> dict[str, Any]:
        with self.node.store.read() as conn:
            events = q.recent_security_events(conn)
            equivocations = q.equivocations(conn)
            heads = {p: _audit.peer_audit(conn, p) for p in self.node.peers}
            witnessed = _audit.witness_cosignatures(conn)[:1]
            compromised = keyring.compromise_times(conn)
            recovered = list_recovered(conn, None, compromised=compromised)[:RECOVERED_SHOWN]
        return {
            "recovered": recovered,
            "heads": heads,
            "witnessed": witnessed[0] if witnessed else None,
            "links": self.node.link_report(),
            "security_events": events,
            "alarm": any(e.alarm for e in events) or equivocations > 0,
            "equivocations": equivocations,
        }

    async def links(self, request: Request) -> Response:
        session = self._require(request)
        return self._page("links.html", request, session, **self._links_ctx())

    async def links_live(self, request: Request) -> Response:
        session = self._require(request)
        return self._page("_links.html", request, session, **self._links_ctx())

    # -- inbox and messages ----------------------------------------------------------------

    def _deadlines(self, peer: str) -> dict[str, float]:
        """Acknowledgement allowances agreed with ``peer`` (node.toml), by priority."""
        return self.node.home.config.deadlines_for(peer)

    def _inbox_ctx(self) -> dict[str, Any]:
        with self.node.store.read() as conn:
            pending, total = q.inbox_pending(conn, self.node.name, self._deadlines)
            recent = q.inbox_recent_acknowledged(conn, self.node.name)
        return {
            "pending": pending,
            "pending_total": total,
            "recent": recent,
            "deadline": lambda v: q.ack_deadline_us(v, self._deadlines),
            "received": q.received_us,
            "acknowledged_by": q.acknowledged_by,
            "summary": _summary,
        }

    def _partial(
        self, template: str, session: Session, ctx: Callable[[], dict[str, Any]]
    ) -> Markup:
        """A region's HTML, rendered again only after the messages changed.

        Regions cached this way depend on the store's messages and the language only (their
        countdowns run in the browser), so many open consoles cost one query and one render
        per change, not one per request.
        """
        mark = self._marks()[0]
        lang = session.operator.lang
        key = (template, lang)
        hit = self._partials.get(key)
        if hit is not None and hit[0] == mark:
            return hit[1]
        # The output of one of our autoescaping templates: every value in it is escaped.
        html = Markup(  # noqa: S704
            self.env.get_template(template).render(t=translate(lang), lang=lang, **ctx())
        )
        self._partials[key] = (mark, html)
        return html

    def _region(self, html: Markup) -> Response:
        response = HTMLResponse(html)
        for name, value in HEADERS.items():
            response.headers[name] = value
        return response

    async def inbox(self, request: Request) -> Response:
        session = self._require(request)
        inner = self._partial("_inbox.html", session, self._inbox_ctx)
        return self._page("inbox.html", request, session, inner=inner)

    async def inbox_live(self, request: Request) -> Response:
        session = self._require(request)
        return self._region(self._partial("_inbox.html", session, self._inbox_ctx))

    def _shown_text(self, view: MessageView, lang: str) -> str:
        """The text an operator reads for ``view`` in ``lang``: the read-back text that an
        acknowledgement hashes, made as the CLI and the API make it (a body the catalog refuses
        is its JSON, marked unformatted)."""
        return shown_text(view.msg_type, view.body, lang, DISPLAY_TZ)

    def _message_ctx(self, request: Request, session: Session, message_id: str) -> dict[str, Any]:
        view = self.node.message(message_id)
        wanted = request.query_params.get("lang")
        lang = wanted if wanted in LANGUAGES else session.operator.lang
        text = self._shown_text(view, lang)
        with self.node.store.read() as conn:
            translations = translations_for(conn, view.id)
        return {
            "translations": translations,
            "m": view,
            "shown_lang": lang,
            "text": text,
            "text_hash": text_hash(text),
            "original": body_json(view.body),
            "acknowledged_by": q.acknowledged_by(view),
            "deadline": q.ack_deadline_us(view, self._deadlines)
            if view.direction == "in" and view.kind == "message"
            else None,
            "received": q.received_us(view),
        }

    async def message(self, request: Request) -> Response:
        session = self._require(request)
        ctx = self._message_ctx(request, session, request.path_params["message_id"])
        return self._page("message.html", request, session, **ctx)

    async def message_live(self, request: Request) -> Response:
        session = self._require(request)
        ctx = self._message_ctx(request, session, request.path_params["message_id"])
        return self._page("_message_state.html", request, session, **ctx)

    async def acknowledge(self, request: Request) -> Response:
        session, form = await self._post(request, Permission.ACKNOWLEDGE)
        message_id = request.path_params["message_id"]
        view = self.node.message(message_id)
        if view.direction != "in" or view.kind != "message":
            raise InputError("only a received message can be acknowledged")
        lang = str(form.get("lang", ""))
        if lang not in LANGUAGES:
            raise InputError("unknown language", fields={"lang": "en or ru"})
        text = self._shown_text(view, lang)
        shown_hash = text_hash(text)
        # The receipt must sign what the operator read: a stale page is refused, not signed.
        check = str(form.get("text_hash", ""))
        if check != shown_hash:
            raise InputError(
                "the text shown differs from the message now; reload and read it again",
                fields={"text_hash": "stale"},
            )
        receipt_id = self.node.acknowledge(
            message_id,
            operator=session.operator.name,
            lang=lang,
            tz=DISPLAY_TZ,
            text_hash=shown_hash,
        )
        self._record(
            session,
            request,
            "acknowledge",
            target=message_id,
            detail=f"receipt={receipt_id} lang={lang} text_hash={shown_hash}",
        )
        return RedirectResponse(f"/messages/{message_id}", status_code=303)

    async def translation_attach(self, request: Request) -> Response:
        session, form = await self._post(request, Permission.ACKNOWLEDGE)
        view = self.node.message(request.path_params["message_id"])
        done = attach_translation(
            self.node.store,
            self.node.identity,
            view.id,
            str(form.get("lang", "")),
            str(form.get("text", "")),
            session.operator,
            now=datetime.now(UTC),
        )
        self._record(
            session, request, "attach_translation", target=view.id, detail=f"lang={done.lang}"
        )
        self.node.notify_changed()
        return RedirectResponse(f"/messages/{view.id}#translations", status_code=303)

    # -- outbox ----------------------------------------------------------------------------

    def _outbox_ctx(self) -> dict[str, Any]:
        with self.node.store.read() as conn:
            rows = q.outbox(conn, self.node.name)
        return {"rows": rows, "summary": _summary, "acknowledged_by": q.acknowledged_by}

    async def outbox(self, request: Request) -> Response:
        session = self._require(request)
        inner = self._partial("_outbox.html", session, self._outbox_ctx)
        return self._page("outbox.html", request, session, inner=inner)

    async def outbox_live(self, request: Request) -> Response:
        session = self._require(request)
        return self._region(self._partial("_outbox.html", session, self._outbox_ctx))

    # -- compose ---------------------------------------------------------------------------

    def _compose_ctx(
        self,
        session: Session,
        msg_type: str,
        values: dict[str, Any],
        recipients: list[str],
        priority: str,
        errors: dict[str, list[str]] | None = None,
        previews: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return {
            "types": COMPOSABLE,
            "msg_type": msg_type,
            "fields": form_fields(msg_type),
            "values": values,
            "peers": sorted(self.node.peers),
            "recipients": recipients,
            "priorities": [p.value for p in Priority],
            "priority": priority,
            "errors": errors or {},
            "previews": previews or {},
        }

    def _compose_type(self, value: object) -> str:
        if value is None or value == "":
            return "free_text"
        if not isinstance(value, str) or value not in COMPOSABLE:
            raise InputError(f"unknown message type {value!r}", fields={"type": "unknown"})
        return value

    async def compose_page(self, request: Request) -> Response:
        session = self._require(request, Permission.SEND)
        msg_type = self._compose_type(request.query_params.get("type"))
        values: dict[str, Any] = {"lang": session.operator.lang}
        reply_to = request.query_params.get("in_reply_to")
        recipients: list[str] = []
        if reply_to:
            original = self.node.message(reply_to)
            values["in_reply_to"] = original.id
            recipients = [original.peer]
            if request.query_params.get("draft") and original.msg_type == "activity_notification":
                # A draft naming the conflicts of the peer's notification with our activities.
                values["text"] = _map.draft_for(self._map_data()[0], original.id) or ""
        ctx = self._compose_ctx(session, msg_type, values, recipients, "routine")
        ctx["in_reply_to"] = reply_to or ""
        return self._page("compose.html", request, session, **ctx)

    def _check_compose(
        self, msg_type: str, form: MultiDict
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[str]], dict[str, str]]:
        """(body, values, errors by field, previews by language) for a submitted compose form."""
        parsed = body_from_form(msg_type, form)
        errors = {k: [v] for k, v in parsed.errors.items()}
        previews: dict[str, str] = {}
        if not errors:
            try:
                previews = {lang: render(msg_type, parsed.body, lang, "UTC") for lang in LANGUAGES}
            except InputError as e:
                errors = field_errors(e.fields or {"body": e.detail})
        return parsed.body, parsed.values, errors, previews

    async def compose_preview(self, request: Request) -> Response:
        session, form = await self._post(request, Permission.SEND)
        msg_type = self._compose_type(form.get("type"))
        _, _, errors, previews = self._check_compose(msg_type, form)
        return self._page(
            "_compose_preview.html", request, session, errors=errors, previews=previews
        )

    async def compose_send(self, request: Request) -> Response:
        session, form = await self._post(request, Permission.SEND)
        msg_type = self._compose_type(form.get("type"))
        body, values, errors, previews = self._check_compose(msg_type, form)
        recipients = [str(r) for r in form.getlist("to")]
        unknown = [r for r in recipients if r not in self.node.peers]
        if not recipients or unknown:
            errors.setdefault("to", []).append(
                translate(session.operator.lang)("need_recipient")
                if not recipients
                else f"unknown: {', '.join(unknown)}"
            )
        priority = str(form.get("priority", "routine"))
        if priority not in {p.value for p in Priority}:
            errors.setdefault("priority", []).append("unknown priority")
        in_reply_to = str(form.get("in_reply_to", "")) or None
        if not errors:
            try:
                body = self._prepare_body(msg_type, body)
            except InputError as e:
                errors = field_errors(e.fields or {"body": e.detail})
            except HotlineError as e:
                errors = {"body": [e.message(session.operator.lang)]}
        if errors:
            ctx = self._compose_ctx(
                session, msg_type, values, recipients, priority, errors, previews
            )
            ctx["in_reply_to"] = in_reply_to or ""
            return self._page("compose.html", request, session, status=422, **ctx)
        if needs_release(priority):
            queued = self.releases.submit(
                session.operator,
                msg_type=msg_type,
                priority=priority,
                recipients=recipients,
                body=body,
                in_reply_to=in_reply_to,
                now=datetime.now(UTC),
            )
            self._record(
                session,
                request,
                "submit_for_release",
                target=queued.id,
                detail=f"type={msg_type} priority={priority} to={','.join(recipients)}",
            )
            self.node.notify_changed()
            return RedirectResponse(f"/releases#r-{queued.id}", status_code=303)
        ids = self.node.send_many(
            [
                {
                    "to": peer,
                    "msg_type": msg_type,
                    "priority": priority,
                    "body": body,
                    "in_reply_to": in_reply_to,
                    "author": session.operator.name,
                }
                for peer in recipients
            ]
        )
        self._after_send(msg_type, recipients, ids, body)
        self._record(
            session,
            request,
            "send",
            target=",".join(ids)[:128],
            detail=f"type={msg_type} priority={priority} to={','.join(recipients)}",
        )
        return RedirectResponse("/outbox?" + urlencode({"sent": ids[0]}), status_code=303)

    # -- release queue ---------------------------------------------------------------------

    def _release_text(self, r: ReleaseRequest, lang: str) -> str:
        try:
            return render(r.msg_type, r.body, lang, "UTC")
        except HotlineError:
            return body_json(r.body)

    def _releases_ctx(self, session: Session) -> dict[str, Any]:
        lang = session.operator.lang
        pending = self.releases.pending()
        return {
            "pending": pending,
            "recent": self.releases.recent(),
            "texts": {r.id: self._release_text(r, lang) for r in pending},
        }

    async def releases_page(self, request: Request) -> Response:
        session = self._require(request)
        return self._page("releases.html", request, session, **self._releases_ctx(session))

    async def releases_live(self, request: Request) -> Response:
        session = self._require(request)
        return self._page("_releases.html", request, session, **self._releases_ctx(session))

    def _send_release(self, r: ReleaseRequest) -> list[str]:
        # Author and releaser go with the message (signed into it by the link).
        ids = self.node.send_many(
            [
                {
                    "to": peer,
                    "msg_type": r.msg_type,
                    "priority": r.priority,
                    "body": r.body,
                    "in_reply_to": r.in_reply_to,
                    **r.signed_identity(),
                }
                for peer in r.recipients
            ]
        )
        self._after_send(r.msg_type, list(r.recipients), ids, r.body)
        return ids

    # Cyber referrals and case updates also open or move a case (hotline.referrals.cases), as
    # "hotline refer" and "hotline case update" do.

    def _prepare_body(self, msg_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """A body as it will be signed: a referral's bundle checked and marked with its TLP; a
        case update checked against the case's state, before anything is queued."""
        from hotline.referrals import cases

        now = datetime.now(UTC)
        if msg_type == "cyber_referral":
            from hotline.compose import RequestedAction, Tlp

            return cases.prepare_referral(
                json.dumps(body["stix_bundle"]).encode(),
                narrative=body["narrative"],
                actions=[RequestedAction(a) for a in body["requested_actions"]],
                deadline=datetime.fromisoformat(body["response_deadline"].replace("Z", "+00:00")),
                tlp=Tlp(body["tlp"]),
                now=now,
            )
        if msg_type == "case_update":
            from hotline.referrals.messages import CaseState

            with self.node.store.read() as conn:
                case = cases.get_case(conn, body["case_id"])
            cases.check_transition(
                case.state, CaseState(body["state"]), cases.our_side(case.direction)
            )
        return body

    def _after_send(
        self, msg_type: str, recipients: list[str], ids: list[str], body: dict[str, Any]
    ) -> None:
        if msg_type not in ("cyber_referral", "case_update"):
            return
        from hotline.referrals.cases import on_message_committed

        at_us = to_us(datetime.now(UTC))
        with self.node.store.write() as conn:
            for peer, message_id in zip(recipients, ids, strict=True):
                on_message_committed(
                    conn,
                    direction="out",
                    peer=peer,
                    message_id=message_id,
                    msg_type=msg_type,
                    body=body,
                    at_us=at_us,
                )

    async def release_approve(self, request: Request) -> Response:
        session, _ = await self._post(request, Permission.RELEASE)
        request_id = request.path_params["request_id"]
        done = self.releases.approve(
            request_id, session.operator, now=datetime.now(UTC), send=self._send_release
        )
        self._record(
            session,
            request,
            "release",
            target=request_id,
            detail=f"author={done.author} messages={','.join(done.message_ids)}",
        )
        self.node.notify_changed()
        return RedirectResponse("/releases", status_code=303)

    async def release_reject(self, request: Request) -> Response:
        session, form = await self._post(request, Permission.RELEASE)
        request_id = request.path_params["request_id"]
        reason = str(form.get("reason", ""))
        done = self.releases.reject(request_id, session.operator, reason, now=datetime.now(UTC))
        self._record(
            session, request, "reject_release", target=request_id, detail=done.reason[:500]
        )
        self.node.notify_changed()
        return RedirectResponse("/releases", status_code=303)

    # -- map -------------------------------------------------------------------------------

    def _map_data(self) -> tuple[_map.MapData, dict[str, Any]]:
        """The map's volumes and conflicts, computed again only when they may have changed."""
        now_us = to_us(datetime.now(UTC))
        with self.node.store.read() as conn:
            version = _map.map_version(conn, now_us)
            cached = self._map_cache
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            data = _map.load_map(conn, now_us)
        shown = _map.to_json(data)
        self._map_cache = (version, data, shown)
        return data, shown

    def _map_ctx(self) -> dict[str, Any]:
        data = self._map_data()[1]
        return {
            "conflicts": data["conflicts"],
            "refused": data["refused"],
            "n": len(data["volumes"]),
        }

    async def map_page(self, request: Request) -> Response:
        session = self._require(request)
        return self._page("map.html", request, session, **self._map_ctx())

    async def map_live(self, request: Request) -> Response:
        session = self._require(request)
        return self._page("_map_conflicts.html", request, session, **self._map_ctx())

    async def map_data(self, request: Request) -> Response:
        self._require(request)
        return JSONResponse(self._map_data()[1])

    # -- cases -----------------------------------------------------------------------------

    async def cases_page(self, request: Request) -> Response:
        """Cyber referrals: each case's state and deadline; accountability per peer and month."""
        from hotline.referrals.cases import list_cases
        from hotline.referrals.report import build_report

        session = self._require(request)
        now_us = to_us(datetime.now(UTC))
        with self.node.store.read() as conn:
            cases = list_cases(conn, limit=CASES_SHOWN)
            charts = {
                peer: build_report(list_cases(conn, peer=peer, limit=CASES_IN_REPORT), now_us)
                for peer in sorted(self.node.peers)
            }
        return self._page(
            "cases.html",
            request,
            session,
            cases=cases,
            charts={p: rows for p, rows in charts.items() if rows},
            now_us=now_us,
        )

    # -- audit -----------------------------------------------------------------------------

    async def audit_page(self, request: Request) -> Response:
        session = self._require(request)
        with self.node.store.read() as conn:
            ctx: dict[str, Any] = {
                "own_log": _audit.own_log(conn),
                "peers": [_audit.peer_audit(conn, p) for p in sorted(self.node.peers)],
                "cosignatures": _audit.witness_cosignatures(conn),
            }
        ctx["actions"] = self.registry.actions(limit=50)
        return self._page("audit.html", request, session, **ctx)

    async def audit_export(self, request: Request) -> Response:
        """An audit bundle of one link (``hotline audit export``), as a file download."""
        session, form = await self._post(request, Permission.AUDIT)
        peer = str(form.get("peer", ""))
        if peer not in self.node.peers:
            raise InputError(f"no peer named {peer!r}", fields={"peer": "unknown"})
        from hotline.cli.audit import export_bundle  # the CLI's export, run inside the node

        data = await export_bundle(self.node.home, peer)
        self._record(session, request, "export_audit_bundle", target=peer, detail=f"{len(data)} B")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"hotline-audit-{self.node.name}-{peer}-{stamp}.json"
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -- live updates ----------------------------------------------------------------------

    def _end_streams_on_shutdown(self) -> None:
        """Chain SIGINT/SIGTERM so that open live streams end when the server is stopped.

        The server stops gracefully only once every response has finished, and a live stream
        never finishes by itself. The handler the server installed is still called.
        """
        if self._signals_hooked or threading.current_thread() is not threading.main_thread():
            return
        self._signals_hooked = True
        loop = asyncio.get_running_loop()

        def begin_close() -> None:
            self.closing = True
            self.node.notify_changed()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(begin_close)
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:  # what would have happened without us
                    signal.signal(signum, signal.SIG_DFL)
                    signal.raise_signal(signum)

            signal.signal(sig, handler)

    def _marks(self) -> tuple[int, int, int, int]:
        with self.node.store.read() as conn:
            return q.change_marks(conn)

    async def events(self, request: Request) -> Response:
        """Server-sent events: ``change`` with the topics that changed ("messages", "links")."""
        session = self._require(request)
        token = request.cookies.get(SESSION_COOKIE, "")

        # Where to start: the id of the last event the browser saw (it resends it when it
        # reconnects), else the marks of the state the page shows, so that a change between
        # rendering the page and opening this stream is not missed.
        last = (
            _parse_marks(request.headers.get("last-event-id", ""))
            or _parse_marks(request.query_params.get("since", ""))
            or self._marks()
        )
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + STREAM_LIFETIME_S
        self._end_streams_on_shutdown()

        async def stream() -> AsyncIterator[str]:
            nonlocal last
            yield f"retry: {RECONNECT_MS}\n\n"
            while loop.time() < ends_at and not self.closing:
                # Take the event before reading the marks: a change in between sets it.
                changed = self.node._changed
                marks = self._marks()
                topics = []
                if marks[0] != last[0]:
                    topics.append("messages")
                if marks[1:3] != last[1:3]:
                    topics.append("links")
                if marks[3] != last[3]:
                    topics.append("releases")
                last = marks
                if topics:
                    mark = ".".join(str(m) for m in marks)
                    yield f"id: {mark}\nevent: change\ndata: {' '.join(topics)}\n\n"
                try:
                    await asyncio.wait_for(
                        changed.wait(), timeout=max(0.0, min(KEEPALIVE_S, ends_at - loop.time()))
                    )
                except TimeoutError:
                    if self.registry.session(token, now=datetime.now(UTC)) is None:
                        yield "event: logout\ndata: \n\n"
                        return
                    yield ": keep-alive\n\n"

        del session
        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _parse_marks(text: str) -> tuple[int, int, int, int] | None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) < 19 for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])


def _summary(view: MessageView, limit: int = 80) -> str:
    """One line about a message for the tables: the first line of its text."""
    body = view.body
    for key in ("text", "subject", "name", "narrative", "contact"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            line = value.strip().splitlines()[0]
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return view.msg_type


class _StaticFiles(StaticFiles):
    """The console's files, with ``nosniff`` and revalidation on every use (so a node upgrade
    is seen at once; unchanged files answer 304)."""

    def file_response(
        self,
        full_path: Any,
        stat_result: os.stat_result,
        scope: Any,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_console(app: FastAPI, node: Node) -> Console:
    """Add the console's routes and static files to the node's app; returns the console."""
    console = Console(node)
    for path, handler, methods in console.routes():
        app.add_route(path, console._guarded(handler), methods=methods, include_in_schema=False)
    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="console-static")
    return console


__all__ = ["Console", "mount_console"]

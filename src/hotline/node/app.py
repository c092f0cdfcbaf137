"""The node's HTTP API (FastAPI): the link endpoints peers call, and the local operator API.

Link endpoints (``/v1/...``) need no login: every envelope authenticates itself. The local API
(``/api/v1/...``) takes the bearer token from the node directory's ``api.token``. Every error is
``{"error": {"code": ..., "detail": ...}}`` with the status of its ``HotlineError`` class; an
unexpected exception is logged and answered 500 ``internal`` without its text.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hotline import __version__, transcript
from hotline.compose.priority import Priority
from hotline.core.encoding import b64decode, b64encode, decode_json
from hotline.core.envelope import (
    MAX_BATCH_BYTES,
    MAX_ENVELOPE_BYTES,
    decode_batch,
    read_header,
)
from hotline.core.recovery import MAX_REQUEST_BYTES as MAX_RECOVERY_REQUEST_BYTES
from hotline.core.recovery import claimed_requester as claimed_recovery_requester
from hotline.core.relay import claimed_sender
from hotline.errors import (
    AuthError,
    ErrorCode,
    HotlineError,
    InputError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    WireError,
)
from hotline.link import keyring
from hotline.link.mailbox import Mailbox
from hotline.link.recovery import RECOVER_PATH, SEALED_CONTENT_TYPE, STATEMENT_CONTENT_TYPE
from hotline.link.transport_http import BATCH_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE
from hotline.node.api_errors import ERROR_RESPONSES
from hotline.node.limits import OVERLOADED, RateLimiter
from hotline.node.runtime import CHAIN_SIZES_MAX_CHARS, Node, parse_chain_sizes
from hotline.operators import (
    API_TOKEN_PREFIX,
    ForbiddenError,
    Operator,
    OperatorRegistry,
    Permission,
)
from hotline.transcript import hold
from hotline.transcript.recovered import list_recovered

log = logging.getLogger(__name__)

#: Longest a client may hold a long-poll open.
MAX_WAIT_S = 60.0
#: Most messages one batch submission may queue (one transaction).
MAX_SUBMIT = 256
#: The local API's credentials, documented in the spec as a bearer security scheme.
BEARER = HTTPBearer(auto_error=False, description="The token in the node directory's api.token")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise WireError(f"body of {declared} bytes over limit {limit}", code=ErrorCode.TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WireError(f"body over limit {limit}", code=ErrorCode.TOO_LARGE)
            chunks.append(chunk)
    except ClientDisconnect as e:
        # A path that breaks mid-request (found by the chaos storm): the sender retries; this
        # is a refusal like any other, not an internal error with a traceback.
        raise WireError(
            f"the connection closed after {size} bytes of the body", code=ErrorCode.MALFORMED
        ) from e
    return b"".join(chunks)


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(max_length=64)
    priority: Priority = Priority.ROUTINE
    type: str = Field(default="free_text", max_length=64)
    body: dict[str, Any] | None = None
    text: str | None = Field(default=None, max_length=100_000)
    lang: str = Field(default="en", max_length=8)
    in_reply_to: str | None = Field(default=None, max_length=36)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a request of the operator API: an operator (by a personal token), or None for
    the node's own ``api.token``."""

    operator: Operator | None


HOST = Caller(None)


class ApiAuth:
    """Who a request of the operator API comes from: the node's own ``api.token`` (whoever
    can read the node directory: full rights), or an operator's personal token (that operator,
    within its role)."""

    def __init__(self, host_token: bytes, registry: OperatorRegistry) -> None:
        self.host_token = host_token
        self.registry = registry

    async def caller(self, credentials: HTTPAuthorizationCredentials | None) -> Caller:
        # Compared as bytes: compare_digest refuses str with non-ASCII characters (TypeError),
        # and a header may hold any Latin-1 character.
        given = credentials.credentials.encode("utf-8") if credentials is not None else b""
        if hmac.compare_digest(given, self.host_token):
            return HOST
        if credentials is not None and credentials.credentials.startswith(API_TOKEN_PREFIX):
            operator = await asyncio.to_thread(
                self.registry.api_token_operator, credentials.credentials, now=datetime.now(UTC)
            )
            if operator is not None:
                return Caller(operator)
        raise AuthError("missing or wrong API token")


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Caller:
    auth: ApiAuth = request.app.state.api_auth
    return await auth.caller(credentials)


def _allowed(permission: Permission) -> Callable[..., Awaitable[Caller]]:
    async def check(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        if caller.operator is not None and not caller.operator.can(permission):
            raise ForbiddenError(
                f"operator {caller.operator.name!r} ({caller.operator.role}) may not "
                f"{permission.value}"
            )
        return caller

    return check


# Dependencies of the operator API's routes (module-level: FastAPI resolves the routes'
# annotations in this module's namespace).
VIEWER = Depends(_allowed(Permission.VIEW))
SENDER = Depends(_allowed(Permission.SEND))
READER = Depends(_allowed(Permission.ACKNOWLEDGE))


def _send_arguments(req: SendRequest, caller: Caller) -> dict[str, Any]:
    if req.body is None and req.text is None:
        raise WireError("give 'text' or 'body'", code=ErrorCode.INVALID_INPUT)
    arguments: dict[str, Any] = {
        "to": req.to,
        "msg_type": req.type,
        "priority": req.priority.value,
        "body": req.body if req.body is not None else {"text": req.text, "lang": req.lang},
        "in_reply_to": req.in_reply_to,
    }
    if caller.operator is not None:
        arguments["author"] = caller.operator.name  # signed into the message (protocol §4.1)
    return arguments


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Who read it. With a personal token it is the token's operator (naming another is
    #: refused); with the node's ``api.token`` it is what the caller says.
    operator: str | None = Field(default=None, max_length=64)
    lang: str | None = Field(default=None, max_length=8)
    tz: str | None = Field(default=None, max_length=64)
    text_hash: str | None = Field(default=None, max_length=64)


class CosignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log: str = Field(max_length=64)
    tree_head: str = Field(max_length=64 * 1024)
    old_size: int = Field(ge=0)
    proof: list[str] = Field(max_length=64)


class _RelayDeposit(msgspec.Struct, forbid_unknown_fields=True):
    request: str
    envelopes: list[str]


class RelayPullRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: str = Field(max_length=64 * 1024)


class IdResponse(BaseModel):
    id: str


#: The error code of a status the framework answers by itself.
_FRAMEWORK_CODES = {
    400: ErrorCode.MALFORMED,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.TOO_LARGE,
}


#: Largest request body of any kind (JSON, forms, batches): FastAPI reads a JSON body whole
#: before any model's field limits apply, so this bounds the memory one request can take.
MAX_REQUEST_BYTES = MAX_BATCH_BYTES
#: Largest body on the TAXII routes: they are all GET; what the server advertises to clients
#: (``max_content_length``, 1 MiB) is the most any TAXII request may carry.
MAX_TAXII_BODY_BYTES = 1024 * 1024
#: Largest body on the console's routes (and anything else not under ``/v1`` or ``/api/v1``):
#: its biggest form, a message with a translation, is bounded by the console's own form limit.
MAX_CONSOLE_BODY_BYTES = 1024 * 1024 + 64 * 1024


class RecoveredQuery(BaseModel):
    """``GET /api/v1/recovered``: an unknown parameter is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
    peer: str | None = Field(default=None, max_length=64)


def surface(path: str) -> str:
    """Which part of the node's HTTP surface a path belongs to (its limits follow from it)."""
    if path.startswith("/v1/"):
        return "link"
    if path == "/api/v1" or path.startswith("/api/v1/"):
        return "operator"
    if path == "/taxii2" or path.startswith("/taxii2/"):  # hotline.referrals.taxii.PREFIX
        return "taxii"
    return "console"  # console pages and static files, /healthz, the OpenAPI spec and docs


#: Body limit of each surface. The link endpoints also check their own (``read_body``).
BODY_LIMITS = {
    "link": MAX_REQUEST_BYTES,
    "operator": MAX_REQUEST_BYTES,  # a batch of 256 messages
    "taxii": MAX_TAXII_BODY_BYTES,
    "console": MAX_CONSOLE_BODY_BYTES,
}


def _refusal(scope: Any, error: HotlineError) -> JSONResponse:
    log.info("%s %s -> %s", scope.get("method"), scope.get("path"), error)
    if surface(scope.get("path", "")) == "taxii":  # TAXII answers TAXII error messages
        return JSONResponse(
            {
                "title": str(error.code),
                "description": error.detail,
                "http_status": str(error.http_status),
            },
            status_code=error.http_status,
            media_type="application/taxii+json;version=2.1",
        )
    return JSONResponse({"error": error.to_dict()}, status_code=error.http_status)


class SurfaceLimits:
    """ASGI middleware: the limits of each surface (``surface``) before any route runs.

    - A request body over its surface's limit is refused (400 ``too_large``), by its declared
      length at once, else as soon as the streamed bytes pass the limit.
    - The operator API, the console and TAXII take a token from the bucket of the request's
      source address, one bucket per surface (``api_rate_limit_per_s``, ``_burst``): more get
      429 ``rate_limited`` before authentication or parsing. The link endpoints have their own
      limits, per address and per peer (``create_app``), and are not counted here.
    """

    def __init__(self, app: Any, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        overloaded = scope.get("state", {}).get(OVERLOADED)
        if overloaded is not None:  # counted by the server's protocol (node.limits)
            response = _refusal(scope, OverloadedError(overloaded))
            response.headers["retry-after"] = "1"
            # The connection over the cap is closed once answered: it gives its place back.
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        part = surface(scope.get("path", ""))
        if part != "link":
            client = scope.get("client")
            source = client[0] if client else "unknown"
            if not self.limiter.allow(f"{part} {source}", time.monotonic()):
                refused = RateLimitedError(
                    f"more than {self.limiter.per_second:g} requests/s to the {part} from {source}"
                )
                await _refusal(scope, refused)(scope, receive, send)
                return
        limit = BODY_LIMITS[part]
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                error = WireError(
                    f"body of {value[:20].decode('latin-1')} bytes over limit {limit}",
                    code=ErrorCode.TOO_LARGE,
                )
                await _refusal(scope, error)(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                # Raised inside the handler's body read: answered by the HotlineError handler.
                raise WireError(f"body over limit {limit}", code=ErrorCode.TOO_LARGE)
            return message

        await self.app(scope, limited_receive, send)


def _input_error(errors: Sequence[Any], where: tuple[str, ...] = ()) -> InputError:
    """A request's validation errors (pydantic's, FastAPI's) as our ``invalid_input``, one
    field each, named as FastAPI names them (a body field plainly, a query one ``query.x``)."""
    fields = {
        ".".join(str(p) for p in (*where, *error.get("loc", ())) if p != "body"): str(
            error.get("msg")
        )
        for error in errors
    }
    return InputError("the request is not valid", fields=fields)


ModelT = TypeVar("ModelT", bound=BaseModel)


class SendQuery(BaseModel):
    """The query of ``POST /api/v1/messages`` (bound by FastAPI and by ``HotRoutes`` alike)."""

    wait: Literal["delivered"] | None = None
    timeout: float = Field(default=10.0, ge=0, le=MAX_WAIT_S)


async def _json_body(request: Request, model: type[ModelT]) -> ModelT:
    """A JSON request body validated by ``model``, refused as FastAPI refuses it: a body of
    another media type, or not valid JSON for the model, is ``invalid_input`` (422)."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media != "application/json" and not media.endswith("+json"):
        raise InputError("the body must be JSON", fields={"": f"media type {media[:64]!r}"})
    try:
        return model.model_validate_json(await read_body(request, MAX_REQUEST_BYTES))
    except ValidationError as e:
        raise _input_error(e.errors()) from None


#: An endpoint that ``HotRoutes`` calls itself: the route's function with its dependencies run.
HotEndpoint = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """ASGI middleware, inside ``SurfaceLimits``: a request to a route on the path of every
    message (``POST /v1/envelopes``, ``POST /api/v1/messages``) goes straight to the route's
    endpoint function, its dependencies and parameters bound here by the same functions and
    models, without FastAPI's routing, dependency injection and exception middleware. Those
    cost about 0.1 ms per request in process, and more on a node whose caches the
    cryptography has just filled (docs/benchmarks.md, "Session 7"); each route is declared,
    documented and tested as any other. The surface's limits still apply (they run first), a
    ``HotlineError`` is answered by the app's own handler, and anything else reaches the app's
    handler of unexpected errors, as it would through the router.
    """

    def __init__(
        self,
        app: Any,
        routes: dict[tuple[str, str], HotEndpoint],
        on_error: Callable[[Request, HotlineError], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.routes = routes
        self.on_error = on_error

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except HotlineError as e:
            response = await self.on_error(request, e)
        await response(scope, receive, send)


def _binary_body(content_type: str, limit: int) -> dict[str, Any]:
    """OpenAPI of a raw body (a batch or an envelope): what peers send, up to ``limit`` bytes."""
    schema = {"type": "string", "format": "binary", "maxLength": limit}
    return {"requestBody": {"required": True, "content": {content_type: {"schema": schema}}}}


def _binary_reply(content_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": what, "content": {content_type: {"schema": schema}}}}


def create_app(node: Node) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(
        title="hotline node API",
        version=__version__,
        description="Link endpoints between nodes and the local operator API. "
        "See docs/protocol.md for the envelope format.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        # FastAPI's own OpenTelemetry hooks stay off: a node exports no request telemetry
        # (paths, peers' addresses, timings) to whatever provider the environment installs, and
        # every request is spared the check whether one is installed.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    token = node.home.api_token.encode("utf-8")
    config = node.home.config
    limiter = RateLimiter(config.rate_limit_per_s, config.rate_limit_burst)
    peer_limiter = RateLimiter(config.peer_rate_limit_per_s, config.peer_rate_limit_burst)

    # Dependencies are ``async def``: FastAPI runs a plain ``def`` one in a worker thread, a
    # thread hop on every request for a check that takes microseconds.
    async def limit_source(request: Request) -> None:
        """Link endpoints are open to the network: each source address gets a bounded rate."""
        source = request.client.host if request.client else "unknown"
        if not limiter.allow(source, time.monotonic()):
            raise RateLimitedError(f"more than {limiter.per_second:g} requests/s from {source}")

    def claimed_peers(envelopes: list[bytes]) -> set[str]:
        """The known peers named as senders in these routing headers (no cryptography: the
        names are only claims). Unknown names are refused before decryption anyway."""
        claimed = set()
        for data in envelopes:
            try:
                sender = read_header(data).sender
            except HotlineError:
                continue  # refused, with its security event, by the inbox
            if sender in node.peers:
                claimed.add(sender)
        return claimed

    def peek_peers(claimed: set[str], source: str) -> None:
        """Refuse at once (429) a request claiming a peer whose budget is spent; take nothing:
        only a request that proves to come from the peer is charged (``charge_peers``)."""
        now = time.monotonic()
        for peer in sorted(claimed):
            if not peer_limiter.peek(peer, now):
                log.warning(
                    "peer %s is over its rate limit (%g requests/s); refused a request from %s",
                    peer,
                    peer_limiter.per_second,
                    source,
                )
                raise RateLimitedError(
                    f"more than {peer_limiter.per_second:g} requests/s from peer {peer}"
                )

    def claimed_requester(statement: bytes) -> set[str]:
        """The registered node a relay request claims to come from (unverified), if known."""
        try:
            sender = claimed_sender(statement)
        except HotlineError:
            return set()  # refused, with its security event, by the mailbox
        return {sender} if sender in node.peers else set()

    def charge_peers(authenticated: set[str]) -> None:
        now = time.monotonic()
        for peer in authenticated:
            peer_limiter.charge(peer, now)

    @app.exception_handler(HotlineError)
    async def _hotline_error(request: Request, exc: HotlineError) -> JSONResponse:
        log.info("%s %s -> %s", request.method, request.url.path, exc)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One error shape for every refusal: FastAPI's own {"detail": [...]} becomes ours.
        return await _hotline_error(request, _input_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _framework_refusal(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # What the framework refuses before a handler runs (a body that is not JSON, an unknown
        # path or method) is answered in the same shape (found by schemathesis: it was
        # FastAPI's {"detail": ...}).
        if isinstance(exc.__cause__, HotlineError):  # e.g. SurfaceLimits, raised in a body read
            return await _hotline_error(request, exc.__cause__)
        code = _FRAMEWORK_CODES.get(exc.status_code, ErrorCode.INVALID_INPUT)
        if exc.status_code >= 500:
            code = ErrorCode.INTERNAL
        body = {"error": {"code": code.value, "detail": str(exc.detail)[:200]}}
        log.info("%s %s -> %s %s", request.method, request.url.path, exc.status_code, code)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        body = {"error": {"code": ErrorCode.INTERNAL.value, "detail": "internal error"}}
        return JSONResponse(body, status_code=500)

    registry = OperatorRegistry(node.store, issuer=f"hotline {node.name}")
    app.state.api_auth = ApiAuth(token, registry)

    def record(caller: Caller, action: str, target: str, detail: str = "") -> None:
        """Log what an operator did through the API under their name (the host token's
        callers are not persons; the action log is theirs to read, not to fill)."""
        if caller.operator is not None:
            registry.record_action(
                caller.operator.name,
                action,
                now=datetime.now(UTC),
                target=target,
                detail=detail,
                source="api",
            )

    # -- link endpoints --------------------------------------------------------------------

    @app.get("/healthz", tags=["link"])
    async def healthz() -> dict[str, str]:
        return {"name": node.name, "status": "ok", "version": __version__}

    limited = [Depends(limit_source)]

    @app.get(
        "/v1/card",
        tags=["link"],
        dependencies=limited,
        response_class=Response,
        responses={
            200: {"description": "This node's card file", "content": {"application/json": {}}}
        },
    )
    async def card() -> Response:
        data = node.home.card(datetime.now(UTC)).to_file_bytes()
        return Response(data, media_type="application/json")

    @app.post(
        "/v1/envelopes",
        tags=["link"],
        dependencies=limited,
        response_model=dict[str, Any],
        openapi_extra=_binary_body(BATCH_CONTENT_TYPE, MAX_BATCH_BYTES),
    )
    async def envelopes(request: Request) -> Response:
        """Deliver a batch of envelopes; answers receipts and a result per envelope."""
        body = await read_body(request, MAX_BATCH_BYTES)
        batch = decode_batch(body)
        source = request.client.host if request.client else "unknown"
        peek_peers(claimed_peers(batch), source)
        result = node.receive(batch, source)
        # Charged per request (a batch of up to 32 envelopes), only to peers whose envelopes
        # opened: decrypted with our key and signed by that peer.
        charge_peers(result.authenticated)
        senders = list(result.receipts)
        next_expected = result.next_expected.get(senders[0]) if len(senders) == 1 else None
        # Encoded here (msgspec), not by FastAPI: its generic encoder walks every receipt's
        # base64 string again, on the path of every message.
        reply = {
            "receipts": [b64encode(e) for s in senders for e in result.receipts[s]],
            "results": [o.to_dict() for o in result.outcomes],
            "next_expected": next_expected,
        }
        return Response(msgspec.json.encode(reply), media_type="application/json")

    @app.post(
        "/v1/heartbeat",
        tags=["link"],
        dependencies=limited,
        response_class=Response,
        responses=_binary_reply(ENVELOPE_CONTENT_TYPE, "The heartbeat sealed in answer"),
        openapi_extra=_binary_body(ENVELOPE_CONTENT_TYPE, MAX_ENVELOPE_BYTES),
    )
    async def heartbeat(request: Request) -> Response:
        body = await read_body(request, MAX_ENVELOPE_BYTES)
        source = request.client.host if request.client else "unknown"
        claimed = claimed_peers([body])
        peek_peers(claimed, source)
        reply = node.answer_heartbeat(body, source)
        # Answered: the heartbeat opened, was signed by the peer its header names, and is fresh.
        charge_peers(claimed)
        return Response(reply, media_type=ENVELOPE_CONTENT_TYPE)

    @app.post(
        RECOVER_PATH,
        tags=["transcript"],
        dependencies=limited,
        response_class=Response,
        responses=_binary_reply(
            SEALED_CONTENT_TYPE,
            "The answer: a statement signed by this node (label recovery), sealed with HPKE to "
            "the requester (docs/protocol.md §7.11)",
        ),
        openapi_extra=_binary_body(STATEMENT_CONTENT_TYPE, MAX_RECOVERY_REQUEST_BYTES),
    )
    async def transcript_recover(request: Request) -> Response:
        """A peer restored from an old backup asks for the statements of our link it lost, with
        inclusion proofs in this node's log (signed request ``recovery-request``)."""
        body = await read_body(request, MAX_RECOVERY_REQUEST_BYTES)
        source = request.client.host if request.client else "unknown"
        try:
            claimed = {claimed_recovery_requester(body)} & set(node.peers)
        except HotlineError:
            claimed = set()  # refused, with its security event, by the node
        peek_peers(claimed, source)
        reply = node.answer_recovery(body, source)
        charge_peers(claimed)  # answered: the request verified, signed by that peer
        return Response(reply, media_type=SEALED_CONTENT_TYPE)

    # -- transcript (peers and witnesses fetch heads and proofs; RFC 9162 forms) ------------

    @app.get("/v1/transcript/head", tags=["transcript"], dependencies=limited)
    async def transcript_head() -> dict[str, Any]:
        """This node's latest signed tree head (signing a fresh one if the log grew)."""
        head = node.own_head(max_age_s=0.0)
        return {"size": head.size, "root": head.root.hex(), "tree_head": b64encode(head.statement)}

    @app.get("/v1/transcript/consistency", tags=["transcript"], dependencies=limited)
    async def transcript_consistency(
        first: Annotated[int, Query(ge=0)], second: Annotated[int, Query(ge=0)]
    ) -> dict[str, Any]:
        """The consistency proof between two sizes of this node's log (RFC 9162 §2.1.4)."""
        with node.store.read() as conn:
            hold.check_proof_size(conn, max(first, second))  # a restored store: not now
            proof = transcript.consistency_proof(conn, first, second)
        return {"first": first, "second": second, "proof": [b64encode(h) for h in proof]}

    @app.get("/v1/transcript/consistency-chain", tags=["transcript"], dependencies=limited)
    async def transcript_consistency_chain(
        sizes: Annotated[str, Query(max_length=CHAIN_SIZES_MAX_CHARS)],
    ) -> dict[str, Any]:
        """Consistency proofs between consecutive sizes of a strictly increasing list (at most
        CHAIN_LIMIT sizes): how a peer proves many of this node's heads in one request."""
        chain = parse_chain_sizes(sizes)
        with node.store.read() as conn:
            proofs = [
                transcript.consistency_proof(conn, small, large)
                for small, large in itertools.pairwise(chain)
            ]
        return {"sizes": chain, "proofs": [[b64encode(h) for h in p] for p in proofs]}

    @app.get("/v1/transcript/inclusion", tags=["transcript"], dependencies=limited)
    async def transcript_inclusion(
        index: Annotated[int, Query(ge=0)], size: Annotated[int, Query(ge=1)]
    ) -> dict[str, Any]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` (RFC 9162 §2.1.3)."""
        with node.store.read() as conn:
            hold.check_proof_size(conn, size)  # a restored store: not now
            proof = transcript.inclusion_proof(conn, index, size)
        return {"index": index, "size": size, "proof": [b64encode(h) for h in proof]}

    @app.get("/v1/transcript/leaves", tags=["transcript"], dependencies=limited)
    async def transcript_leaves(ref: Annotated[str, Query(max_length=128)]) -> dict[str, Any]:
        """Where this node logged the statement of message or receipt ``ref``."""
        with node.store.read() as conn:
            leaves = transcript.leaves_by_ref(conn, ref)
        return {
            "ref": ref,
            "leaves": [
                {"index": x.index, "kind": x.kind, "leaf_hash": x.leaf_hash.hex()} for x in leaves
            ],
        }

    # -- witness (only on a node made with --role witness) ---------------------------------

    @app.post("/v1/witness/cosign", tags=["witness"], dependencies=limited)
    async def witness_cosign(req: CosignRequest) -> dict[str, str]:
        """Cosign a node's tree head that extends the last head of its log cosigned here."""
        if node.home.config.role != "witness":
            raise NotFoundError("this node is not a witness")
        signature = node.cosign(
            log=req.log,
            tree_head=b64decode(req.tree_head, what="tree head", limit=64 * 1024),
            old_size=req.old_size,
            proof=[b64decode(h, what="proof hash", size=32) for h in req.proof],
        )
        return {"cosignature": b64encode(signature.statement)}

    # -- relay (only on a node made with --role relay) -------------------------------------

    def mailbox() -> Mailbox:
        if node.mailbox is None:
            raise NotFoundError("this node is not a relay")
        return node.mailbox

    @app.post("/v1/relay/deposit", tags=["relay"], dependencies=limited)
    async def relay_deposit(request: Request) -> dict[str, int]:
        """Keep sealed envelopes for another registered node (signed ``relay-deposit``)."""
        box = mailbox()
        body = await read_body(request, MAX_BATCH_BYTES * 4 // 3 + 64 * 1024)
        req = decode_json(body, _RelayDeposit, what="relay deposit", limit=len(body) + 1)
        statement = b64decode(req.request, what="relay request", limit=64 * 1024)
        source = request.client.host if request.client else "unknown"
        claimed = claimed_requester(statement)
        peek_peers(claimed, source)
        deposited = box.deposit(
            statement,
            [b64decode(e, what="envelope", limit=MAX_ENVELOPE_BYTES) for e in req.envelopes],
            source=source,
            now=datetime.now(UTC),
        )
        charge_peers(claimed)  # the deposit verified: signed by that node
        return {"accepted": deposited.accepted, "duplicates": deposited.duplicates}

    @app.post("/v1/relay/pull", tags=["relay"], dependencies=limited)
    async def relay_pull(req: RelayPullRequest, request: Request) -> dict[str, Any]:
        """The caller's mail after its cursor (signed ``relay-pull``; long-polled)."""
        statement = b64decode(req.request, what="relay request", limit=64 * 1024)
        source = request.client.host if request.client else "unknown"
        claimed = claimed_requester(statement)
        peek_peers(claimed, source)
        envelopes, cursor = await mailbox().pull(statement, source=source, now=datetime.now(UTC))
        charge_peers(claimed)  # the pull verified: signed by that node
        return {"envelopes": [b64encode(e) for e in envelopes], "cursor": cursor}

    # -- local operator API ----------------------------------------------------------------

    @app.post("/api/v1/messages", tags=["operator"])
    async def send(
        req: SendRequest,
        caller: Annotated[Caller, SENDER],
        query: Annotated[SendQuery, Query()],
    ) -> dict[str, Any]:
        """Queue a message durably; answers its id and state (``queued``).

        With ``wait=delivered`` the call returns once the DELIVERED receipt is in (or after
        ``timeout`` seconds, with the state reached by then).
        """
        message_id = node.send_many([_send_arguments(req, caller)])[0]
        record(caller, "api_send", message_id, f"to {req.to}")
        if query.wait is None:
            return {"id": message_id, "state": "queued"}
        state = await node.wait_for_state_value(
            message_id, {"delivered", "acknowledged", "answered"}, query.timeout, unchanged=True
        )
        return {"id": message_id, "state": state.value}

    @app.post("/api/v1/messages/batch", tags=["operator"])
    async def send_batch(
        reqs: Annotated[list[SendRequest], Body(max_length=MAX_SUBMIT)],
        caller: Annotated[Caller, SENDER],
    ) -> dict[str, list[str]]:
        """Queue up to 256 messages in one durable transaction; answers their ids in order."""
        ids = node.send_many([_send_arguments(r, caller) for r in reqs])
        if ids:
            record(caller, "api_send", ids[0], f"{len(ids)} message(s)")
        return {"ids": ids}

    @app.get("/api/v1/messages/{message_id}", dependencies=[VIEWER], tags=["operator"])
    async def show(
        message_id: str,
        wait: Annotated[
            Literal["sent", "delivered", "acknowledged", "answered"] | None, Query()
        ] = None,
        timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 10.0,
    ) -> dict[str, Any]:
        """A message; with ``wait``, long-polls until it reaches that state (or later)."""
        if wait is None:
            return node.message(message_id).to_dict()
        order = ["queued", "sent", "delivered", "acknowledged", "answered"]
        targets = set(order[order.index(wait) :])
        view = await node.wait_for_state(message_id, targets, timeout)
        return view.to_dict()

    @app.post("/api/v1/messages/{message_id}/ack", tags=["operator"])
    async def ack(
        message_id: str, req: AckRequest, caller: Annotated[Caller, READER]
    ) -> IdResponse:
        """Acknowledge a received message (a person has read it): a signed ACKNOWLEDGED receipt
        goes to its sender, naming the operator."""
        operator = req.operator or "operator"
        if caller.operator is not None:
            if req.operator not in (None, caller.operator.name):
                raise ForbiddenError(
                    f"a token of {caller.operator.name!r} acknowledges in that name only"
                )
            operator = caller.operator.name
        receipt_id = node.acknowledge(
            message_id,
            operator=operator,
            lang=req.lang,
            tz=req.tz,
            text_hash=req.text_hash,
        )
        record(caller, "api_acknowledge", message_id, f"receipt {receipt_id}")
        return IdResponse(id=receipt_id)

    @app.post("/api/v1/wake", dependencies=[VIEWER], tags=["operator"])
    async def wake() -> dict[str, bool]:
        node.wake()
        node.notify_changed()
        return {"ok": True}

    @app.get("/api/v1/links", dependencies=[VIEWER], tags=["operator"])
    async def links() -> list[dict[str, Any]]:
        return node.link_report()

    @app.get("/api/v1/recovered", dependencies=[VIEWER], tags=["operator"])
    async def recovered(
        query: Annotated[RecoveredQuery, Query()], request: Request
    ) -> dict[str, Any]:
        """Statements of a link lost by a restore and fetched back from the peer, each verified
        (its author's signature, its inclusion in the peer's log); evidence only, never in this
        node's transcript (docs/operations.md, "Restore"). ``direction`` "in": the peer's to us;
        "out": ours to the peer."""
        if len(request.query_params.getlist("peer")) > 1:
            raise InputError("name one peer at most", fields={"peer": "repeated"})
        with node.store.read() as conn:
            rows = list_recovered(conn, query.peer, compromised=keyring.compromise_times(conn))
            state = hold.current(conn)
        return {
            "hold": None if state is None else {"reason": state.reason, "detail": state.detail},
            "recovered": [r.to_dict() for r in rows],
        }

    async def hot_envelopes(request: Request) -> Response:
        await limit_source(request)  # the route's dependency (``limited``)
        return await envelopes(request)

    may_send = _allowed(Permission.SEND)

    async def hot_send(request: Request) -> Response:
        # The route's dependencies (SENDER) and parameters, bound as FastAPI binds them.
        caller = await may_send(await _caller(request, await BEARER(request)))
        query: SendQuery | None = None
        refused: dict[str, object] = {}
        try:
            query = SendQuery.model_validate(dict(request.query_params))
        except ValidationError as e:
            refused = _input_error(e.errors(), ("query",)).fields
        try:
            req = await _json_body(request, SendRequest)
        except InputError as e:
            e.fields = {**refused, **e.fields}  # every field named at once, as FastAPI does
            raise
        if query is None:
            raise InputError("the request is not valid", fields=refused)
        reply = await send(req, caller, query)
        return Response(msgspec.json.encode(reply), media_type="application/json")

    # -- mounted sub-applications (each adds its own routes; one line per part) -------------
    _mount_parts(app, node)
    # Added before SurfaceLimits, so inside it: the surface's limits run first.
    app.add_middleware(
        HotRoutes,
        routes={("POST", "/v1/envelopes"): hot_envelopes, ("POST", "/api/v1/messages"): hot_send},
        on_error=_hotline_error,
    )
    app.add_middleware(
        SurfaceLimits,
        limiter=RateLimiter(config.api_rate_limit_per_s, config.api_rate_limit_burst),
    )
    return app


def _mount_parts(app: FastAPI, node: Node) -> None:
    """Routes of the other parts of a node (TAXII server, console), each mounted by one line."""
    from hotline.referrals.taxii import mount as mount_taxii

    mount_taxii(app, node)
    from hotline.web import mount_console

    mount_console(app, node)
    del app, node

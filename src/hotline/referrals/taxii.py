"""TAXII 2.1 server of a node: referrals as read-only collections, behind HTTP Basic auth.

Served at ``/taxii2/`` on the node's own address (OASIS TAXII 2.1, sections 4-5):

    GET /taxii2/                                              discovery
    GET /taxii2/hotline/                                      the one API root
    GET /taxii2/hotline/collections/                          two per peer: received, sent
    GET /taxii2/hotline/collections/{id}/
    GET /taxii2/hotline/collections/{id}/objects/             an envelope; limit, next,
                                                              added_after, match[id|type|
                                                              version|spec_version]
    GET /taxii2/hotline/collections/{id}/objects/{oid}/       one object's versions (envelope)
    GET /taxii2/hotline/collections/{id}/objects/{oid}/versions/
    GET /taxii2/hotline/collections/{id}/manifest/

Every response is ``application/taxii+json;version=2.1``; errors use TAXII's error message
shape. Collections are read-only (``can_write`` false: writes answer 403). TLP:RED referrals
are never stored for TAXII (see ``cases``), so no account can pull them.

Accounts (``hotline taxii user add``) keep an Argon2id hash. Verifying Argon2 costs tens of
milliseconds by design, which would dominate a client paging through a collection, so a
successful check is remembered in memory as an HMAC of (name, stored hash, password) under a
per-process random key; changing or removing an account changes the stored hash and with it
the cache key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import Connection, delete, insert, select

from hotline.core.card import check_name
from hotline.core.encoding import to_us
from hotline.errors import AuthError, HotlineError, InputError, NotFoundError
from hotline.referrals._schema import taxii_users
from hotline.referrals.collections import (
    MAX_PAGE,
    Collection,
    Page,
    collections_for,
    decode_next,
    format_timestamp,
    make_filters,
    read_page,
)
from hotline.store import Store

log = logging.getLogger(__name__)

TAXII_MEDIA_TYPE: Final = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE: Final = "application/stix+json;version=2.1"
PREFIX: Final = "/taxii2"
API_ROOT: Final = "hotline"
#: Largest request body the API root admits (all collections are read-only, so any POST is
#: refused; this is what discovery advertises).
MAX_CONTENT_LENGTH: Final = 1024 * 1024
#: Longest password accepted (Argon2 would hash more, but nobody types more).
MAX_PASSWORD_CHARS: Final = 1024
MIN_PASSWORD_CHARS: Final = 12
#: Remembered successful logins per process (bounded; cleared when full).
MAX_AUTH_CACHE: Final = 4096
#: Longest Authorization header read.
MAX_AUTH_HEADER: Final = 4096


# -- accounts --------------------------------------------------------------------------------


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def add_user(conn: Connection, name: str, password: str, now: datetime) -> None:
    """Create or replace the TAXII account ``name``."""
    check_name(name)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InputError(
            f"a TAXII password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters",
            fields={"password": "wrong length"},
        )
    hashed = _hasher().hash(password)
    conn.execute(delete(taxii_users).where(taxii_users.c.name == name))
    conn.execute(
        insert(taxii_users).values(name=name, password_hash=hashed, created_at_us=to_us(now))
    )


def remove_user(conn: Connection, name: str) -> None:
    if conn.execute(delete(taxii_users).where(taxii_users.c.name == name)).rowcount == 0:
        raise NotFoundError(f"no TAXII account {name!r}")


def list_users(conn: Connection) -> list[tuple[str, int]]:
    rows = conn.execute(
        select(taxii_users.c.name, taxii_users.c.created_at_us).order_by(taxii_users.c.name)
    )
    return [(r.name, r.created_at_us) for r in rows]


class _Verifier:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, conn: Connection, name: str, password: str) -> bool:
        row = conn.execute(
            select(taxii_users.c.password_hash).where(taxii_users.c.name == name)
        ).first()
        if row is None or len(password) > MAX_PASSWORD_CHARS:
            return False
        stored: str = row.password_hash
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (name, stored, password):
            data = part.encode()
            mac.update(len(data).to_bytes(4, "big") + data)
        token = mac.digest()
        with self._lock:
            if token in self._ok:
                return True
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            _hasher().verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        with self._lock:
            if len(self._ok) >= MAX_AUTH_CACHE:
                self._ok.clear()
            self._ok.add(token)
        return True


def _credentials(header: str | None) -> tuple[str, str] | None:
    if header is None or len(header) > MAX_AUTH_HEADER:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


# -- responses -------------------------------------------------------------------------------


def _taxii(
    body: str | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return Response(text, status_code=status, media_type=TAXII_MEDIA_TYPE, headers=headers)


def _error(
    status: int, title: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    return _taxii(
        {"title": title, "description": description, "http_status": str(status)},
        status,
        headers,
    )


class TaxiiError(BaseModel):
    """TAXII 2.1's error message (section 3.6.1), as every TAXII refusal is answered."""

    title: str
    description: str
    http_status: str


class TaxiiResponse(Response):
    """What every TAXII route answers (the class names the media type in the OpenAPI spec)."""

    media_type = TAXII_MEDIA_TYPE


def _node_error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


#: TAXII answers its own error messages; a request the node's framework refuses before TAXII
#: sees it (422), or an unexpected failure (500), gets the node's error shape (docs/errors.md).
TAXII_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": TaxiiError, "description": "Refused (TAXII error message)"},
    "5XX": {"model": TaxiiError, "description": "The node failed (TAXII error message)"},
    422: _node_error("The request is not valid"),
    500: _node_error("Internal error"),
}


def _acceptable(accept: str | None) -> bool:
    if not accept:
        return True
    for part in accept.split(","):
        media = part.strip().split(";")[0].strip().lower()
        if media in ("*/*", "application/*", "application/taxii+json"):
            version = [p.strip() for p in part.split(";")[1:] if p.strip().startswith("version")]
            if not version or version[0].replace(" ", "") == "version=2.1":
                return True
    return False


def _collection_json(c: Collection) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "description": f"STIX 2.1 objects of cyber referrals {c.direction.value} "
        f"({'from' if c.direction.value == 'received' else 'to'} {c.peer}); read-only.",
        "can_read": True,
        "can_write": False,
        "media_types": [STIX_MEDIA_TYPE],
    }


def _envelope(page: Page) -> tuple[str, dict[str, str]]:
    parts = ['{"more":', "true" if page.more else "false"]
    if page.next is not None:
        parts.append(f',"next":{json.dumps(page.next)}')
    if page.rows:
        parts.append(',"objects":[')
        parts.append(",".join(r.object or "null" for r in page.rows))
        parts.append("]")
    parts.append("}")
    return "".join(parts), _date_headers(page)


def _date_headers(page: Page) -> dict[str, str]:
    if not page.rows:
        return {}
    return {
        "X-TAXII-Date-Added-First": format_timestamp(page.rows[0].added_us),
        "X-TAXII-Date-Added-Last": format_timestamp(page.rows[-1].added_us),
    }


# -- the router ------------------------------------------------------------------------------

Match = Annotated[str | None, Query(max_length=8192)]


def make_router(store: Store, peers: Callable[[], Iterable[str]]) -> APIRouter:
    """The TAXII routes over ``store``; ``peers`` names the peers (one pair of collections each)."""
    verifier = _Verifier()
    router = APIRouter(
        prefix=PREFIX,
        tags=["taxii"],
        responses=TAXII_ERROR_RESPONSES,
        default_response_class=TaxiiResponse,
    )

    def guarded(request: Request, work: Callable[[Connection], Response]) -> Response:
        if not _acceptable(request.headers.get("accept")):
            return _error(406, "Not Acceptable", f"this server answers {TAXII_MEDIA_TYPE}")
        credentials = _credentials(request.headers.get("authorization"))
        try:
            with store.read() as conn:
                if credentials is None or not verifier.check(conn, *credentials):
                    raise AuthError("TAXII needs a valid account (HTTP Basic)")
                return work(conn)
        except AuthError as e:
            return _error(
                401,
                "Unauthorized",
                e.detail,
                {"WWW-Authenticate": 'Basic realm="hotline TAXII", charset="UTF-8"'},
            )
        except NotFoundError as e:
            return _error(404, "Not Found", e.detail)
        except InputError as e:
            return _error(400, "Bad Request", e.detail)
        except HotlineError as e:
            log.warning("TAXII %s: %s", request.url.path, e)
            return _error(e.http_status, str(e.code), e.detail)

    def collection(cid: str) -> Collection:
        for c in collections_for(peers()):
            if c.id == cid:
                return c
        raise NotFoundError(f"no collection {cid[:64]!r}")

    @router.get("/")
    def discovery(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")

        def work(_: Connection) -> Response:
            return _taxii(
                {
                    "title": "hotline cyber referrals",
                    "description": "Referrals exchanged over this hotline node, as STIX 2.1.",
                    "default": f"{base}{PREFIX}/{API_ROOT}/",
                    "api_roots": [f"{base}{PREFIX}/{API_ROOT}/"],
                }
            )

        return guarded(request, work)

    @router.get(f"/{API_ROOT}/")
    def api_root(request: Request) -> Response:
        return guarded(
            request,
            lambda _: _taxii(
                {
                    "title": "hotline referrals",
                    "description": "One read-only collection per peer and direction.",
                    "versions": [TAXII_MEDIA_TYPE],
                    "max_content_length": MAX_CONTENT_LENGTH,
                }
            ),
        )

    @router.get(f"/{API_ROOT}/collections/")
    def collections(request: Request) -> Response:
        return guarded(
            request,
            lambda _: _taxii(
                {"collections": [_collection_json(c) for c in collections_for(peers())]}
            ),
        )

    @router.get(f"/{API_ROOT}/collections/{{cid}}/")
    def one_collection(request: Request, cid: str) -> Response:
        return guarded(request, lambda _: _taxii(_collection_json(collection(cid))))

    def _page(
        conn: Connection,
        cid: str,
        *,
        limit: int,
        next_: str | None,
        added_after: str | None,
        match_id: str | None,
        match_type: str | None,
        match_version: str | None,
        match_spec_version: str | None,
        with_objects: bool,
    ) -> Page:
        c = collection(cid)
        filters = make_filters(
            added_after=added_after,
            match_id=match_id,
            match_type=match_type,
            match_version=match_version,
            match_spec_version=match_spec_version,
        )
        after = decode_next(next_) if next_ else None
        return read_page(conn, c.id, filters, limit=limit, after=after, with_objects=with_objects)

    @router.get(f"/{API_ROOT}/collections/{{cid}}/objects/")
    def objects(
        request: Request,
        cid: str,
        limit: Annotated[int, Query(ge=1)] = MAX_PAGE,
        next_: Annotated[str | None, Query(alias="next", max_length=64)] = None,
        added_after: Annotated[str | None, Query(max_length=64)] = None,
        match_id: Annotated[Match, Query(alias="match[id]")] = None,
        match_type: Annotated[Match, Query(alias="match[type]")] = None,
        match_version: Annotated[Match, Query(alias="match[version]")] = None,
        match_spec_version: Annotated[Match, Query(alias="match[spec_version]")] = None,
    ) -> Response:
        def work(conn: Connection) -> Response:
            page = _page(
                conn,
                cid,
                limit=limit,
                next_=next_,
                added_after=added_after,
                match_id=match_id,
                match_type=match_type,
                match_version=match_version,
                match_spec_version=match_spec_version,
                with_objects=True,
            )
            body, headers = _envelope(page)
            return _taxii(body, headers=headers)

        return guarded(request, work)

    @router.get(f"/{API_ROOT}/collections/{{cid}}/objects/{{oid}}/")
    def one_object(
        request: Request,
        cid: str,
        oid: str,
        limit: Annotated[int, Query(ge=1)] = MAX_PAGE,
        next_: Annotated[str | None, Query(alias="next", max_length=64)] = None,
        added_after: Annotated[str | None, Query(max_length=64)] = None,
        match_version: Annotated[Match, Query(alias="match[version]")] = None,
        match_spec_version: Annotated[Match, Query(alias="match[spec_version]")] = None,
    ) -> Response:
        def work(conn: Connection) -> Response:
            page = _page(
                conn,
                cid,
                limit=limit,
                next_=next_,
                added_after=added_after,
                match_id=oid[:128],
                match_type=None,
                match_version=match_version,
                match_spec_version=match_spec_version,
                with_objects=True,
            )
            if not page.rows and next_ is None:
                raise NotFoundError(f"no object {oid[:128]!r} in this collection")
            body, headers = _envelope(page)
            return _taxii(body, headers=headers)

        return guarded(request, work)

    @router.get(f"/{API_ROOT}/collections/{{cid}}/objects/{{oid}}/versions/")
    def versions(
        request: Request,
        cid: str,
        oid: str,
        limit: Annotated[int, Query(ge=1)] = MAX_PAGE,
        next_: Annotated[str | None, Query(alias="next", max_length=64)] = None,
        added_after: Annotated[str | None, Query(max_length=64)] = None,
        match_spec_version: Annotated[Match, Query(alias="match[spec_version]")] = None,
    ) -> Response:
        def work(conn: Connection) -> Response:
            page = _page(
                conn,
                cid,
                limit=limit,
                next_=next_,
                added_after=added_after,
                match_id=oid[:128],
                match_type=None,
                match_version="all",
                match_spec_version=match_spec_version,
                with_objects=False,
            )
            if not page.rows and next_ is None:
                raise NotFoundError(f"no object {oid[:128]!r} in this collection")
            body: dict[str, Any] = {"more": page.more}
            if page.next is not None:
                body["next"] = page.next
            body["versions"] = [r.version or format_timestamp(r.added_us) for r in page.rows]
            return _taxii(body, headers=_date_headers(page))

        return guarded(request, work)

    @router.get(f"/{API_ROOT}/collections/{{cid}}/manifest/")
    def manifest(
        request: Request,
        cid: str,
        limit: Annotated[int, Query(ge=1)] = MAX_PAGE,
        next_: Annotated[str | None, Query(alias="next", max_length=64)] = None,
        added_after: Annotated[str | None, Query(max_length=64)] = None,
        match_id: Annotated[Match, Query(alias="match[id]")] = None,
        match_type: Annotated[Match, Query(alias="match[type]")] = None,
        match_version: Annotated[Match, Query(alias="match[version]")] = None,
        match_spec_version: Annotated[Match, Query(alias="match[spec_version]")] = None,
    ) -> Response:
        def work(conn: Connection) -> Response:
            page = _page(
                conn,
                cid,
                limit=limit,
                next_=next_,
                added_after=added_after,
                match_id=match_id,
                match_type=match_type,
                match_version=match_version,
                match_spec_version=match_spec_version,
                with_objects=False,
            )
            body: dict[str, Any] = {"more": page.more}
            if page.next is not None:
                body["next"] = page.next
            if page.rows:
                body["objects"] = [
                    {
                        "id": r.stix_id,
                        "date_added": format_timestamp(r.added_us),
                        "version": r.version or format_timestamp(r.added_us),
                        "media_type": STIX_MEDIA_TYPE,
                    }
                    for r in page.rows
                ]
            return _taxii(body, headers=_date_headers(page))

        return guarded(request, work)

    def write_refused(request: Request, cid: str) -> Response:
        def work(_: Connection) -> Response:
            collection(cid)
            return _error(403, "Forbidden", "referral collections are read-only")

        return guarded(request, work)

    for method in ("POST", "PUT", "DELETE"):  # one route each: one OpenAPI operation id each
        router.add_api_route(
            f"/{API_ROOT}/collections/{{cid}}/objects/",
            write_refused,
            methods=[method],
            name=f"write_refused_{method.lower()}",
        )

    @router.get(f"/{API_ROOT}/status/{{sid}}/")
    def status(request: Request, sid: str) -> Response:
        def work(_: Connection) -> Response:
            raise NotFoundError("this server accepts no writes, so it has no status resources")

        return guarded(request, work)

    return router


def mount(app: FastAPI, node: Any) -> None:
    """Serve TAXII on a running node's app (``node``: ``hotline.node.runtime.Node``).

    Applies any referral messages the inbox hook has not yet seen (``cases.catch_up``) first,
    and loads the STIX validator's schemas in the background.
    """
    from hotline.referrals.cases import catch_up

    store: Store = node.store
    with store.write() as conn:
        caught = catch_up(conn)
    if caught:
        log.info("referrals: applied %d message(s) to cases at start-up", caught)
    app.include_router(make_router(store, lambda: list(node.peers)))
    threading.Thread(
        target=_warm_up, args=(store,), name="stix-validator-warm-up", daemon=True
    ).start()


def _warm_up(store: Store) -> None:
    """Load the validator's schemas, then validate received referrals left pending (a node
    stopped between a referral's commit and its validation)."""
    from hotline.referrals.cases import validate_pending
    from hotline.referrals.stix import warm_up

    try:
        warm_up()
    except HotlineError as e:  # pragma: no cover - the built-in marking always validates
        log.warning("STIX validator warm-up failed: %s", e)
    try:
        validated = validate_pending(store)
    except Exception:  # the store closed under us (a node stopped at once): next start
        log.exception("validating pending referrals at start-up")
        return
    if validated:
        log.info("referrals: validated %d pending bundle(s) at start-up", validated)


__all__ = [
    "API_ROOT",
    "MAX_CONTENT_LENGTH",
    "PREFIX",
    "STIX_MEDIA_TYPE",
    "TAXII_MEDIA_TYPE",
    "add_user",
    "list_users",
    "make_router",
    "mount",
    "remove_user",
]

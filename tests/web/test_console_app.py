"""The console in-process (no browser): login, CSRF, CSP, roles, compose validation, i18n."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher
from console_helpers import PASSWORD, integration

from hotline.node.app import create_app
from hotline.node.runtime import Node
from hotline.operators import OperatorRegistry
from hotline.store.messages import list_messages
from hotline.web._i18n import UI
from hotline.web._security import LOGIN_COOKIE, SESSION_COOKIE

TEMPLATES = Path(__file__).parents[2] / "src/hotline/web/templates"
STATIC = Path(__file__).parents[2] / "src/hotline/web/static"


class SyncClient:
    """httpx's ASGI transport driven from synchronous tests, on one event loop."""

    def __init__(self, app: object) -> None:
        self.loop = asyncio.new_event_loop()
        # https: the console's cookies are Secure, and httpx honours that.
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="https://testserver",
        )
        self.cookies = self.client.cookies

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        kw.setdefault("follow_redirects", True)
        return self.loop.run_until_complete(self.client.request(method, url, **kw))

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


class Console:
    def __init__(self, client: SyncClient, secrets: dict[str, str]) -> None:
        self.client = client
        self.secrets = secrets
        self.steps: dict[str, int] = {}
        self.homes: dict[str, Any] = {}

    def code(self, name: str) -> str:
        # Each login spends a 30-second step; take the next one (the window allows +1).
        offset = self.steps.get(name, 0)
        self.steps[name] = offset + 1
        return pyotp.TOTP(self.secrets[name]).at(datetime.now(UTC).timestamp() + 30 * offset)

    def login_csrf(self) -> str:
        page = self.client.get("/login")
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    def login(self, name: str, code: str | None = None, password: str = PASSWORD) -> int:
        token = self.login_csrf()
        response = self.client.post(
            "/login",
            data={
                "csrf": token,
                "username": name,
                "password": password,
                "totp": code or self.code(name),
            },
            follow_redirects=False,
        )
        return response.status_code

    def csrf(self) -> str:
        page = self.client.get("/inbox")
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[Console, Node]]:
    homes = integration.make_linked_homes(tmp_path, ["washington", "moscow"])
    home = homes["washington"]
    registry = OperatorRegistry(
        home.store, issuer="t", hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    now = datetime.now(UTC)
    secrets = {
        name: registry.add(name, role, PASSWORD, now=now).totp_secret
        for name, role in [("alice", "operator"), ("audrey", "auditor"), ("rita", "releaser")]
    }
    node = Node(home)
    client = SyncClient(create_app(node))
    try:
        console = Console(client, secrets)
        console.homes = homes
        yield console, node
    finally:
        client.close()
    for h in homes.values():
        h.close()


def test_pages_need_a_login(console: tuple[Console, Node]) -> None:
    c, _ = console
    for path in ["/", "/links", "/inbox", "/outbox", "/compose"]:
        response = c.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", path
    live = c.client.get("/inbox/live", headers={"hx-request": "true"}, follow_redirects=False)
    assert live.status_code == 401 and live.headers["hx-redirect"] == "/login"
    assert c.client.get("/events", follow_redirects=False).status_code == 303


def test_login_sets_a_strict_session_cookie(console: tuple[Console, Node]) -> None:
    c, _ = console
    token = c.login_csrf()
    response = c.client.post(
        "/login",
        data={"csrf": token, "username": "alice", "password": PASSWORD, "totp": c.code("alice")},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/inbox"
    cookie = next(
        v for v in response.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE)
    )
    assert {"HttpOnly", "Secure", "Path=/", "SameSite=strict"} <= {
        p.strip() for p in cookie.split(";")
    }
    page = c.client.get("/inbox")
    assert page.status_code == 200 and 'id="operator-name">alice<' in page.text


def test_wrong_totp_or_password_is_refused(console: tuple[Console, Node]) -> None:
    c, _ = console
    assert c.login("alice", code="000000") == 401
    assert c.login("alice", password="not the password") == 401
    c.secrets["nobody"] = pyotp.random_base32()
    assert c.login("nobody") == 401
    page = c.client.get("/inbox", follow_redirects=False)
    assert page.status_code == 303


def test_login_without_its_csrf_cookie_is_refused(console: tuple[Console, Node]) -> None:
    c, _ = console
    token = c.login_csrf()
    c.client.cookies.delete(LOGIN_COOKIE)
    response = c.client.post(
        "/login",
        data={"csrf": token, "username": "alice", "password": PASSWORD, "totp": c.code("alice")},
    )
    assert response.status_code == 403 and 'id="error-code">csrf_failed<' in response.text


def test_a_form_without_a_csrf_token_is_refused(console: tuple[Console, Node]) -> None:
    c, node = console
    assert c.login("alice") == 303
    form = {
        "type": "free_text",
        "to": "moscow",
        "priority": "flash",
        "f_text": "hi",
        "f_lang": "en",
    }
    response = c.client.post("/compose", data=form)
    assert response.status_code == 403 and 'id="error-code">csrf_failed<' in response.text
    wrong = c.client.post("/compose", data={**form, "csrf": "x" * 43})
    assert wrong.status_code == 403
    cross = c.client.post(
        "/compose", data={**form, "csrf": c.csrf()}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    with node.store.read() as conn:
        assert list_messages(conn, node.name, direction="out") == []


def test_compose_validates_sends_and_logs_the_operator(console: tuple[Console, Node]) -> None:
    c, node = console
    assert c.login("alice") == 303
    csrf = c.csrf()
    bad = c.client.post(
        "/compose/preview",
        data={"csrf": csrf, "type": "incident_report", "f_narrative": "x", "f_position": "[1,"},
    )
    assert bad.status_code == 200
    assert "position" in bad.text and "not valid JSON" in bad.text
    missing = c.client.post("/compose/preview", data={"csrf": csrf, "type": "incident_report"})
    assert "occurred_at" in missing.text and "Field required" in missing.text
    good = c.client.post(
        "/compose/preview",
        data={"csrf": csrf, "type": "free_text", "f_text": "Test <b>", "f_lang": "en"},
    )
    assert 'id="preview-en"' in good.text and 'id="preview-ru"' in good.text
    assert "Test &lt;b&gt;" in good.text
    no_recipient = c.client.post(
        "/compose", data={"csrf": csrf, "type": "free_text", "f_text": "hi", "f_lang": "en"}
    )
    assert no_recipient.status_code == 422
    sent = c.client.post(
        "/compose",
        data={
            "csrf": csrf,
            "type": "free_text",
            "to": "moscow",
            "priority": "immediate",
            "f_text": "Hello",
            "f_lang": "en",
        },
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"].startswith("/outbox?sent=")
    with node.store.read() as conn:
        (view,) = list_messages(conn, node.name, direction="out")
    assert (view.priority, view.body) == ("immediate", {"text": "Hello", "lang": "en"})
    actions = OperatorRegistry(node.store, issuer="t").actions(limit=5, operator="alice")
    assert any(a.action == "send" and view.id in a.target for a in actions)
    outbox = c.client.get("/outbox")
    assert view.id in outbox.text


def test_an_auditor_cannot_send(console: tuple[Console, Node]) -> None:
    c, _ = console
    assert c.login("audrey") == 303
    assert c.client.get("/compose").status_code == 403
    response = c.client.post(
        "/compose", data={"csrf": c.csrf(), "type": "free_text", "to": "moscow", "f_text": "x"}
    )
    assert response.status_code == 403 and 'id="error-code">forbidden<' in response.text


def test_language_switch_is_per_operator(console: tuple[Console, Node]) -> None:
    c, _ = console
    assert c.login("alice") == 303
    response = c.client.post(
        "/settings/lang", data={"csrf": c.csrf(), "lang": "ru", "next": "/links"}
    )
    assert response.status_code == 200 and "Линии связи" in response.text
    assert 'lang="ru"' in response.text
    evil = c.client.post(
        "/settings/lang",
        data={"csrf": c.csrf(), "lang": "en", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/inbox"


def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(
    console: tuple[Console, Node],
) -> None:
    c, _ = console
    login = c.client.get("/login")
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert "unsafe" not in login.headers["content-security-policy"]
    assert c.login("alice") == 303
    for path in [
        "/links",
        "/inbox",
        "/outbox",
        "/compose",
        "/releases",
        "/map",
        "/audit",
        "/cases",
        *[
            f"/compose?type={t}"
            for t in ("activity_notification", "exercise_notification", "cyber_referral")
        ],
    ]:
        page = c.client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-security-policy"] == login.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert not re.search(r"\sstyle=|<style|\son[a-z]+=", page.text), path


def test_templates_use_only_known_words_in_both_languages() -> None:
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""t\(["']([a-z_0-9]+)["']\)""", template.read_text()))
    assert used - set(UI) == set()
    for key, (en, ru) in UI.items():
        assert en.strip() and ru.strip(), key


def test_static_files_have_no_inline_handlers_and_vendor_files_are_listed() -> None:
    from hotline.web.vendor import FILES, missing_files

    assert "htmx.min.js" in FILES and "countries-110m.json" in FILES
    # make install copies them; a checkout without it still passes the rest of the suite.
    missing = missing_files()
    if missing:
        pytest.skip(f"console assets not copied yet (make install): {missing[:3]}")
    versions = json.loads((STATIC / "vendor" / "MANIFEST.json").read_text())
    assert versions["htmx.org"].startswith("2.")  # htmx's "latest" is a new major: pinned 2.x
    assert versions["leaflet"] == "1.9.4" and versions["world-atlas"] == "2.0.2"


def test_flash_waits_for_a_second_person(console: tuple[Console, Node]) -> None:
    c, node = console
    assert c.login("alice") == 303
    form = {
        "csrf": c.csrf(),
        "type": "free_text",
        "to": "moscow",
        "priority": "flash",
        "f_text": "Launch detected",
        "f_lang": "en",
    }
    submitted = c.client.post("/compose", data=form, follow_redirects=False)
    assert submitted.status_code == 303 and submitted.headers["location"].startswith("/releases")
    with node.store.read() as conn:
        assert list_messages(conn, node.name, direction="out") == []
    page = c.client.get("/releases")
    request_id = re.search(r'data-release-id="([0-9a-f-]{36})"', page.text).group(1)  # type: ignore[union-attr]
    assert "Launch detected" in page.text and "a second person must release it" in page.text
    # alice has no approve button, and a forged approval is refused.
    assert f"/releases/{request_id}/approve" not in page.text
    forged = c.client.post(f"/releases/{request_id}/approve", data={"csrf": c.csrf()})
    assert forged.status_code == 403
    c.client.post("/logout", data={"csrf": c.csrf()})
    assert c.login("rita") == 303
    page = c.client.get("/releases")
    assert f"/releases/{request_id}/approve" in page.text
    released = c.client.post(
        f"/releases/{request_id}/approve", data={"csrf": c.csrf()}, follow_redirects=False
    )
    assert released.status_code == 303, released.text[-1500:]
    with node.store.read() as conn:
        (view,) = list_messages(conn, node.name, direction="out")
    assert view.priority == "flash" and view.body["text"] == "Launch detected"
    actions = [(a.operator, a.action) for a in OperatorRegistry(node.store, issuer="t").actions()]
    assert ("alice", "submit_for_release") in actions and ("rita", "release") in actions


def test_audit_page_and_bundle_export_for_auditors(console: tuple[Console, Node]) -> None:
    c, _ = console
    assert c.login("alice") == 303
    page = c.client.get("/audit")
    assert page.status_code == 200 and 'id="own-log"' in page.text
    assert 'id="export-form"' not in page.text  # an operator may read, not export
    refused = c.client.post("/audit/export", data={"csrf": c.csrf(), "peer": "moscow"})
    assert refused.status_code == 403
    c.client.post("/logout", data={"csrf": c.csrf()})
    assert c.login("audrey") == 303
    page = c.client.get("/audit")
    assert 'id="export-form"' in page.text and "login" in page.text  # the action log
    bundle = c.client.post("/audit/export", data={"csrf": c.csrf(), "peer": "moscow"})
    assert bundle.status_code == 200, bundle.text[:500]
    assert bundle.headers["content-disposition"].startswith('attachment; filename="hotline-audit-')
    from hotline.transcript.bundle import verify_bundle

    report = verify_bundle(bundle.content)
    assert report.link == ("washington", "moscow")


def _sample_bundle() -> dict[str, Any]:
    path = Path(__file__).parents[1] / "referrals" / "referral_helpers.py"
    spec = importlib.util.spec_from_file_location("hotline_referral_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bundle: dict[str, Any] = module.sample_bundle()
    return bundle


def test_a_referral_composed_in_the_console_opens_a_case(console: tuple[Console, Node]) -> None:
    c, _ = console
    assert c.login("alice") == 303
    deadline = (datetime.now(UTC) + timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%SZ")
    form = {
        "csrf": c.csrf(),
        "type": "cyber_referral",
        "to": "moscow",
        "priority": "immediate",
        "f_stix_bundle": json.dumps(_sample_bundle()),
        "f_narrative": "Scanning of a power-grid operator since 18 November.",
        "f_requested_actions": ["takedown", "preserve_evidence"],
        "f_response_deadline": deadline,
        "f_tlp": "amber",
    }
    sent = c.client.post("/compose", data=form, follow_redirects=False)
    assert sent.status_code == 303, sent.text[-2000:]
    page = c.client.get("/cases")
    assert page.status_code == 200
    assert "moscow" in page.text and "Scanning of a power-grid operator" in page.text
    assert 'class="countdown"' in page.text


def test_an_operator_attaches_a_translation_shown_as_text(console: tuple[Console, Node]) -> None:
    c, node = console
    assert c.login("alice") == 303
    message_id = node.send(
        to="moscow", msg_type="free_text", priority="routine", body={"text": "Hi", "lang": "en"}
    )
    page = c.client.get(f"/messages/{message_id}")
    assert 'id="attach-translation"' in page.text
    form = {"csrf": c.csrf(), "lang": "ru", "text": "Привет <script>x</script>"}
    done = c.client.post(f"/messages/{message_id}/translation", data=form)
    assert done.status_code == 200
    assert "Привет &lt;script&gt;x&lt;/script&gt;" in done.text
    assert "<b>ru</b> by alice" in done.text
    empty = c.client.post(
        f"/messages/{message_id}/translation", data={**form, "csrf": c.csrf(), "text": " "}
    )
    assert empty.status_code == 422
    c.client.post("/logout", data={"csrf": c.csrf()})
    assert c.login("audrey") == 303  # an auditor reads translations but cannot attach one
    page = c.client.get(f"/messages/{message_id}")
    assert "Привет" in page.text and 'id="attach-translation"' not in page.text


def test_an_equivocation_alarm_raises_the_red_banner(console: tuple[Console, Node]) -> None:
    from hotline.transcript.heads import raise_equivocation

    c, node = console
    assert c.login("alice") == 303
    assert 'id="alarm-banner"' not in c.client.get("/links").text
    with node.store.write() as conn:
        raise_equivocation(conn, peer="moscow", now_us=1, detail="two roots <b>for</b> size 7")
    page = c.client.get("/links")
    assert 'id="alarm-banner"' in page.text and "equivocation" in page.text
    assert "two roots &lt;b&gt;for&lt;/b&gt; size 7" in page.text


def test_every_compose_field_has_a_label_in_both_languages() -> None:
    from hotline.web._compose import COMPOSABLE, form_fields
    from hotline.web._i18n import FIELDS

    names = {f.name for t in COMPOSABLE for f in form_fields(t)}
    missing = sorted(names - set(FIELDS))
    assert not missing, f"add English and Russian labels to hotline.web._i18n.FIELDS: {missing}"
    assert all(en.strip() and ru.strip() for en, ru in FIELDS.values())


def test_acknowledging_signs_operator_language_and_hash_of_the_text_shown(
    console: tuple[Console, Node],
) -> None:
    from hotline.compose import render, text_hash
    from hotline.link import outbox
    from hotline.store.messages import pending_outgoing

    c, node = console
    moscow = c.homes["moscow"]
    body = {"text": "Unannounced launch at 03:12 UTC.", "lang": "en"}
    message_id = outbox.submit_message(
        moscow.store,
        moscow.identity,
        moscow.peer_card("washington"),
        msg_type="free_text",
        priority="immediate",
        body=body,
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    with moscow.store.read() as conn:
        envelopes = [p.envelope for p in pending_outgoing(conn, "washington", 10)]
    assert message_id in node.receive(envelopes, "test").delivered_ids
    assert c.login("alice") == 303
    page = c.client.get(f"/messages/{message_id}?lang=ru")
    shown = render("free_text", body, "ru", "UTC")
    assert text_hash(shown) in page.text
    stale = c.client.post(
        f"/messages/{message_id}/ack",
        data={"csrf": c.csrf(), "lang": "ru", "text_hash": text_hash("another text")},
    )
    assert stale.status_code == 422 and "reload and read it again" in stale.text
    done = c.client.post(
        f"/messages/{message_id}/ack",
        data={"csrf": c.csrf(), "lang": "ru", "text_hash": text_hash(shown)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    with node.store.read() as conn:
        receipts = list_messages(conn, node.name, direction="out", kind="receipt")
    (receipt,) = receipts
    assert receipt.body["operator"] == "alice" and receipt.body["lang"] == "ru"
    assert receipt.body["text_hash"] == text_hash(shown)
    again = c.client.post(
        f"/messages/{message_id}/ack",
        data={"csrf": c.csrf(), "lang": "ru", "text_hash": text_hash(shown)},
    )
    assert again.status_code == 409  # the first acknowledgement is the record


def test_many_failed_logins_from_one_address_are_throttled(console: tuple[Console, Node]) -> None:
    from hotline.web._console import MAX_FAILURES_PER_SOURCE

    c, _ = console
    for i in range(MAX_FAILURES_PER_SOURCE):
        # A different account each time: the per-account lock-out never triggers.
        assert c.login(f"guess{i}", code="000000") == 401
    assert c.login("alice") == 429  # the right credentials, refused unseen
    static = c.client.get("/static/console.js")
    assert static.headers["x-content-type-options"] == "nosniff"


def test_inbox_deadlines_use_the_allowance_agreed_with_the_peer() -> None:
    from hotline.store.messages import Event, MessageView
    from hotline.web._queries import ack_deadline_us

    view = MessageView(
        id="m",
        direction="in",
        peer="moscow",
        seq=1,
        kind="message",
        msg_type="free_text",
        priority="flash",
        created_at_us=0,
        expires_at_us=None,
        in_reply_to=None,
        body={},
        sender="moscow",
        recipient="washington",
        events=[Event("delivered", 10_000_000, "")],
    )
    # Our receipt time plus FLASH's default five minutes ...
    assert ack_deadline_us(view) == 10_000_000 + 300 * 1_000_000
    # ... or what was agreed with this peer.
    assert ack_deadline_us(view, lambda peer: {"flash": 60.0}) == 10_000_000 + 60 * 1_000_000


def test_the_links_page_shows_each_transport_of_a_link(console: tuple[Console, Node]) -> None:
    from hotline.store.messages import record_link_event

    c, node = console
    assert c.login("alice") == 303
    endpoint = node.peers["moscow"].endpoints[0]
    with node.store.write() as conn:
        record_link_event(
            conn,
            peer="moscow",
            at_us=1,
            kind="heartbeat_failed",
            detail="peer_unreachable: <cut>",
            transport=endpoint,
        )
    page = c.client.get("/links").text
    assert f'data-transport="{endpoint}"' in page
    assert "peer_unreachable: &lt;cut&gt;" in page


def test_peer_text_is_shown_as_text_never_as_markup(console: tuple[Console, Node]) -> None:
    """Threat P12: text from the peer cannot add markup, scripts or attributes to a page."""
    from hotline.link import outbox
    from hotline.store.messages import pending_outgoing

    c, node = console
    moscow = c.homes["moscow"]
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)"> " onmouseover="alert(3)'
    message_id = outbox.submit_message(
        moscow.store,
        moscow.identity,
        moscow.peer_card("washington"),
        msg_type="free_text",
        priority="immediate",
        body={"text": hostile, "lang": "en"},
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    with moscow.store.read() as conn:
        envelopes = [p.envelope for p in pending_outgoing(conn, "washington", 10)]
    assert message_id in node.receive(envelopes, "test").delivered_ids
    assert c.login("alice") == 303
    for path in ("/inbox", f"/messages/{message_id}", f"/messages/{message_id}?lang=ru"):
        page = c.client.get(path)
        assert page.status_code == 200, path
        for raw in ("<script>alert", "<img src=x", 'onerror="alert', 'onmouseover="alert'):
            assert raw not in page.text, (path, raw)
    detail = c.client.get(f"/messages/{message_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_a_refused_bodys_reordering_characters_are_shown_escaped(
    console: tuple[Console, Node],
) -> None:
    """Threat P12: a body the catalog refuses is kept (it is authentic) and shown as JSON; a
    bidirectional override in it would reorder what the operator reads, so it is an escape."""
    from hotline.core.envelope import Kind, new_id, seal, sign_message

    c, node = console
    moscow = c.homes["moscow"]
    now = datetime.now(UTC)
    message_id = new_id(now)
    statement = sign_message(
        moscow.identity,
        to="washington",
        message_id=message_id,
        seq=1,
        created=now,
        msg_type="free_text",
        priority="immediate",
        body={"text": "cancel \u202e12:00 launch\u202c at 1200", "lang": "en"},
    )
    envelope = seal(
        kind=Kind.MESSAGE,
        sender="moscow",
        recipient="washington",
        envelope_id=message_id,
        statement=statement,
        recipient_key=node.identity.decryption.public,
    )
    assert message_id in node.receive([envelope], "test").delivered_ids
    assert c.login("alice") == 303
    for path in (f"/messages/{message_id}", f"/messages/{message_id}?lang=ru", "/inbox"):
        page = c.client.get(path)
        assert page.status_code == 200, path
        assert "\u202e" not in page.text and "\u202c" not in page.text, path
    assert "\\u202e12:00 launch\\u202c" in c.client.get(f"/messages/{message_id}").text


def test_the_links_page_lists_recovered_evidence_as_text(console: tuple[Console, Node]) -> None:
    """What a restored node fetched back from the peer (docs/operations.md, "Restore") is listed
    on the links page, with where the peer's log proves it; the peer's text stays text."""
    from sqlalchemy import insert

    from hotline.transcript.recovered import recovered_statements

    c, node = console
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    with node.store.write() as conn:
        conn.execute(
            insert(recovered_statements).values(
                peer="moscow",
                direction="in",
                seq=7,
                ref="01a215d6-ac00-7000-8000-000000000007",
                kind="message",
                msg_type="free_text",
                priority="flash",
                created="2026-11-26T16:00:00.000000Z",
                body=json.dumps({"text": hostile}),
                signed=b"statement",
                signed_hash="00" * 32,
                key_id="11" * 16,
                leaf_index=41,
                proof=b"",
                tree_size=57,
                tree_root="22" * 32,
                recovered_at_us=0,
            )
        )
    assert c.login("alice") == 303
    for lang, words in (("en", "verified: leaf 41 of 57"), ("ru", "проверено: лист 41 из 57")):
        c.client.post("/settings/lang", data={"csrf": c.csrf(), "lang": lang, "next": "/links"})
        page = c.client.get("/links")
        assert page.status_code == 200
        assert 'id="recovered-table"' in page.text and words in page.text
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text

"""Personal tokens of the operator API (threat model I2): a request made with one acts as its
operator, within its role; an acknowledgement names that operator and no other; revoked tokens
and disabled accounts are refused; the node's own api.token keeps full rights. Driven through
the node's ASGI app."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from hotline.link import inbox
from hotline.node.app import create_app
from hotline.node.runtime import Node
from hotline.operators import OperatorRegistry, Role
from hotline.store.messages import get_message

PASSWORD = "correct horse battery staple"


def _call(app, method: str, path: str, token: str, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"authorization": f"Bearer {token}"}
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


@pytest.fixture
def washington(pair, forge):
    """washington's node holding two messages from moscow, with three operator accounts."""
    w, m = pair["washington"], pair["moscow"]
    now = datetime.now(UTC)
    registry = OperatorRegistry(w.store, issuer="hotline washington")
    for name, role in (("olga", Role.OPERATOR), ("ivan", Role.OPERATOR), ("aud", Role.AUDITOR)):
        registry.add(name, role, PASSWORD, now=now)
    envelopes = [forge(m, w, seq=1), forge(m, w, seq=2)]
    result = inbox.receive(w.store, w.identity, w.peer_cards(), envelopes, now=now, source="t")
    ids = [o.id for o in result.outcomes]
    return w, registry, ids, create_app(Node(w))


def _acknowledged_by(home, receipt_id: str) -> str:
    with home.store.read() as conn:
        view = get_message(conn, receipt_id, home.config.name)
    assert view is not None
    return str(view.body["operator"])


def test_an_acknowledgement_names_the_tokens_operator_and_no_other(washington):
    w, registry, ids, app = washington
    token, _record = registry.issue_api_token("olga", now=datetime.now(UTC))
    refused = _call(app, "POST", f"/api/v1/messages/{ids[0]}/ack", token, json={"operator": "ivan"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    done = _call(app, "POST", f"/api/v1/messages/{ids[0]}/ack", token, json={})
    assert done.status_code == 200, done.text
    assert _acknowledged_by(w, done.json()["id"]) == "olga"
    logged = registry.actions(operator="olga")
    assert [(a.action, a.target, a.source) for a in logged][:1] == [
        ("api_acknowledge", ids[0], "api")
    ]
    # The node's own token (whoever can read the node directory) still names anyone.
    host = _call(
        app, "POST", f"/api/v1/messages/{ids[1]}/ack", w.api_token, json={"operator": "duty"}
    )
    assert host.status_code == 200 and _acknowledged_by(w, host.json()["id"]) == "duty"


def test_a_token_acts_within_its_operators_role(washington):
    w, registry, ids, app = washington
    auditor, _ = registry.issue_api_token("aud", now=datetime.now(UTC))
    assert _call(app, "GET", "/api/v1/links", auditor).status_code == 200
    assert _call(app, "GET", f"/api/v1/messages/{ids[0]}", auditor).status_code == 200
    send = _call(app, "POST", "/api/v1/messages", auditor, json={"to": "moscow", "text": "x"})
    assert send.status_code == 403
    ack = _call(app, "POST", f"/api/v1/messages/{ids[0]}/ack", auditor, json={})
    assert ack.status_code == 403
    # An operator's message carries its author, signed into it.
    olga, _ = registry.issue_api_token("olga", now=datetime.now(UTC))
    sent = _call(app, "POST", "/api/v1/messages", olga, json={"to": "moscow", "text": "hello"})
    assert sent.status_code == 200, sent.text
    with w.store.read() as conn:
        view = get_message(conn, sent.json()["id"], "washington")
    assert view is not None and view.author == "olga"


def test_revoked_tokens_disabled_accounts_and_made_up_tokens_are_refused(washington):
    _home, registry, _ids, app = washington
    now = datetime.now(UTC)
    token, record = registry.issue_api_token("olga", now=now)
    other, _ = registry.issue_api_token("ivan", now=now)
    assert _call(app, "GET", "/api/v1/links", token).status_code == 200
    assert registry.revoke_api_token(record.id, now=now).revoked_at_us is not None
    assert _call(app, "GET", "/api/v1/links", token).status_code == 401
    registry.set_disabled("ivan", True, now=now)
    assert _call(app, "GET", "/api/v1/links", other).status_code == 401
    for made_up in ("hlt_" + "A" * 43, "hlt_", "not-a-token", token[:-1]):
        response = _call(app, "GET", "/api/v1/links", made_up)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    listed = {t.id: t for t in registry.api_tokens()}
    assert listed[record.id].revoked_at_us is not None
    assert listed[record.id].last_used_us is not None

"""Audit bundles across a key rotation: the bundle carries the key history, an offline verifier
checks which key was valid when, and a forged rotation is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hotline.core.card import Identity
from hotline.core.encoding import b64encode, encode_json, format_time
from hotline.core.keys import Purpose, SigningKey, peek_statement
from hotline.link import inbox, keyring, outbox
from hotline.node.home import NodeHome
from hotline.store.messages import pending_outgoing
from hotline.transcript.bundle import (
    BundleError,
    encode_bundle,
    sign_bundle,
    statement_key,
    verify_bundle,
)
from hotline.transcript.crosscheck import exchanged_statements, own_log_section
from hotline.transcript.heads import current_own_head, own_heads_upto


def _send(w: NodeHome, m: NodeHome, text: str) -> None:
    outbox.submit_message(
        w.store,
        w.identity,
        w.peer_card("moscow"),
        msg_type="free_text",
        priority="routine",
        body={"text": text, "lang": "en"},
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    _deliver(w, m)


def _deliver(w: NodeHome, m: NodeHome) -> None:
    now = datetime.now(UTC)
    with w.store.read() as conn:
        envelopes = [o.envelope for o in pending_outgoing(conn, "moscow", 100)]
    reply = inbox.receive(m.store, m.identity, m.peer_cards(), envelopes, now=now, source="t")
    inbox.receive(
        w.store, w.identity, w.peer_cards(), reply.receipts.get("washington", []), now=now,
        source="t",
    )  # fmt: skip


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    """washington sends, rotates, sends again; returns the homes and the old identity."""
    base = tmp_path_factory.mktemp("bundle-keys")
    w, m = (
        NodeHome.init(base / n, name=n, listen=f"127.0.0.1:{p}", display_names={"en": n})
        for n, p in (("washington", 18711), ("moscow", 18712))
    )
    now = datetime.now(UTC)
    for home, other in ((w, m), (m, w)):
        card = other.card(now)
        home.add_peer(card, card.fingerprint, now)
    old = w.identity
    _send(w, m, "before")
    w.change_keys(datetime.now(UTC), overlap=timedelta(days=7), compromised_at=None)
    _deliver(w, m)
    _send(w, m, "after")
    yield w, m, old
    w.close()
    m.close()


def _bundle(w: NodeHome, m: NodeHome, key_history: dict[str, object] | None) -> bytes:
    now = datetime.now(UTC)
    with w.store.write() as conn:
        head = current_own_head(conn, w.identity, now, max_age_s=0)
    with w.store.read() as conn:
        items = exchanged_statements(conn, "moscow")
        log = own_log_section(conn, items, own_heads_upto(conn, head.size))
    at = format_time(now)
    body = encode_bundle(
        link=("washington", "moscow"),
        exported_by="washington",
        exported_at=at,
        cards={
            "washington": b64encode(w.card(now).statement),
            "moscow": b64encode(m.card(now).statement),
        },
        statements={statement_key(s): b64encode(s) for _r, _k, s in items},
        logs={"washington": log},
        key_history=key_history,  # type: ignore[arg-type]
    )
    return sign_bundle(w.identity, body, at)


def _history(w: NodeHome, events: list[bytes] | None = None) -> dict[str, object]:
    with w.store.read() as conn:
        first = keyring.history(conn, "washington")[0].card
        stored = [s for _k, s in keyring.events(conn, "washington")]
    return {
        "washington": {
            "first_card": b64encode(first.statement),
            "events": [b64encode(e) for e in (stored if events is None else events)],
        }
    }


def test_bundle_across_a_rotation_verifies_with_its_key_history(rotated):
    w, m, _old = rotated
    report = verify_bundle(_bundle(w, m, _history(w)))
    assert report.keys == {"washington": 2, "moscow": 1}
    assert report.messages == 3 and report.suspect == []


def test_without_the_key_history_the_old_statements_do_not_verify(rotated):
    w, m, _old = rotated
    with pytest.raises(BundleError):
        verify_bundle(_bundle(w, m, None))


def test_forged_rotation_signed_only_by_the_new_key_is_refused(rotated):
    w, m, _old = rotated
    with w.store.read() as conn:
        genuine = keyring.events(conn, "washington")[0][1]
    inner = peek_statement(genuine)[2]
    forged = w.identity.signing.sign(Purpose.KEY_ROTATION, inner)
    with pytest.raises(BundleError) as e:
        verify_bundle(_bundle(w, m, _history(w, [forged])))
    assert e.value.item == "key_history.washington"


def test_forged_rotation_signed_only_by_the_old_key_is_refused(rotated):
    """The old key vouches for a claim the new key never signed (an outsider signed it)."""
    w, m, old = rotated
    with w.store.read() as conn:
        genuine = keyring.events(conn, "washington")[0][1]
    claim = peek_statement(peek_statement(genuine)[2])[2]
    forged = old.signing.sign(
        Purpose.KEY_ROTATION, SigningKey.generate().sign(Purpose.KEY_ROTATION_NEW, claim)
    )
    with pytest.raises(BundleError) as e:
        verify_bundle(_bundle(w, m, _history(w, [forged])))
    assert e.value.item == "key_history.washington"


def test_a_key_history_that_does_not_lead_to_the_card_is_refused(rotated):
    w, m, _old = rotated
    stranger = Identity.generate("washington")
    card = w.card(datetime.now(UTC), identity=stranger)
    history = {"washington": {"first_card": b64encode(card.statement), "events": []}}
    with pytest.raises(BundleError):
        verify_bundle(_bundle(w, m, history))
    # A revocation payload in place of a rotation, signed by nobody it names: refused too.
    junk = stranger.signing.sign(Purpose.KEY_REVOCATION, encode_json({"v": 1}))
    with pytest.raises(BundleError):
        verify_bundle(_bundle(w, m, _history(w, [junk])))


def test_statements_signed_after_the_compromise_are_listed_as_suspect(tmp_path):
    w, m = (
        NodeHome.init(tmp_path / n, name=n, listen=f"127.0.0.1:{p}", display_names={"en": n})
        for n, p in (("washington", 18713), ("moscow", 18714))
    )
    now = datetime.now(UTC)
    for home, other in ((w, m), (m, w)):
        card = other.card(now)
        home.add_peer(card, card.fingerprint, now)
    _send(w, m, "sent by the thief, for all anyone knows")
    w.change_keys(datetime.now(UTC), compromised_at=now - timedelta(minutes=1))
    _deliver(w, m)
    report = verify_bundle(_bundle(w, m, _history(w)))
    assert len(report.suspect) == 1 and "compromised" in report.suspect[0]
    w.close()
    m.close()

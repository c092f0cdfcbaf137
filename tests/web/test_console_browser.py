"""The console in Debian's Chromium (Playwright) against two real node processes.

Washington's operator composes a FLASH message; a second person (a releaser) releases it;
Moscow's operator sees it arrive without reloading and acknowledges it; Washington's outbox shows
the acknowledgement without reloading. Also: a
wrong one-time code and a form without its CSRF token are refused, and a peer's HTML stays text.

Screenshots of each page go to docs/screenshots/ when HOTLINE_SCREENSHOTS=1 (else to a temporary
folder, so a test run leaves the working tree clean).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from console_helpers import CHROMIUM, CHROMIUM_ARGS, PASSWORD, chromium_missing_reason, integration

from hotline.operators import OperatorRegistry

_missing = chromium_missing_reason()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(_missing is not None, reason=_missing or ""),
]

if _missing is None:
    from playwright.sync_api import Browser, Page, expect, sync_playwright

#: How long a live update may take to show (the issue asks for 1 s; the rest is slack for a
#: shared CI machine and the delivery between two processes).
LIVE_TIMEOUT_MS = 5_000
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


@dataclass
class Party:
    node: Any  # integration.NodeProcess
    secrets: dict[str, str]
    steps: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.node.endpoint)

    def code(self, name: str) -> str:
        # A code works once; each login takes the next 30-second step (the window allows +1).
        k = self.steps.get(name, 0)
        self.steps[name] = k + 1
        if k > 1:
            time.sleep(30)
        return pyotp.TOTP(self.secrets[name]).at(datetime.now(UTC).timestamp() + 30 * min(k, 1))


@dataclass
class World:
    washington: Party
    moscow: Party
    browser: Browser
    shots: Path
    console_errors: list[str] = field(default_factory=list)

    def page(self) -> Page:
        context = self.browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("dialog", lambda d: self.console_errors.append(f"dialog: {d.message}"))
        return page

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def login(page: Page, party: Party, name: str, code: str | None = None) -> None:
    page.goto(f"{party.url}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=totp]", code or party.code(name))
    page.click("button[type=submit]")


def live_connected(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-live-connected", "yes")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("console")
    # Plain HTTP: the browser would not know the nodes' pinned self-signed certificates.
    homes = integration.make_linked_homes(
        base, ["washington", "moscow"], tls=False, retry_cap_s=1.0, heartbeat_interval_s=2.0
    )
    now = datetime.now(UTC)
    accounts = {
        "washington": [
            ("walt", "operator"),
            ("wendy", "releaser"),
            ("will", "operator"),
            ("wanda", "operator"),
            ("mapper", "operator"),
            ("auditor1", "auditor"),
        ],
        "moscow": [("misha", "operator")],
    }
    secrets: dict[str, dict[str, str]] = {}
    for node_name, people in accounts.items():
        registry = OperatorRegistry(homes[node_name].store, issuer=f"hotline {node_name}")
        secrets[node_name] = {
            name: registry.add(
                name, role, PASSWORD, now=now, lang="ru" if node_name == "moscow" else "en"
            ).totp_secret
            for name, role in people
        }
        homes[node_name].close()
    nodes = {name: integration.NodeProcess(home, base) for name, home in homes.items()}
    keep = os.environ.get("HOTLINE_SCREENSHOTS") == "1"
    shots = SCREENSHOTS if keep else base / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        for node in nodes.values():
            node.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield World(
                    Party(nodes["washington"], secrets["washington"]),
                    Party(nodes["moscow"], secrets["moscow"]),
                    browser,
                    shots,
                )
            finally:
                browser.close()
    finally:
        for node in nodes.values():
            node.stop()
        for home in homes.values():
            home.close()


def test_wrong_totp_is_refused_then_the_right_one_logs_in(world: World) -> None:
    page = world.page()
    login(page, world.washington, "walt", code="000000")
    expect(page.locator("#login-error")).to_be_visible()
    assert page.url.startswith(f"{world.washington.url}/login")
    world.shot(page, "login")
    login(page, world.washington, "walt")
    expect(page.locator("#operator-name")).to_have_text("walt")
    assert page.url == f"{world.washington.url}/inbox"
    page.context.close()


def test_a_form_without_its_csrf_token_is_refused(world: World) -> None:
    page = world.page()
    login(page, world.washington, "wendy")
    page.goto(f"{world.washington.url}/compose")
    page.check("input[name=to][value=moscow]")
    page.fill("#f_text", "should never be sent")
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    page.click("#send-button")
    expect(page.locator("#error-code")).to_have_text("csrf_failed")
    page.goto(f"{world.washington.url}/outbox")
    assert "should never be sent" not in page.content()
    page.context.close()


def test_flash_is_released_by_a_second_person_arrives_live_and_is_acknowledged_live(
    world: World,
) -> None:
    sender = world.page()
    releaser = world.page()
    receiver = world.page()
    login(sender, world.washington, "will")
    login(releaser, world.washington, "wendy")
    login(receiver, world.moscow, "misha")
    receiver.goto(f"{world.moscow.url}/inbox")
    releaser.goto(f"{world.washington.url}/releases")
    for page in (receiver, releaser):
        live_connected(page)
        page.evaluate("window.notReloaded = true")

    # Compose with live validation and a preview in both languages, then submit.
    sender.goto(f"{world.washington.url}/compose")
    sender.check("input[name=to][value=moscow]")
    sender.select_option("#priority", "flash")
    sender.fill("#f_text", "")
    sender.fill("#f_lang", "en")
    sender.locator("#f_text").press_sequentially("Unannounced launch detected; confirm intent.")
    expect(sender.locator("#preview-en")).to_contain_text("Unannounced launch detected")
    expect(sender.locator("#preview-ru")).to_contain_text("Unannounced launch detected")
    world.shot(sender, "compose")
    sender.click("#send-button")
    assert sender.url.startswith(f"{world.washington.url}/releases")
    mine = sender.locator("article.release").first
    expect(mine.locator(".own")).to_be_visible()  # the author gets no approve button
    assert mine.locator("button.approve").count() == 0
    sender.goto(f"{world.washington.url}/outbox")
    live_connected(sender)
    sender.evaluate("window.notReloaded = true")

    # The releaser's open queue shows it without a reload; a second person releases it.
    waiting = releaser.locator("article.release").first
    expect(waiting).to_contain_text("Unannounced launch detected", timeout=LIVE_TIMEOUT_MS)
    expect(waiting.locator(".author")).to_have_text("will")
    world.shot(releaser, "releases")
    released_at = time.monotonic()
    waiting.locator("button.approve").click()
    expect(releaser.locator("#decided tbody tr").first).to_have_attribute("data-state", "released")

    # Moscow's inbox shows it without a reload, at the top, with a countdown.
    pending = receiver.locator("#pending tbody tr").first
    expect(pending).to_contain_text("Unannounced launch detected", timeout=LIVE_TIMEOUT_MS)
    arrived_s = time.monotonic() - released_at
    assert receiver.evaluate("window.notReloaded") is True
    expect(pending.locator(".countdown")).to_have_text(re.compile(r"^[0-9]+:[0-9]{2}$"))
    world.shot(receiver, "inbox")

    # Washington's outbox shows it delivered without a reload.
    row = sender.locator("#outbox tbody tr").first
    expect(row).to_have_attribute("data-state", "delivered", timeout=LIVE_TIMEOUT_MS)

    # Moscow acknowledges; the receipt carries misha, the language and the text's hash.
    pending.locator("a.summary").click()
    expect(receiver.locator("#message-text")).to_contain_text("Unannounced launch detected")
    world.shot(receiver, "message")
    receiver.click("#ack-button")
    expect(receiver.locator(".acked-by")).to_have_text("misha")

    # Washington's outbox shows the acknowledgement without a reload.
    expect(row).to_have_attribute("data-state", "acknowledged", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".acked-by")).to_have_text("misha")
    assert sender.evaluate("window.notReloaded") is True
    world.shot(sender, "outbox")

    sender.goto(f"{world.washington.url}/links")
    expect(sender.locator("#links-table")).to_contain_text("moscow")
    world.shot(sender, "links")
    print(f"\nreleased FLASH message in the peer's open inbox after {arrived_s:.2f} s")
    assert not [e for e in world.console_errors if "Content Security Policy" in e]
    for page in (sender, releaser, receiver):
        page.context.close()


XSS = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>"><b>bold</b>'


def test_html_in_a_peers_message_renders_as_text(world: World) -> None:
    page = world.page()
    login(page, world.washington, "wanda")
    page.goto(f"{world.washington.url}/inbox")
    live_connected(page)
    with world.moscow.node.api() as api:
        response = api.post(
            "/api/v1/messages",
            json={
                "to": "washington",
                "priority": "immediate",
                "type": "free_text",
                "body": {"text": XSS, "lang": "en"},
            },
        )
        assert response.status_code == 200, response.text
    row = page.locator("#pending tbody tr", has_text="<img src=x")
    expect(row).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    row.locator("a.summary").click()
    expect(page.locator("#message-text")).to_contain_text(XSS)
    page.click("#original summary")
    expect(page.locator("#original pre")).to_contain_text("<script>")
    assert page.locator("#message-text img, #message-text script, #message-text b").count() == 0
    assert page.evaluate("window.pwned") is None
    assert not [e for e in world.console_errors if e.startswith("dialog")]
    page.context.close()


def activity(lon: float, lat: float, hours: tuple[int, int], units: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)

    def at(h: int) -> str:
        return (now + timedelta(hours=h)).isoformat().replace("+00:00", "Z")

    return {
        "kind": "air",
        "volumes": [
            {
                "footprint": {"type": "Circle", "center": [lon, lat], "radius_m": 60_000},
                "altitude": {"lower_m": 0, "upper_m": 12_000},
                "window": {"start": at(hours[0]), "end": at(hours[1])},
            }
        ],
        "units": [units],
        "contact": "air operations desk",
    }


def test_the_map_shows_a_conflict_after_an_activity_notification(world: World) -> None:
    page = world.page()
    login(page, world.washington, "mapper")
    with world.washington.node.api() as api:  # our own planned activity, notified to moscow
        ours = api.post(
            "/api/v1/messages",
            json={
                "to": "moscow",
                "priority": "priority",
                "type": "activity_notification",
                "body": activity(20.0, 55.0, (1, 5), "Our squadron"),
            },
        )
        assert ours.status_code == 200, ours.text
    page.goto(f"{world.washington.url}/map")
    live_connected(page)
    expect(page.locator("body")).to_have_attribute("data-world-drawn", "yes")
    expect(page.locator("#conflict-count")).to_have_text("0")
    with world.moscow.node.api() as api:  # theirs, overlapping ours in space, height and time
        theirs = api.post(
            "/api/v1/messages",
            json={
                "to": "washington",
                "priority": "immediate",
                "type": "activity_notification",
                "body": activity(20.5, 55.2, (2, 6), "Their regiment"),
            },
        )
        assert theirs.status_code == 200, theirs.text
    expect(page.locator("#conflict-count")).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("path.conflict")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("body")).to_have_attribute("data-map-fitted", "yes")
    page.locator("path.conflict").click(force=True)
    expect(page.locator("#conflicts tr.selected")).to_have_count(1)
    world.shot(page, "map")
    page.locator("#conflicts tr.selected a.peer-notification").click()
    expect(page.locator("#message-text")).to_contain_text("Their regiment")
    page.go_back()
    page.locator("#conflicts a.draft").first.click()
    expect(page.locator("#f_text")).to_contain_text("conflicts with our planned activities")
    assert page.locator("#f_in_reply_to").input_value() == theirs.json()["id"]
    assert not [e for e in world.console_errors if "Content Security Policy" in e]
    page.context.close()


def test_a_peers_referral_shows_on_cases_and_the_record_on_audit(world: World) -> None:
    from hotline.compose import RequestedAction, Tlp
    from hotline.referrals.cases import prepare_referral

    helpers = Path(__file__).parents[1] / "referrals" / "referral_helpers.py"
    spec = importlib.util.spec_from_file_location("hotline_referral_helpers_browser", helpers)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    now = datetime.now(UTC)
    body = prepare_referral(
        module.bundle_bytes(module.sample_bundle()),
        narrative="Scanning of a power-grid operator since 18 November.",
        actions=[RequestedAction.TAKEDOWN, RequestedAction.PRESERVE_EVIDENCE],
        deadline=now + timedelta(hours=72),
        tlp=Tlp.AMBER,
        now=now,
    )
    with world.moscow.node.api() as api:
        sent = api.post(
            "/api/v1/messages",
            json={
                "to": "washington",
                "priority": "immediate",
                "type": "cyber_referral",
                "body": body,
            },
        )
        assert sent.status_code == 200, sent.text
    page = world.page()
    login(page, world.washington, "auditor1")
    page.goto(f"{world.washington.url}/cases")
    deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
    while "power-grid" not in page.content() and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    expect(page.locator("#cases")).to_contain_text("Scanning of a power-grid operator")
    world.shot(page, "cases")
    page.goto(f"{world.washington.url}/audit")
    expect(page.locator("#own-log")).to_be_visible()
    expect(page.locator("#actions")).to_contain_text("login")
    world.shot(page, "audit")
    with page.expect_download() as download:
        page.click("#export-form button")
    assert download.value.suggested_filename.startswith("hotline-audit-washington-moscow-")
    page.context.close()

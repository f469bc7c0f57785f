"""GET /debug: the operator page, served as a static shell and driven in a real browser.

The browser test runs Debian's chromium headless through selenium and chromedriver
(``apt-get install chromium chromium-driver``; .ci/run installs them). It is never skipped:
without them it fails and says what to install. Set ``RT_UPDATE_SCREENSHOTS=1`` to write its
screenshot to docs/images/debug.png (otherwise it goes to the test's tmp_path only, so that a
test run never changes the working tree).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from rt.server import Server

from ._support import TIMEOUT_S, actors, find, odds_client, receive, subscribe

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).parents[3] / "docs" / "images" / "debug.png"
TOKEN_KEY = "rt.http.debug.adminToken"


async def test_the_shell_needs_no_token_and_holds_no_secret(
    server: Server, http: httpx.AsyncClient
) -> None:
    response = await http.get("/debug")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    page = response.text
    assert server.settings.admin_token not in page
    assert server.settings.jwt_secret not in page
    assert 'id="login"' in page and 'type="password"' in page
    # No external assets: nothing is fetched from anywhere but this server's own routes.
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "http://" not in page and "https://" not in page
    # The policy allows exactly the page's own inline script and style.
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    [script] = re.findall(r"<script>(.*?)</script>", page, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert policy["script-src"] == sha256(script)
    assert policy["style-src"] == sha256(style)
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# -- the browser ----------------------------------------------------------------------------


@contextmanager
def chromium(profile: Path) -> Iterator[WebDriver]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    assert not missing, (
        f"{', '.join(missing)} not found: apt-get install -y chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,800",  # a laptop: the page must fit (or scroll) there
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    wait = WebDriverWait(driver, TIMEOUT_S, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition, message=f"waiting for {what}")


def rows(driver: WebDriver) -> dict[str, WebElement]:
    """The tree's rows on screen, by actor path."""
    found = driver.find_elements(By.CSS_SELECTOR, "#tree-body tr.node")
    return {row.get_attribute("data-path") or "": row for row in found}


def row_text(driver: WebDriver, path: str) -> str:
    shown = rows(driver)
    return shown[path].text if path in shown else ""


def drive(url: str, token: str, profile: Path, publish: Callable[[int], None]) -> bytes:
    """Everything an operator does on the page, checked step by step; returns a screenshot."""
    with chromium(profile) as driver:
        driver.get(url)
        # Signed out: the login form, and nothing else.
        until(driver, lambda d: d.find_element(By.ID, "token").is_displayed(), "the login form")
        assert not driver.find_element(By.ID, "app").is_displayed()

        # A wrong token is refused, and not kept.
        driver.find_element(By.ID, "token").send_keys("not-the-token")
        driver.find_element(By.ID, "login-submit").click()
        error = driver.find_element(By.ID, "login-error")
        until(driver, lambda d: error.is_displayed(), "the login error")
        assert error.text == "Wrong admin token: the server refused it (401)."
        assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None

        # The right one shows the tree; the token lives in sessionStorage, never in the URL.
        field = driver.find_element(By.ID, "token")
        field.clear()
        field.send_keys(token)
        driver.find_element(By.ID, "login-submit").click()
        until(driver, lambda d: "rooms" in rows(d), "the rooms supervisor in the tree")
        assert not driver.find_element(By.ID, "login-panel").is_displayed()
        assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") == token
        assert token not in driver.current_url
        shown = rows(driver)
        for path in ("engine", "conns", "feeds", "feeds/demo", "rooms/market:1001", "public"):
            assert path in shown, sorted(shown)
        assert sum(1 for r in shown.values() if r.get_attribute("data-kind") == "connection") == 2
        # The crashed room stands out, with its restart and its error.
        crashed = shown["rooms/market:1001"]
        assert "bad" in (crashed.get_attribute("class") or "").split()
        assert "InjectedFault: injected crash in rooms/market:1001" in crashed.text
        assert crashed.get_attribute("data-state") == "running"
        assert "bad" not in (shown["rooms/market:1002"].get_attribute("class") or "").split()

        # It survives a reload: the token is still in this tab.
        driver.refresh()
        until(driver, lambda d: "rooms" in rows(d), "the tree after a reload")

        # Filter by kind: rooms only, with their supervisors shown (dimmed) as context.
        Select(driver.find_element(By.ID, "kind-filter")).select_by_value("room")
        until(
            driver,
            lambda d: (
                {r.get_attribute("data-kind") for r in rows(d).values()} == {"supervisor", "room"}
            ),
            "only rooms and their parents",
        )
        shown = rows(driver)
        assert sorted(p for p, r in shown.items() if r.get_attribute("data-kind") == "room") == [
            "rooms/market:1001",
            "rooms/market:1002",
            "rooms/market:1003",
        ]
        assert "ctx" in (shown["rooms"].get_attribute("class") or "").split()
        # ... and by name.
        driver.find_element(By.ID, "name-filter").send_keys("1002")
        until(
            driver,
            lambda d: (
                [p for p, r in rows(d).items() if r.get_attribute("data-kind") == "room"]
                == ["rooms/market:1002"]
            ),
            "the name filter",
        )
        assert driver.find_element(By.ID, "shown").text.startswith("1 of ")
        driver.find_element(By.ID, "name-filter").clear()
        # ... and by trouble: the room that crashed a moment ago.
        driver.find_element(By.ID, "problems-only").click()
        until(
            driver,
            lambda d: (
                [p for p, r in rows(d).items() if r.get_attribute("data-kind") == "room"]
                == ["rooms/market:1001"]
            ),
            "the problems-only filter",
        )
        driver.find_element(By.ID, "problems-only").click()
        Select(driver.find_element(By.ID, "kind-filter")).select_by_value("")
        until(driver, lambda d: "public" in rows(d), "the whole tree again")

        # Arm a fault from the form, on a room picked by clicking its name in the tree.
        rows(driver)["rooms/market:1003"].find_element(By.CSS_SELECTOR, "td.name .pick").click()
        assert driver.find_element(By.ID, "fault-target").get_attribute("value") == (
            "rooms/market:1003"
        )
        Select(driver.find_element(By.ID, "fault-action")).select_by_value("stall")
        driver.find_element(By.ID, "fault-arm").click()
        until(
            driver,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#faults-body tr.fault"),
            "the armed fault in the list",
        )
        [armed] = driver.find_elements(By.CSS_SELECTOR, "#faults-body tr.fault")
        # Fault #1 was the crash armed before the page opened.
        assert armed.get_attribute("data-id") == "2"
        assert armed.text.split("\n")[:3] == [
            "#2 stall @ message",
            "rooms/market:1003",
            "1 live match",
        ]
        message = driver.find_element(By.ID, "fault-message")
        assert message.text == "Armed fault #2 (1 live match)."

        # The stalled room's mailbox fills up, and the page shows it.
        publish(5)
        until(
            driver,
            lambda d: (
                "⚡#2 stall@message" in row_text(d, "rooms/market:1003")
                and "4/4096" in row_text(d, "rooms/market:1003")
            ),
            "the stalled room's mailbox",
        )
        # Every column fits the 1280 px window, the last ones (last error, info) included:
        # none is clipped by the tree's box, and nothing needs a horizontal scroll.
        overflow = driver.execute_script(
            "const t = document.getElementById('tree');"
            "const box = t.closest('section');"
            "const heads = [...t.querySelectorAll('th')];"
            "const info = heads.find(th => th.textContent === 'info');"
            "return [info.getBoundingClientRect().right, box.getBoundingClientRect().right,"
            " box.scrollWidth, box.clientWidth, document.documentElement.scrollWidth,"
            " window.innerWidth];"
        )
        info_right, box_right, scroll_width, client_width, page_width, viewport = overflow
        assert info_right <= box_right and scroll_width <= client_width, overflow
        assert page_width <= viewport, overflow
        driver.execute_script("window.scrollTo(0, 0)")  # the tree, for the screenshot
        png: bytes = driver.get_screenshot_as_png()

        # A bad request from the form shows the server's answer.
        Select(driver.find_element(By.ID, "fault-action")).select_by_value("delay")
        driver.find_element(By.ID, "fault-target").clear()
        driver.find_element(By.ID, "fault-target").send_keys("rooms/market:1002")
        driver.find_element(By.ID, "fault-delay").send_keys("0")
        driver.find_element(By.ID, "fault-arm").click()
        until(driver, lambda d: message.text == "a delay needs delay_s > 0", "the fault error")

        # Disarm it from the list; the room catches up.
        armed.find_element(By.CSS_SELECTOR, "button.disarm").click()
        until(
            driver,
            lambda d: d.find_element(By.ID, "faults-body").text == "Nothing armed.",
            "the fault list to empty",
        )
        until(
            driver,
            lambda d: "0/4096" in row_text(d, "rooms/market:1003"),
            "the room's mailbox to drain",
        )

        # Signing out forgets the token.
        driver.find_element(By.ID, "logout").click()
        until(driver, lambda d: d.find_element(By.ID, "token").is_displayed(), "the login form")
        assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None
        return png


def check_png(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


# The demo feed runs (so the tree shows a feed) on markets nobody here subscribes to.
@pytest.mark.debug_settings(demo_feed=True, demo_markets=("2001", "2002"), demo_seed=1)
async def test_an_operator_session_in_a_real_browser(
    server: Server, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {server.settings.admin_token}"}
    async with odds_client(server, user_id=7) as alice, odds_client(server, user_id=8) as bob:
        await subscribe(alice, 1001, 1002)
        await subscribe(bob, 1001, 1003)
        # Crash one room, so there is something to see.
        response = await http.post(
            "/debug/faults", json={"action": "crash", "actor": "market:1001"}, headers=admin
        )
        assert response.status_code == 201
        await server.hub.publish("market:1001", {"moneyline": {"home": 1.9, "away": 2.0}})
        assert (await receive(alice))["seq"] == 1
        assert (await receive(bob))["seq"] == 1
        assert (await http.delete("/debug/faults", headers=admin)).json() == {"disarmed": 1}
        assert find((await actors(http, admin))["tree"], "rooms/market:1001")["restarts"] == 1

        def publish(n: int) -> None:
            async def go() -> None:
                for i in range(n):
                    await server.hub.publish("market:1003", {"total": {"over": 1.8 + i / 100}})

            trio.from_thread.run(go)

        png = await trio.to_thread.run_sync(
            drive, f"{server.http_url}/debug", server.settings.admin_token, tmp_path, publish
        )
        # The stall held the room; once disarmed, bob gets all five updates, in order.
        received = [await receive(bob) for _ in range(5)]
        assert [m["seq"] for m in received] == [1, 2, 3, 4, 5]
    assert server.system.faults.list() == []

    width, height = check_png(png)
    assert width == 1280 and height >= 600, (width, height)
    (tmp_path / "debug.png").write_bytes(png)
    if os.environ.get("RT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "debug.png", SCREENSHOT)

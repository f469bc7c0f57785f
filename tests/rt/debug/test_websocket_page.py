"""GET /websocket-test: the live WebSocket test page, served by rt and driven in a real
browser (headless chromium, as the /debug page is). Set ``RT_UPDATE_SCREENSHOTS=1`` to write
its screenshot to docs/images/websocket-test.png."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
import trio
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from rt.server import Server

from .test_page import check_png, chromium, sha256, until

SCREENSHOT = Path(__file__).parents[3] / "docs" / "images" / "websocket-test.png"


async def test_the_page_is_self_contained(http: httpx.AsyncClient) -> None:
    response = await http.get("/websocket-test")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # no external assets
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no inline handlers: the policy forbids them
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    [script] = re.findall(r"<script>(.*?)</script>", page, re.S)
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert policy["script-src"] == sha256(script)
    assert policy["style-src"] == sha256(style)
    assert policy["default-src"] == "'none'"


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def click(driver: WebDriver, element_id: str) -> None:
    driver.find_element(By.ID, element_id).click()


def log_has(driver: WebDriver, needle: str) -> bool:
    return needle in text(driver, "log")


def drive(url: str, profile: Path, admin_token: str) -> bytes:
    """Everything a client developer does on the page, checked step by step."""
    with chromium(profile) as driver:
        driver.get(url)
        dialects = Select(driver.find_element(By.ID, "dialect"))
        assert [o.get_attribute("value") for o in dialects.options] == [
            "topics",
            "kmarket",
            "uof",
            "predictions",
            "trading",
        ]
        assert text(driver, "state") == "disconnected"
        client_id = driver.find_element(By.ID, "client-id").get_attribute("value") or ""
        assert driver.find_element(By.ID, "url").get_attribute("value") == (
            url.replace("http://", "ws://").replace("/websocket-test", f"/api/v1/ws/{client_id}")
        )

        # Connect: the connection_ack shows up in the log.
        click(driver, "connect")
        until(driver, lambda d: text(d, "state") == "connected", "connected")
        until(driver, lambda d: log_has(d, '"type":"connection_ack"'), "the connection_ack")

        # Subscribe to stock.AAPL.1m: a candle arrives and fills its row.
        assert driver.find_element(By.ID, "topic").get_attribute("value") == "stock.AAPL.1m"
        click(driver, "subscribe")
        until(driver, lambda d: log_has(d, '"type":"subscribe_ack"'), "the subscribe_ack")
        row = '#topics tr[data-topic="stock.AAPL.1m"]'
        until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, row), "a candle's row")
        latest = driver.find_element(By.CSS_SELECTOR, f"{row} td.latest").text
        assert re.match(r"O [\d.]+ H [\d.]+ L [\d.]+ C [\d.]+ · V [\d.]+ · \d+ trades", latest)
        assert driver.find_element(By.CSS_SELECTOR, f"{row} td.gaps").text == "0"
        command = text(driver, "command")
        assert command == (
            '(echo \'{"type":"subscribe","topic":"stock.AAPL.1m"}\'; cat) | '
            f"websocat 'ws://{url.split('/')[2]}/api/v1/ws/{client_id}'"
        )

        # The ping's round trip.
        click(driver, "ping")
        until(driver, lambda d: text(d, "rtt").endswith(" ms"), "the round trip")

        # An invalid topic: an error row in the log, and the connection stays.
        driver.find_element(By.ID, "raw").send_keys('{"type":"subscribe","topic":"stock_data"}')
        click(driver, "send-raw")
        until(
            driver,
            lambda d: (
                "invalid_topic"
                in " ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, "#log .error"))
            ),
            "the error, marked",
        )
        assert text(driver, "state") == "connected"
        driver.execute_script("window.scrollTo(0, 0)")
        png: bytes = driver.get_screenshot_as_png()

        # A seq gap is counted and its row highlighted (messages fed to the page's handler,
        # as if they had arrived: a live server sends none with a gap).
        for seq in (5, 6, 8):
            driver.execute_script(
                "track(arguments[0])",
                {
                    "type": "candle",
                    "topic": "stock.TEST.1m",
                    "seq": seq,
                    "open": 1,
                    "high": 1,
                    "low": 1,
                    "close": 1,
                    "volume": 0,
                    "trades": 0,
                    "closed": False,
                },
            )
        test_row = driver.find_element(By.CSS_SELECTOR, '#topics tr[data-topic="stock.TEST.1m"]')
        assert "gap" in (test_row.get_attribute("class") or "")
        assert test_row.find_element(By.CSS_SELECTOR, "td.gaps").text == "1"
        assert test_row.find_element(By.CSS_SELECTOR, "td.seq").text == "8"
        stock = driver.find_element(By.CSS_SELECTOR, row)
        assert "gap" not in (stock.get_attribute("class") or "")

        # Unsubscribe, disconnect.
        click(driver, "unsubscribe")
        until(driver, lambda d: log_has(d, '"type":"unsubscribe_ack"'), "the unsubscribe_ack")
        assert text(driver, "command").startswith("websocat ")
        click(driver, "disconnect")
        until(driver, lambda d: text(d, "state") == "disconnected", "disconnected")
        assert text(driver, "close-info") == "1000 bye"

        # The same page speaks KMarket: a dev token, a market, its snapshot.
        dialects.select_by_value("kmarket")
        assert driver.find_element(By.ID, "topic").get_attribute("value") == "1001"
        click(driver, "get-token")
        until(driver, lambda d: text(d, "token-info") == "for web", "a dev token")
        click(driver, "connect")
        until(driver, lambda d: text(d, "state") == "connected", "connected (kmarket)")
        click(driver, "subscribe")
        market = '#topics tr[data-topic="1001"]'
        until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, market), "the market's row")
        click(driver, "disconnect")
        until(driver, lambda d: text(d, "state") == "disconnected", "disconnected (kmarket)")

        # And the predictions dialect: the demo's events on a subscription.
        dialects.select_by_value("predictions")
        assert driver.find_element(By.ID, "topic").get_attribute("value") == "predictions"
        click(driver, "connect")
        until(driver, lambda d: text(d, "state") == "connected", "connected (predictions)")
        until(driver, lambda d: log_has(d, '"event_type":"connection_status"'), "the status")
        topic = driver.find_element(By.ID, "topic")
        topic.clear()
        topic.send_keys("matches")
        click(driver, "subscribe")
        until(driver, lambda d: log_has(d, '"user_subscription_changed"'), "the confirmation")
        kick_off = {"event_type": "match_started", "data": {"match_id": 99, "league": "英超"}}
        answer = httpx.post(
            url.replace("/websocket-test", "/realtime/broadcast"),
            json=kick_off,
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert answer.status_code == 200 and answer.json()["matched"] == 1, answer.text
        until(driver, lambda d: log_has(d, '"match_id":99'), "the kick-off")
        click(driver, "disconnect")
        until(driver, lambda d: text(d, "state") == "disconnected", "disconnected (predictions)")

        # And the trading dialect: auth on open (the dev token of "web"), the book's full
        # snapshot, the market maker's quotes in its row.
        dialects.select_by_value("trading")
        assert driver.find_element(By.ID, "topic").get_attribute("value") == "orderbook:IX2301"
        click(driver, "connect")
        until(driver, lambda d: text(d, "state") == "connected", "connected (trading)")
        until(driver, lambda d: log_has(d, '"Authentication successful"'), "the auth_response")
        click(driver, "subscribe")
        book = '#topics tr[data-topic="orderbook:IX2301"]'
        until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, book), "the book's row")
        until(
            driver,
            lambda d: re.match(
                r"bid [\d.]+ · ask [\d.]+",
                d.find_element(By.CSS_SELECTOR, f"{book} td.latest").text,
            ),
            "the market maker's quotes",
        )
        click(driver, "disconnect")
        until(driver, lambda d: text(d, "state") == "disconnected", "disconnected (trading)")
        return png


@pytest.mark.debug_settings(demo_feed=True, dev=True)
async def test_a_client_developer_session_in_a_real_browser(server: Server, tmp_path: Path) -> None:
    png = await trio.to_thread.run_sync(
        drive, f"{server.http_url}/websocket-test", tmp_path, server.settings.admin_token
    )
    width, height = check_png(png)
    assert width == 1280 and height >= 600, (width, height)
    (tmp_path / "websocket-test.png").write_bytes(png)
    if os.environ.get("RT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "websocket-test.png", SCREENSHOT)

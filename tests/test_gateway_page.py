"""The gateway's live page in a real headless Chromium: `station gateway --http` as a process,
stations publishing through a real Mosquitto, and what a person reads on the page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from edge_agent.db import open_db
from edge_agent.gateway.counts import Day, Tally, event_time, tally_events
from kiosk_ui.cli import main
from tests.support.chromium import DESKTOP, PHONE, chromium, full_page_screenshot, wait_for
from tests.support.contract import check_outbox
from tests.support.drills import ROOT, drill_config
from tests.support.edge import (
    agent_thread,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_day import TZ
from tests.support.mosquitto import Broker
from tests.support.ports import free_port, wait_for_port

DRILL = ROOT / "examples" / "drills" / "normal-morning.json"


@contextmanager
def gateway_process(
    tmp_path: Path, broker: Broker, port: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`station gateway` with its page, as township IT runs it; stopped with SIGTERM."""
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk_ui.cli",
                "-v",
                "gateway",
                "--broker",
                broker.url,
                "--allow-plaintext",
                "--db",
                str(tmp_path / "gateway.db"),
                "--client-id",
                "gw-page",
                "--http",
                f"127.0.0.1:{port}",
                "--timezone",
                "Asia/Shanghai",
                "--http-poll",
                "0.5",
                *extra,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=20)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        assert rc == 0, log.read_text()[-3000:]


def light_station(broker: Broker, station: str, telemetry: dict[str, Any] | None) -> mqtt.Client:
    """A station's link as the broker sees it: the retained online status (with the offline
    Last Will a real agent sets) and, when given, one telemetry message."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"station-T01-{station}", protocol=mqtt.MQTTv5
    )
    topic = f"sampling/T01/{station}"
    offline = {"state": "offline", "reason": "connection lost"}
    client.will_set(f"{topic}/status", json.dumps(offline), qos=1, retain=True)
    client.connect("127.0.0.1", broker.port, keepalive=5)
    client.loop_start()
    online = {"state": "online", "at": "2026-11-23T08:00:00.000Z", "release": "2026.11.2"}
    client.publish(f"{topic}/status", json.dumps(online), qos=1, retain=True).wait_for_publish(5)
    if telemetry is not None:
        client.publish(f"{topic}/telemetry", json.dumps(telemetry), qos=1).wait_for_publish(5)
    return client


# One script reads the whole page between two of its redraws, as a person sees it.
READ_PAGE = """
const tiles = [...document.querySelectorAll('article.tile')].map((t) => {
  const fields = {};
  for (const f of t.querySelectorAll('[data-field]')) fields[f.dataset.field] = f.innerText;
  return [t.dataset.station.split('/')[1], fields];
});
const cards = {};
for (const c of document.querySelectorAll('[data-total]')) {
  cards[c.dataset.total] = c.querySelector('.value').innerText;
}
const bars = [...document.querySelectorAll('svg.hourly rect.bar')].map(
  (b) => parseInt(b.dataset.checkins, 10));
return {order: tiles.map((t) => t[0]), tiles: Object.fromEntries(tiles), cards, bars,
        h1: document.querySelector('h1').innerText, lang: document.documentElement.lang,
        empty: !document.getElementById('empty').hidden};
"""


def read_page(browser: WebDriver) -> dict[str, Any]:
    return dict(browser.execute_script(READ_PAGE))


def shows(browser: WebDriver, station: str, name: str, text: str) -> bool:
    return read_page(browser)["tiles"].get(station, {}).get(name) == text


def showing(station: str, name: str, text: str) -> Callable[[WebDriver], bool]:
    return lambda d: shows(d, station, name, text)


def keep_screenshot(path: Path) -> None:
    """Check a screenshot is a real picture; copy it where GATEWAY_SCREENSHOTS says (the docs'
    pictures are refreshed with GATEWAY_SCREENSHOTS=docs/screenshots pytest
    tests/test_gateway_page.py)."""
    with Image.open(path) as img:
        assert img.width >= 380 and img.height >= 600, img.size
        assert len(img.convert("RGB").getcolors(1 << 20) or []) > 50, "a blank page"
    target = os.environ.get("GATEWAY_SCREENSHOTS")
    if target:
        shutil.copy(path, Path(target) / path.name)


@contextmanager
def four_stations(
    tmp_path: Path, broker: Broker
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """A drill through the kiosk's real code (K03, its agent stops at the end), an agent that
    stays online (K05), one breaking the 30-minute rule (K07), one whose link dies so the
    broker publishes its Last Will (K09). Yields what K03 and K05 committed."""
    late = light_station(
        broker, "K07", {"outbox_depth": 180, "oldest_undelivered_age_s": 2400.0, "alerts": {}}
    )
    late.disconnect()
    late.loop_stop()
    lost = light_station(broker, "K09", None)
    lost.loop_stop()
    lost.socket().close()  # no DISCONNECT: the broker publishes the Last Will
    _, k05 = station_config(tmp_path / "K05", broker.url, station="K05")
    k05_db = station_db(k05)
    k05_events = produce(k05_db, k05.source, 20, per_transaction=5)
    drill = drill_config(tmp_path / "K03", broker.url)
    with agent_thread(k05):
        wait_until(lambda: undelivered(k05_db) == 0, 20, "K05 delivered")
        k05_db.conn.close()
        assert main(["simulate", "--config", str(drill), "--scenario", str(DRILL)]) == 0
        k03_db = open_db(tmp_path / "K03" / "station.db")
        try:
            k03_events = check_outbox(k03_db.conn)
        finally:
            k03_db.conn.close()
        yield k03_events, k05_events


def check_english(browser: WebDriver, want: Tally, k03_events: list[dict[str, Any]]) -> None:
    k03 = want.station(("T01", "K03"))
    page = read_page(browser)
    assert page["order"][0] == "K07"
    assert sorted(page["order"]) == ["K03", "K05", "K07", "K09"]
    k07, k05, k03_tile = page["tiles"]["K07"], page["tiles"]["K05"], page["tiles"]["K03"]
    assert k07["state"] == "Late upload"
    assert k07["why"] == "oldest undelivered event over 30 min"
    assert (k07["outbox_depth"], k07["oldest"], k07["release"]) == ("180", "40 min", "2026.11.2")
    assert k05["state"] == "Online"
    assert k03_tile["sampled"] == str(k03.sampled)
    tubes = f"{k03.tubes_opened} / {k03.tubes_sealed} / {k03.tubes_voided}"
    assert k03_tile["tubes"] == tubes
    assert k03_tile["decisions"].startswith(f"pool {k03.decisions['pool']} · ")
    assert k03_tile["through"] == str(len(k03_events))
    total = want.total()
    cards = page["cards"]
    assert cards["stations"] == "4"
    assert (cards["checkins"], cards["sampled"]) == (str(total.checkins), str(total.sampled))
    assert len(page["bars"]) == 24 and sum(page["bars"]) == total.checkins


def check_chinese_and_the_phone(browser: WebDriver, shots: Path) -> None:
    browser.find_element(By.CSS_SELECTOR, 'button[data-lang="zh"]').click()
    wait_for(browser, lambda d: shows(d, "K07", "state", "超时未上传"), 10, "Chinese")
    page = read_page(browser)
    assert page["tiles"]["K07"]["why"] == "最早的未上传事件已超过 30 分钟"
    assert page["tiles"]["K05"]["state"] == "在线"
    assert page["tiles"]["K09"]["state"] == "离线"
    assert (page["h1"], page["lang"]) == ("采样点看板", "zh-CN")
    full_page_screenshot(browser, shots / "gateway-zh.png", DESKTOP[0])
    browser.set_window_size(*PHONE)
    browser.refresh()  # the language is remembered
    wait_for(browser, lambda d: shows(d, "K05", "state", "在线"), 10, "the phone's page")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], "the page must not scroll sideways on a phone"
    full_page_screenshot(browser, shots / "gateway-phone-zh.png", PHONE[0])


def check_another_day(browser: WebDriver, day: Day) -> None:
    """Picking another day shows that day: the same stations, none of today's counts."""
    before = str(day.day - timedelta(days=1))
    field = browser.find_element(By.ID, "day")
    assert field.get_attribute("value") == str(day)
    browser.execute_script(
        "arguments[0].value = arguments[1];arguments[0].dispatchEvent(new Event('change'));",
        field,
        before,
    )
    wait_for(browser, lambda d: f"day={before}" in d.current_url, 10, "the other day's page")
    wait_for(browser, lambda d: read_page(d)["cards"].get("checkins") == "0", 10, before)
    page = read_page(browser)
    assert page["cards"]["stations"] == "4" and sum(page["bars"]) == 0
    csv_link = browser.find_element(By.ID, "report-csv").get_attribute("href") or ""
    assert csv_link.endswith(f"/report?format=csv&day={before}")


@pytest.mark.timeout(240)
def test_the_live_page_in_a_real_browser(tmp_path: Path, broker: Broker) -> None:
    port = free_port()
    shots = tmp_path / "shots"
    with gateway_process(tmp_path, broker, port), chromium(DESKTOP) as browser:
        url = f"http://127.0.0.1:{port}/"
        browser.get(url)  # no language chosen yet: Chinese
        wait_for(browser, lambda d: read_page(d)["empty"], 15, "the page of no station")
        first = read_page(browser)
        assert (first["h1"], first["lang"], first["order"]) == ("采样点看板", "zh-CN", [])

        with four_stations(tmp_path, broker) as (k03_events, k05_events):
            day = Day.parse(None, TZ, event_time(k03_events[0]["time"]))
            want = tally_events(k03_events + k05_events, day)
            k03 = want.station(("T01", "K03"))
            assert k03.checkins > 0, "a drill without check-ins shows nothing"
            browser.get(f"{url}?lang=en&day={day}")
            for station, name, text in (
                ("K03", "checkins", str(k03.checkins)),
                ("K09", "state", "Offline"),  # the broker's Last Will
                ("K03", "state", "Offline"),  # the drill's agent said goodbye when it ended
                ("K05", "sampled", "18"),
            ):
                wait_for(browser, showing(station, name, text), 30, f"{station} {name} {text}")
            check_english(browser, want, k03_events)
            full_page_screenshot(browser, shots / "gateway-en.png", DESKTOP[0])
            check_chinese_and_the_phone(browser, shots)
            check_another_day(browser, day)
    for name in ("gateway-en.png", "gateway-zh.png", "gateway-phone-zh.png"):
        keep_screenshot(shots / name)

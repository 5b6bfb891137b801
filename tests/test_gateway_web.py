"""The gateway's page and JSON API over HTTP: routes, read-only, the token rule, and the
``--http`` option of the real ``station gateway`` process fed by a station's agent."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from edge_agent.db import open_db
from edge_agent.gateway.counts import Day, event_time, tally_events
from edge_agent.gateway.store import GatewayStore, open_store
from edge_agent.gateway.web import (
    TOKEN_ENV,
    WebServer,
    WebSettings,
    is_loopback,
    parse_bind,
    read_token,
)
from firmware.errors import ConfigError
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
from tests.support.gateway_day import DAY, TZ, day_total, deliver, station_day
from tests.support.mosquitto import Broker
from tests.support.ports import free_port, wait_for_port
from tests.support.station import T0

DRILL = ROOT / "examples" / "drills" / "normal-morning.json"

NOW = T0 + 2 * 3600
TOKEN = "d9c1a0f3e4b5a6c7d8e9f0a1b2c3d4e5"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatewayStore]:
    s = open_store(tmp_path / "gateway.db")
    deliver(s, station_day(tmp_path / "K03"), now=NOW - 60)
    s.record_station("T01", "K03", "status", {"state": "online"}, NOW - 60)
    try:
        yield s
    finally:
        s.close()


def get(
    server: WebServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def serve(store: GatewayStore, host: str = "127.0.0.1", token: str | None = None) -> WebServer:
    return WebServer(store, WebSettings(host, 0, TZ, token=token, poll_s=0.5), clock=lambda: NOW)


def test_the_api_serves_the_board_and_its_parts(store: GatewayStore) -> None:
    with serve(store) as server:
        status, headers, body = get(server, f"/api/board?day={DAY}")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert headers["cache-control"] == "no-store"
        board = json.loads(body)
        assert board["day"] == DAY and board["generated_at"] == NOW and board["poll_s"] == 0.5
        assert [s["station"] for s in board["stations"]] == ["K03"]
        assert board["stations"][0]["state"] == "online"
        assert board["totals"]["counts"] == day_total()
        for part in ("stations", "totals", "hourly"):
            status, _, body = get(server, f"/api/{part}?day={DAY}")
            got = json.loads(body)
            assert status == 200 and set(got) == {"day", "generated_at", part}
            assert got[part] == board[part]
        # Without a day: today in the township's zone (NOW is 18:00 there, the same day).
        assert json.loads(get(server, "/api/totals")[2])["day"] == DAY
        # Another day has the station but none of its counts.
        other = json.loads(get(server, "/api/board?day=2026-11-24")[2])
        assert other["totals"]["counts"]["checkins"] == 0
        assert [s["station"] for s in other["stations"]] == ["K03"]


def test_every_route_the_guide_names_answers(store: GatewayStore) -> None:
    guide = (ROOT / "docs" / "gateway-page.md").read_text()
    routes = re.findall(r"^\| `GET (/[a-z/]+)", guide, flags=re.MULTILINE)
    assert routes == ["/api/board", "/api/stations", "/api/totals", "/api/hourly", "/report"]
    with serve(store) as server:
        for route in routes:
            assert get(server, f"{route}?day={DAY}")[0] == 200, route
    for shot in ("gateway-en.png", "gateway-zh.png", "gateway-phone-zh.png"):
        assert f"(screenshots/{shot})" in guide
        assert (ROOT / "docs" / "screenshots" / shot).stat().st_size > 10_000


def test_the_page_and_its_files(store: GatewayStore) -> None:
    with serve(store) as server:
        status, headers, body = get(server, "/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b'data-poll-s="0.5"' in body and b"/static/app.js" in body
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            status, headers, body = get(server, f"/static/{name}")
            assert status == 200 and headers["content-type"].startswith(kind) and body
        for path in ("/static/../web.py", "/static/views.py", "/etc/passwd", "/api/nothing"):
            assert get(server, path)[0] == 404, path


def test_read_only_and_bad_requests_are_refused_clearly(store: GatewayStore) -> None:
    with serve(store) as server:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert get(server, "/api/board", method=method)[0] == 501, method
        status, _, body = get(server, "/api/board?day=2026-02-30")
        assert status == 400 and b"not a day" in body
        status, _, body = get(server, f"/report?day={DAY}&format=pdf")
        assert status == 400 and b"csv or xlsx" in body
        assert get(server, "/api/board", method="HEAD")[0] == 200
    rows = store.query("SELECT count(*) FROM events")
    assert rows == [(23,)]  # nothing written, nothing lost


def test_the_page_links_a_report_that_opens_as_a_table(store: GatewayStore) -> None:
    with serve(store) as server:
        page = get(server, "/")[2]
        assert b'href="/report?format=csv"' in page and b'href="/report?format=xlsx"' in page
        status, headers, body = get(server, f"/report?day={DAY}&format=csv")
    assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"] == f'attachment; filename="stations-{DAY}.csv"'
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    station_total = [r for r in table if r[2] == "K03" and r[3] == "total"]
    assert len(station_total) == 1 and int(station_total[0][4]) == day_total()["checkins"]


# --- who may look -------------------------------------------------------------------------


def test_a_bind_beyond_loopback_is_refused_without_a_token(store: GatewayStore) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "gateway.example", "::"):
        with pytest.raises(ConfigError, match="not loopback: give a token"):
            serve(store, host=host)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("127.example")


def test_with_a_token_every_request_must_carry_it(store: GatewayStore) -> None:
    with serve(store, host="0.0.0.0", token=TOKEN) as server:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            status, got, body = get(server, "/api/board", headers)
            assert status == 401 and got["www-authenticate"].startswith("Bearer")
            assert b"stations" not in body
        assert get(server, "/", {"Authorization": f"Basic {TOKEN}"})[0] == 401
        assert get(server, "/api/board", {"Cookie": "gateway_token=nope"})[0] == 401
        assert get(server, "/api/board", {"Cookie": "=;;=bad"})[0] == 401
        status, _, body = get(server, "/api/board", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["stations"]
        # A first visit with the token in the link: a cookie, and the token out of the URL.
        assert get(server, "/?token=wrong-token-0123456789&lang=en")[0] == 401
        status, headers, _ = get(server, f"/?token={TOKEN}&lang=en")
        assert status == 303 and headers["location"] == "/?lang=en"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert get(server, "/api/totals", {"Cookie": cookie})[0] == 200


def test_the_token_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    assert read_token(good, {}) == TOKEN
    assert read_token(None, {TOKEN_ENV: TOKEN}) == TOKEN
    assert read_token(None, {}) is None
    short = tmp_path / "short"
    short.write_text("letmein")
    for path, env in ((short, {}), (None, {TOKEN_ENV: "letmein"}), (None, {TOKEN_ENV: "a b" * 9})):
        with pytest.raises(ConfigError, match="16 or more"):
            read_token(path, env)
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(tmp_path / "missing", {})


def test_the_bind_address_is_parsed_or_refused() -> None:
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    for bad in ("127.0.0.1:http", "127.0.0.1:70000", ":8080", "", "host:"):
        with pytest.raises(ConfigError, match="--http"):
            parse_bind(bad)


# --- the real process, a real broker, a real browser --------------------------------------


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


def keep_screenshot(path: Path) -> None:
    """Check a screenshot is a real picture; copy it where GATEWAY_SCREENSHOTS says (the docs'
    pictures are refreshed with GATEWAY_SCREENSHOTS=docs/screenshots)."""
    with Image.open(path) as img:
        assert img.width >= 380 and img.height >= 600, img.size
        assert len(img.convert("RGB").getcolors(1 << 20) or []) > 50, "a blank page"
    target = os.environ.get("GATEWAY_SCREENSHOTS")
    if target:
        shutil.copy(path, Path(target) / path.name)


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

        # Four stations: a drill through the kiosk's real code, an agent that stays online,
        # one breaking the 30-minute rule, one whose link dies (the broker's Last Will).
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
            assert main(["simulate", "--config", str(drill), "--scenario", str(DRILL)]) == 0
            k03_db = open_db(tmp_path / "K03" / "station.db")
            try:
                k03_events = check_outbox(k03_db.conn)
            finally:
                k03_db.conn.close()
            k05_db.conn.close()
            day = Day.parse(None, TZ, event_time(k03_events[0]["time"]))
            want = tally_events(k03_events + k05_events, day)
            k03 = want.station(("T01", "K03"))
            assert k03.checkins > 0, "a drill without check-ins shows nothing"

            browser.get(f"{url}?lang=en&day={day}")
            wait_for(
                browser,
                lambda d: shows(d, "K03", "checkins", str(k03.checkins)),
                30,
                "K03's check-ins",
            )
            wait_for(browser, lambda d: shows(d, "K09", "state", "Offline"), 30, "K09's Last Will")
            # The drill's agent said goodbye when the drill ended: its status is offline.
            wait_for(browser, lambda d: shows(d, "K03", "state", "Offline"), 30, "K03 offline")
            wait_for(browser, lambda d: shows(d, "K05", "sampled", "18"), 30, "K05's samples")

            page = read_page(browser)
            assert page["order"][0] == "K07" and sorted(page["order"]) == [
                "K03",
                "K05",
                "K07",
                "K09",
            ]
            k07, k05, k03_tile = page["tiles"]["K07"], page["tiles"]["K05"], page["tiles"]["K03"]
            assert k07["state"] == "Late upload"
            assert k07["why"] == "oldest undelivered event over 30 min"
            assert (k07["outbox_depth"], k07["oldest"], k07["release"]) == (
                "180",
                "40 min",
                "2026.11.2",
            )
            assert k05["state"] == "Online"
            assert k03_tile["sampled"] == str(k03.sampled)
            assert (
                k03_tile["tubes"] == f"{k03.tubes_opened} / {k03.tubes_sealed} / {k03.tubes_voided}"
            )
            assert k03_tile["decisions"].startswith(f"pool {k03.decisions['pool']} · ")
            assert k03_tile["through"] == str(len(k03_events))
            total = want.total()
            cards = page["cards"]
            assert cards["stations"] == "4"
            assert (cards["checkins"], cards["sampled"]) == (
                str(total.checkins),
                str(total.sampled),
            )
            assert len(page["bars"]) == 24 and sum(page["bars"]) == total.checkins
            full_page_screenshot(browser, shots / "gateway-en.png", DESKTOP[0])

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
    for name in ("gateway-en.png", "gateway-zh.png", "gateway-phone-zh.png"):
        keep_screenshot(shots / name)


def test_the_page_is_refused_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk_ui.cli",
            "gateway",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--allow-plaintext",
            "--db",
            str(tmp_path / "gateway.db"),
            "--http",
            f"0.0.0.0:{free_port()}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != TOKEN_ENV},
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "not loopback: give a token" in out.stderr

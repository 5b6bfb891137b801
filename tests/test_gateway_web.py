"""The gateway's page and JSON API over HTTP: routes, read-only, the cache, the token rule,
and the ``--http`` option of the real ``station gateway`` (the browser: test_gateway_page)."""

from __future__ import annotations

import csv
import http.client
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.gateway.store import GatewayStore, open_store
from edge_agent.gateway.web import (
    TOKEN_ENV,
    Page,
    WebServer,
    WebSettings,
    is_loopback,
    parse_bind,
    read_token,
)
from firmware.errors import ConfigError
from tests.support.drills import ROOT
from tests.support.edge import wait_until
from tests.support.gateway_day import DAY, TZ, day_total, deliver, station_day
from tests.support.ports import free_port
from tests.support.station import T0

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


def serve(
    store: GatewayStore,
    host: str = "127.0.0.1",
    token: str | None = None,
    clock: Callable[[], float] = lambda: NOW,
) -> WebServer:
    return WebServer(store, WebSettings(host, 0, TZ, token=token, poll_s=0.5), clock=clock)


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


def test_many_pages_cost_one_count_a_second(store: GatewayStore, tmp_path: Path) -> None:
    now = [NOW]
    with serve(store, clock=lambda: now[0]) as server:
        first = get(server, f"/api/board?day={DAY}")[2]
        deliver(store, station_day(tmp_path / "K04", "K04"), now=NOW)
        # Within the second, every page gets the same board (the new station not yet on it)...
        assert get(server, f"/api/board?day={DAY}")[2] == first
        # ...then the next one counts again (a second, or five times what counting took).
        now[0] += 60
        board = json.loads(get(server, f"/api/board?day={DAY}")[2])
    assert [s["station"] for s in board["stations"]] == ["K03", "K04"]  # K04: no status yet
    assert board["totals"]["counts"]["checkins"] == 2 * day_total()["checkins"]
    assert board["generated_at"] == NOW + 60


def test_the_token_in_a_first_visit_never_reaches_the_log(
    store: GatewayStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_agent.gateway.web")
    with serve(store, host="0.0.0.0", token=TOKEN) as server:
        assert get(server, f"/?token={TOKEN}&lang=en")[0] == 303
        assert get(server, "/?token=not-the-token-at-all&lang=en")[0] == 401
    lines = [r.getMessage() for r in caplog.records]
    assert any('"GET /?token=… ' in line or "GET /?token=…&lang=en" in line for line in lines)
    assert not [line for line in lines if TOKEN in line or "not-the-token" in line]


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


def test_instances_on_one_host_share_the_page_address(store: GatewayStore) -> None:
    settings = WebSettings("127.0.0.1", free_port(), TZ, poll_s=0.5)
    first, second = Page(store, settings, retry_s=0.1), Page(store, settings, retry_s=0.1)
    first.start()
    second.start()  # the address is taken: no error, it waits for it
    try:
        assert first.server is not None and second.server is None
        assert get(first.server, "/api/totals")[0] == 200
        first.close()  # the instance serving the page stops...
        wait_until(lambda: second.server is not None, 10, "the page taken over")
        assert second.server is not None
        assert get(second.server, "/api/totals")[0] == 200  # ...another one serves it
    finally:
        second.close()
        first.close()
    other = WebSettings("192.0.2.1", free_port(), TZ)  # not this host's: not a wait, an error
    with pytest.raises(ConfigError, match="not loopback"):
        Page(store, other)
    with pytest.raises(ConfigError, match=r"cannot listen on 192\.0\.2\.1"):
        Page(store, WebSettings("192.0.2.1", 8080, TZ, token=TOKEN)).start()


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


@given(
    host=st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    port=st.integers(0, 65535),
)
def test_any_address_and_port_are_read_back(host: str, port: int) -> None:
    text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_bind(text) == (host, port)


def test_the_bind_address_is_parsed_or_refused() -> None:
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    for bad in ("127.0.0.1:http", "127.0.0.1:70000", ":8080", "", "host:"):
        with pytest.raises(ConfigError, match="--http"):
            parse_bind(bad)


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

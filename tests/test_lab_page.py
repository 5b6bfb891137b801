"""The lab's page: its JSON routes over HTTP, who may write, and a real headless Chromium
typing like a USB scanner."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from edge_agent.gateway import recall
from edge_agent.gateway.lab_web import LabPage
from edge_agent.gateway.store import GatewayStore, open_store
from tests.support.chromium import chromium, missing, wait_for
from tests.support.lab import DAY, Township, members

TOKEN = "0123456789abcdef0123"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatewayStore]:
    with open_store(tmp_path / "gateway.db") as s:
        t = Township(s)
        t.seal("TB000001", members("TB000001"), at=DAY)
        t.seal("TB000002", members("TB000002"), at=DAY + 60)
        t.dispatch("BX0001", ["TB000001", "TB000002"], at=DAY + 120)
        yield s


@pytest.fixture
def page(store: GatewayStore) -> Iterator[LabPage]:
    with LabPage(store, "127.0.0.1", 0, limit_h=1e6) as p:
        yield p


def call(
    url: str, body: Any = None, *, ctype: str = "application/json", token: str | None = None
) -> tuple[int, Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data is not None:
        request.add_header("Content-Type", ctype)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def test_a_box_received_over_the_page(page: LabPage, store: GatewayStore) -> None:
    status, got = call(f"{page.url}/api/receive", {"box": "bx0001", "tubes": ["TB000001"]})
    assert status == 200
    assert [(p["kind"], p["tube"]) for p in got["problems"]] == [("missing", "TB000002")]
    assert "  ! tube TB000002 was dispatched in BX0001 but is missing" in got["lines"]
    assert store.query("SELECT count(*) FROM lab_receipts")[0][0] == 1


def test_one_result_over_the_page(page: LabPage, store: GatewayStore) -> None:
    status, got = call(f"{page.url}/api/result", {"tube": "TB000002", "result": "positive"})
    assert (status, got["stored"], got["errors"], got["recall"]) == (200, 1, [], {"T01": [1, 10]})
    assert len(recall.listed(store, "T01")) == 10
    status, got = call(f"{page.url}/api/result", {"tube": "TB000009", "result": "positive"})
    assert status == 200
    assert got["errors"] == [
        "tube TB000009 was never sealed at any station of this township: not kept"
    ]
    status, got = call(f"{page.url}/api/result", {"tube": "TB000001", "result": "maybe"})
    assert status == 400
    assert "result 'maybe' is not negative, positive or invalid" in got["error"]


def test_bad_requests_are_refused_and_nothing_is_written(
    page: LabPage, store: GatewayStore
) -> None:
    url = f"{page.url}/api/receive"
    form = b"box=BX0001&tubes=TB000001"
    assert call(url, form, ctype="application/x-www-form-urlencoded")[0] == 415  # no CSRF form
    assert call(url, b"[1, 2]")[0] == 400
    assert call(url, b"not json")[0] == 400
    assert call(url, {"box": "", "tubes": []})[1] == {"error": "box: a box barcode is needed"}
    assert call(url, {"box": "BX0001", "tubes": "TB000001"})[0] == 400
    assert call(f"{page.url}/api/result", {"tube": "TB1,positive"})[0] == 400
    assert call(f"{page.url}/api/nothing", {"a": 1})[0] == 404
    assert store.query("SELECT count(*) FROM lab_receipts")[0][0] == 0
    assert store.query("SELECT count(*) FROM lab_results")[0][0] == 0


def test_a_token_guards_every_route(store: GatewayStore) -> None:
    with LabPage(store, "127.0.0.1", 0, token=TOKEN) as p:
        assert call(p.url)[0] == 401
        assert call(f"{p.url}/api/receive", {"box": "BX0001", "tubes": []})[0] == 401
        assert (
            call(f"{p.url}/api/receive", {"box": "BX0001", "tubes": []}, token="x" * 20)[0] == 401
        )
        status, page_text = call(p.url, token=TOKEN)
        assert status == 200
        assert "实验室收样与结果 · Lab receipt and results" in page_text
    assert store.query("SELECT count(*) FROM lab_receipts")[0][0] == 0


@pytest.mark.skipif(missing() is not None, reason=str(missing()))
@pytest.mark.timeout(120)
def test_a_scanner_typing_into_the_page_in_chromium(page: LabPage, store: GatewayStore) -> None:
    with chromium() as driver:
        driver.get(page.url)
        scan = driver.find_element(By.ID, "scan")
        for line in ("TB000001", "BX0001", "TB000001", "TB000077", "HELLO"):
            scan.send_keys(line + Keys.ENTER)
        note = wait_for(
            driver, lambda d: d.find_element(By.ID, "scan-note").text or None, 10, "a note"
        )
        assert note == "既不是试管也不是转运箱 · neither a tube nor a box: HELLO"
        assert driver.find_element(By.ID, "count").text == "2"
        scan.send_keys(Keys.ENTER)  # an empty line ends the box
        receipt = wait_for(
            driver,
            lambda d: d.find_element(By.ID, "receipt").text or None,
            20,
            "the receipt on the page",
        )
        assert "box BX0001 from T01/K03: 2 tubes received" in receipt
        assert "! tube TB000002 was dispatched in BX0001 but is missing" in receipt
        assert "! tube TB000077 is in BX0001 but no station sealed it" in receipt
        problems = driver.find_elements(By.CSS_SELECTOR, "#receipt p.problem")
        assert len(problems) == 2
        driver.find_element(By.ID, "tube").send_keys("TB000001")
        driver.find_element(By.CSS_SELECTOR, "#result option[value=positive]").click()
        driver.find_element(By.ID, "save").click()
        out = wait_for(
            driver,
            lambda d: d.find_element(By.ID, "result-out").text or None,
            20,
            "the result's answer",
        )
        assert "已保存 · stored" in out
        assert "recall list T01: 1–10" in out
    assert {s for s in recall.listed(store, "T01")} == set(members("TB000001"))
    assert store.query("SELECT tubes FROM lab_receipts") == [('["TB000001", "TB000077"]',)]


def test_the_lab_commands_say_what_they_need(capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk_ui.cli import main  # noqa: PLC0415 - the dispatcher, as a shell runs it

    for action in (["receive"], ["results", "import", "x.csv"], ["export", "--day", "2026-12-03"]):
        assert main(["gateway", *action]) == 2
        assert "a SQLite file or a postgresql:// URL is required" in capsys.readouterr().err
    assert main(["gateway", "--broker", "http://x", "recall", "--db", "g.db"]) == 2
    assert "must look like mqtts://host:port" in capsys.readouterr().err

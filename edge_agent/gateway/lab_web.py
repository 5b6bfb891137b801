"""The lab's page (``station gateway lab --http 127.0.0.1:8081``): receive boxes with a USB
scanner, and enter one result at a time.

The township's live page (``web.py``) is read-only by design; this one writes (receipts and
results), so it is a server of its own, with the same rules for who may reach it: loopback
unless a token is given (``--http-token-file`` or ``STATION_GATEWAY_HTTP_TOKEN``), and then
every request carries it (``Authorization: Bearer``, or the cookie a first visit to
``/?token=...`` sets). Writes are ``POST`` of JSON only (``Content-Type: application/json``):
a page on another site cannot send that to the lab's computer without the browser asking
first (CORS), which this server never allows.

Routes: ``GET /`` (the page, Chinese and English), ``GET /static/lab.js``,
``POST /api/receive`` ``{"box": "BX...", "tubes": ["TB...", ...]}`` -> the receipt
(``receipt.Receipt``: the problems and hours), ``POST /api/result``
``{"tube", "result", "time"?, "reason"?}`` -> the import report of that one row.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import signal
import threading
from dataclasses import asdict
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge_agent.errors import StorageError
from edge_agent.gateway.lab_import import LabFileError, result_from_page
from edge_agent.gateway.receipt import DEFAULT_LIMIT_H, receive_box
from edge_agent.gateway.store import GatewayStore, open_store
from edge_agent.gateway.web import HEADERS, is_loopback, parse_bind, read_token
from firmware.errors import ConfigError

log = logging.getLogger(__name__)

COOKIE = "lab_token"
MAX_BODY = 64 * 1024
MAX_TUBES = 200
STATIC = {
    "lab.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "lab.css": "text/css; charset=utf-8",
}


class LabPage:
    """The lab page's server in its own thread: ``start``, then ``close`` (a timed join)."""

    def __init__(
        self,
        store: GatewayStore,
        host: str,
        port: int,
        *,
        token: str | None = None,
        limit_h: float = DEFAULT_LIMIT_H,
    ) -> None:
        if not is_loopback(host) and token is None:
            raise ConfigError("--http", [f"{host} is not loopback: give a token"])
        self.store = store
        self.token = token
        self.limit_h = limit_h
        self.write_lock = threading.Lock()  # one store connection writes at a time
        try:
            self._httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise ConfigError("--http", [f"cannot listen on {host}:{port}: {exc}"]) from exc
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="lab-page"
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("the lab's page is at %s", self.url)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)
        if self._thread.is_alive():
            raise RuntimeError("the lab page's thread did not stop within 5 s")

    def __enter__(self) -> LabPage:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def authorised(self, header: str | None, cookie: str | None) -> bool:
        if self.token is None:
            return True
        offered = []
        if header and header.startswith("Bearer "):
            offered.append(header.removeprefix("Bearer ").strip())
        try:
            jar = SimpleCookie(cookie or "")
        except CookieError:
            jar = SimpleCookie()
        if COOKIE in jar:
            offered.append(jar[COOKIE].value)
        return any(hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)

    def receive(self, body: dict[str, Any]) -> dict[str, Any]:
        box, tubes = body.get("box"), body.get("tubes")
        if not isinstance(box, str) or not box.strip() or len(box) > 64:
            raise ValueError("box: a box barcode is needed")
        if not isinstance(tubes, list) or len(tubes) > MAX_TUBES:
            raise ValueError(f"tubes: a list of at most {MAX_TUBES} tube barcodes is needed")
        if not all(isinstance(t, str) and 0 < len(t.strip()) <= 64 for t in tubes):
            raise ValueError("tubes: every tube is a barcode of 1 to 64 characters")
        with self.write_lock:
            got = receive_box(self.store, box.strip().upper(), tubes, limit_h=self.limit_h)
        return {**asdict(got), "lines": got.lines()}

    def result(self, body: dict[str, Any]) -> dict[str, Any]:
        cells = [body.get(k) or "" for k in ("tube", "result", "time", "reason")]
        if not all(isinstance(c, str) for c in cells):
            raise ValueError("tube, result, time and reason are text")
        if any(ch in c for c in cells for ch in ',;\t"\n\r'):
            raise ValueError("no commas, semicolons, tabs, quotes or line breaks, please")
        with self.write_lock:
            report = result_from_page(self.store, ",".join(cells))
        return {
            "stored": report.stored,
            "repeats": report.repeats,
            "corrections": report.corrections,
            "errors": [e.message for e in report.errors],
            "recall": {t: list(v) for t, v in report.recall.items()},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    app: LabPage


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "station-gateway-lab"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _allowed(self) -> bool:
        app = self.server.app
        if app.authorised(self.headers.get("Authorization"), self.headers.get("Cookie")):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"a token is needed\n", "text/plain")
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        token = parse_qs(url.query).get("token", [None])[-1]
        if token is not None and self.server.app.authorised(f"Bearer {token}", None):
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", url.path or "/")
            self.send_header("Set-Cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self._allowed():
            return
        if url.path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, _static("lab.html"), "text/html; charset=utf-8")
        name = url.path.removeprefix("/static/")
        if url.path.startswith("/static/") and name in STATIC:
            return self._send(HTTPStatus.OK, _static(name), STATIC[name])
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if not self._allowed():
            return
        app = self.server.app
        routes = {"/api/receive": app.receive, "/api/result": app.result}
        route = routes.get(urlsplit(self.path).path)
        if route is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        length = int(self.headers.get("Content-Length") or 0)
        if ctype != "application/json" or not 0 < length <= MAX_BODY:
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (at most 64 KiB)")
        try:
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ValueError("a JSON object is needed")
            answer = route(body)
        except (ValueError, LabFileError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except StorageError as exc:
            log.error("the lab page could not write: %s", exc)
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"not stored: {exc}")
        data = json.dumps(answer, ensure_ascii=False).encode()
        self._send(HTTPStatus.OK, data, "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        data = json.dumps({"error": message}, ensure_ascii=False).encode()
        self._send(status, data, "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def _static(name: str) -> bytes:
    return resources.files("edge_agent.gateway").joinpath("static", name).read_bytes()


# --- `station gateway lab` ---------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", dest="lab_db", help="the store: a SQLite file or postgresql://")
    parser.add_argument(
        "--http",
        dest="lab_http",
        default="127.0.0.1:8081",
        metavar="HOST:PORT",
        help="where to serve the lab's page (loopback unless a token is given)",
    )
    parser.add_argument("--limit-hours", type=float, default=DEFAULT_LIMIT_H)


def run(args: argparse.Namespace) -> int:
    target = args.lab_db or args.db
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    host, port = parse_bind(args.lab_http)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    token = read_token(getattr(args, "http_token_file", None))
    with (
        open_store(target) as store,
        LabPage(store, host, port, token=token, limit_h=args.limit_hours) as page,
    ):
        print(f"the lab's page is at {page.url}", flush=True)
        stop.wait()
    return 0

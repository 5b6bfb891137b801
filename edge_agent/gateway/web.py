"""The gateway's live page and JSON API (``station gateway --http 127.0.0.1:8080``).

Read-only: every route is a GET (or HEAD) over ``views.board``, and nothing here writes to
the store. It binds to loopback unless told otherwise; any other address needs a token (from
``--http-token-file`` or ``STATION_GATEWAY_HTTP_TOKEN``, never a default), and once a token
is set every request must carry it: ``Authorization: Bearer <token>``, or the cookie that a
first visit to ``/?token=<token>`` sets. docs/gateway-page.md describes the routes.

The standard library's ``ThreadingHTTPServer`` serves it; the page itself (static/) polls
``/api/board`` and draws with plain DOM calls and inline SVG: the campaign's network reaches
no CDN.
"""

from __future__ import annotations

import argparse
import errno
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from edge_agent.gateway.counts import Day, ReadStore, zone
from edge_agent.gateway.views import board
from firmware.errors import ConfigError

log = logging.getLogger(__name__)

TOKEN_ENV = "STATION_GATEWAY_HTTP_TOKEN"
COOKIE = "gateway_token"
_SECRET = re.compile(r"(token)=[^&\s\"]*")
# However many pages poll, the board is computed at most once a second, and never more than
# a fifth of the time: a board that takes 2 s to count (a city's day) is kept for 10 s.
CACHE_S = 1.0
RETRY_S = 10.0  # how soon another instance on the host takes the page over
CACHE_FACTOR = 5.0
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "i18n.js": "text/javascript; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class WebSettings:
    host: str
    port: int
    tz: tzinfo
    token: str | None = None
    township: str | None = None  # one township's stations only (a city gateway serves many)
    poll_s: float = 5.0


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) or a bare port on loopback."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError("--http", [f"must look like 127.0.0.1:8080, not {text!r}"])
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(token_file: Path | None, env: dict[str, str] | None = None) -> str | None:
    """The page's token from a file (first line) or the environment; None when neither."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError("--http-token-file", [f"cannot read {token_file}: {exc}"]) from exc
        _check_token("--http-token-file", token)
        return token
    token = (os.environ if env is None else env).get(TOKEN_ENV, "").strip()
    if token:
        _check_token(TOKEN_ENV, token)
    return token or None


def _check_token(where: str, token: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", token):
        raise ConfigError(
            where,
            ["the token must be 16 or more letters, digits or . _ ~ - (openssl rand -hex 32)"],
        )


def check_settings(settings: WebSettings) -> None:
    if not is_loopback(settings.host) and settings.token is None:
        raise ConfigError(
            "--http",
            [
                f"{settings.host} is not loopback: give a token with --http-token-file "
                f"or {TOKEN_ENV} (the page shows every station of the township)"
            ],
        )


def static_file(name: str) -> bytes:
    return resources.files("edge_agent.gateway").joinpath("static", name).read_bytes()


class WebServer:
    """The HTTP server in its own thread: ``start``, then ``close`` (a timed join)."""

    def __init__(
        self,
        store: ReadStore,
        settings: WebSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_settings(settings)
        self.store = store
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str | None], tuple[float, bytes]] = {}
        self._keep_s = CACHE_S
        server = _Server6 if ":" in settings.host else _Server
        try:
            self._httpd = server((settings.host, settings.port), _Handler)
        except OSError as exc:
            why = [f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"]
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUse("--http", why) from exc
            raise ConfigError("--http", why) from exc
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway-web"
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        log.info("the gateway's page is at %s", self.url)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread.is_alive():
            self._thread.join(5.0)
            if self._thread.is_alive():
                raise RuntimeError("the gateway's web thread did not stop within 5 s")

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def day(self, text: str | None) -> Day:
        return Day.parse(text, self.settings.tz, self.clock())

    def board(self, day: Day) -> bytes:
        """The board as JSON, from the cache while it is fresh (``CACHE_S``, ``CACHE_FACTOR``)."""
        key = (str(day), self.settings.township)
        with self._lock:
            now = self.clock()
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._keep_s:
                return hit[1]
            started = time.monotonic()
            body = board(self.store, day, now, self.settings.township)
            body["poll_s"] = self.settings.poll_s
            data = json.dumps(body, ensure_ascii=False).encode()
            self._keep_s = max(CACHE_S, CACHE_FACTOR * (time.monotonic() - started))
            self._cache = {key: (now, data)}
            return data

    def authorised(self, header: str | None, cookie: str | None) -> bool:
        token = self.settings.token
        if token is None:
            return True
        offered = []
        if header and header.startswith("Bearer "):
            offered.append(header.removeprefix("Bearer ").strip())
        if cookie:
            try:
                jar = SimpleCookie(cookie)
            except CookieError:
                jar = SimpleCookie()
            if COOKIE in jar:
                offered.append(jar[COOKIE].value)
        return any(hmac.compare_digest(o.encode(), token.encode()) for o in offered)


class AddressInUse(ConfigError):
    """Another process (often another gateway instance on this host) serves that address."""


class Page:
    """One gateway instance's page. Instances on one host may share an ``--http`` address
    (one unit file, one options line): the first serves it, the others try again every
    ``retry_s`` and one of them takes over within that time when the first one stops."""

    def __init__(
        self,
        store: ReadStore,
        settings: WebSettings,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_settings(settings)
        self.store = store
        self.settings = settings
        self.retry_s = retry_s
        self.clock = clock
        self.server: WebServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._serve():
            return
        log.warning(
            "%s:%d is taken (by another gateway instance on this host?); trying it again "
            "every %.0f s",
            self.settings.host,
            self.settings.port,
            self.retry_s,
        )
        self._thread = threading.Thread(target=self._retry, name="gateway-web-retry")
        self._thread.start()

    def _serve(self) -> bool:
        try:
            server = WebServer(self.store, self.settings, self.clock)
        except AddressInUse:
            return False
        server.start()
        self.server = server
        return True

    def _retry(self) -> None:
        while not self._stop.wait(self.retry_s):
            if self._serve():
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.retry_s + 5.0)
            if self._thread.is_alive():
                raise RuntimeError("the gateway's page retry thread did not stop")
        if self.server is not None:
            self.server.close()
            self.server = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    app: WebServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "station-gateway"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        # The first visit's address carries the token: it never reaches a log.
        log.debug("%s %s", self.address_string(), _SECRET.sub(r"\1=…", format % args))

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        token = query.pop("token", None)
        if token is not None and app.settings.token is not None:
            rest = "&".join(f"{k}={quote(v)}" for k, v in query.items())
            return self._login(url.path + (f"?{rest}" if rest else ""), token)
        if not app.authorised(self.headers.get("Authorization"), self.headers.get("Cookie")):
            return self._send(HTTPStatus.UNAUTHORIZED, b"a token is needed\n", "text/plain", 401)
        try:
            self._route(app, url.path, query)
        except ValueError as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode(), "text/plain; charset=utf-8")

    def _route(self, app: WebServer, path: str, query: dict[str, str]) -> None:
        if path in ("/", "/index.html"):
            page = static_file("index.html").replace(
                b"{{POLL_S}}", str(app.settings.poll_s).encode()
            )
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        if path.startswith("/static/") and path.removeprefix("/static/") in STATIC:
            name = path.removeprefix("/static/")
            return self._send(HTTPStatus.OK, static_file(name), STATIC[name])
        day = app.day(query.get("day"))
        if path == "/api/board":
            return self._json(app.board(day))
        if path in ("/api/stations", "/api/totals", "/api/hourly"):
            whole = json.loads(app.board(day))
            part = {"day": whole["day"], "generated_at": whole["generated_at"]}
            part[path.removeprefix("/api/")] = whole[path.removeprefix("/api/")]
            return self._json(json.dumps(part, ensure_ascii=False).encode())
        if path == "/report":
            from edge_agent.gateway import report  # noqa: PLC0415 (openpyxl only when asked)

            fmt = query.get("format", "csv")
            data, ctype = report.render(app.store, day, fmt, app.settings.township)
            name = f"stations-{day}.{report.EXTENSIONS[fmt]}"
            return self._send(
                HTTPStatus.OK, data, ctype, disposition=f'attachment; filename="{name}"'
            )
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _login(self, path: str, token: str) -> None:
        app = self.server.app
        if not app.authorised(f"Bearer {token}", None):
            return self._send(HTTPStatus.UNAUTHORIZED, b"wrong token\n", "text/plain", 401)
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", path or "/")
        self.send_header("Set-Cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _json(self, body: bytes) -> None:
        self._send(HTTPStatus.OK, body, "application/json; charset=utf-8")

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        ctype: str,
        code: int | None = None,
        disposition: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in HEADERS.items():
            self.send_header(k, v)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="station-gateway"')
        if disposition:
            self.send_header("Content-Disposition", disposition)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# --- station gateway --http ---------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """The page's options of ``station gateway``."""
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the live page and JSON API there (loopback unless a token is given)",
    )
    parser.add_argument(
        "--http-token-file",
        type=Path,
        metavar="FILE",
        help=f"the page's token (or {TOKEN_ENV}); required to bind beyond loopback",
    )
    parser.add_argument(
        "--timezone",
        metavar="ZONE",
        help="the township's IANA time zone for days and hours (default: local)",
    )
    parser.add_argument(
        "--township", metavar="TOWNSHIP", help="the page shows this township's stations only"
    )
    parser.add_argument(
        "--http-poll",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between the page's updates",
    )


def from_args(args: argparse.Namespace, store: ReadStore) -> Page | None:
    """The page, started, when ``--http`` was given; the caller closes it."""
    if not getattr(args, "http", None):
        return None
    host, port = parse_bind(args.http)
    if not 0.2 <= args.http_poll <= 3600:
        raise ConfigError("--http-poll", ["must be between 0.2 and 3600 seconds"])
    settings = WebSettings(
        host,
        port,
        zone(args.timezone),
        token=read_token(args.http_token_file),
        township=args.township,
        poll_s=args.http_poll,
    )
    page = Page(store, settings)
    page.start()
    return page

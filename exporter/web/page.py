"""The operator console at ``/``: static files inside the package (no build step, no CDN),
served with a strict Content-Security-Policy. The page talks to the JSON API only."""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

from exporter.features.core import CONFIG
from exporter.web.sessions import COOKIE

# no inline script or style anywhere: the page is its files; fetches and the WebSocket go
# to this service only
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}


class Assets:
    """The console's files, read once: name → (body, content type, ETag); the page in its
    three states (``index-<state>.html``: open, cookie, signed-out)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for entry in resources.files("exporter.web.console").iterdir():
            suffix = "." + entry.name.rpartition(".")[2]
            if entry.is_file() and suffix in _TYPES and entry.name != "index.html":
                self._add(entry.name, entry.read_bytes())
        page = resources.files("exporter.web.console").joinpath("index.html").read_bytes()
        for state in ("open", "cookie", "signed-out"):
            self._add(f"index-{state}.html", page.replace(b"__AUTH_STATE__", state.encode()))

    def _add(self, name: str, body: bytes) -> None:
        suffix = "." + name.rpartition(".")[2]
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        self.files[name] = (body, _TYPES[suffix], etag)


ASSETS = web.AppKey("console_assets", Assets)


def _serve(request: web.Request, name: str) -> web.Response:
    found = request.app[ASSETS].files.get(name)
    if found is None:
        raise web.HTTPNotFound()
    body, content_type, etag = found
    headers = {**HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if content_type.startswith("text/") else None
    return web.Response(body=body, content_type=content_type, charset=charset, headers=headers)


async def page(request: web.Request) -> web.Response:
    """``GET /``: the console (one page; its views are routed in the browser). A page that
    holds no session cookie opens on sign-in without asking the API (and without a 401 in the
    browser's console); whether the cookie is still good is the API's to say."""
    app = request.app
    disabled = app[CONFIG].auth.disabled
    state = "open" if disabled else "cookie" if COOKIE in request.cookies else "signed-out"
    return _serve(request, f"index-{state}.html")


async def asset(request: web.Request) -> web.Response:
    """``GET /console/{file}``: a script, style sheet or licence of the console."""
    name = request.match_info["file"]
    if name.startswith("index"):
        raise web.HTTPNotFound()
    return _serve(request, name)


def setup(app: web.Application) -> None:
    """Serve the console."""
    app[ASSETS] = Assets()
    app.router.add_get("/", page)
    app.router.add_get("/console/{file}", asset)

"""Serving the web console: its static files at /console, with a strict CSP.

The console is a client of /api/v1 like any other: it has no routes of its
own beyond its files, so whatever it does the API allows with the same
entitlements. Its files ship inside the package (nothing is fetched from
elsewhere at run time), and every response under /console carries the
security headers below, error responses included.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_DIR = Path(__file__).parent
STATIC_DIR = CONSOLE_DIR / "static"
VENDOR_DIR = CONSOLE_DIR / "vendor"
PREFIX = "/console"

# Everything comes from this server ('self'): no inline script or style, no
# eval. pdf.js runs in a module worker loaded from /console/vendor; blob: (for
# images and workers) and data: (images) are allowed for what pdf.js may build
# from a PDF in memory; the console's own code uses neither.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Revalidate on each load (ETag): an upgrade's files are picked up at once.
    (b"cache-control", b"no-cache"),
)
# Module scripts need a JavaScript type under nosniff, whatever the host's mime.types says.
JAVASCRIPT = b"text/javascript; charset=utf-8"


class ConsoleHeadersMiddleware:
    """Adds the console's security headers to every response under /console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        is_javascript = path.endswith((".js", ".mjs"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                if is_javascript and message["status"] < 300:
                    names.add(b"content-type")
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in names
                ]
                headers.extend(SECURITY_HEADERS)
                if is_javascript and message["status"] < 300:
                    headers.append((b"content-type", JAVASCRIPT))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_console(api: FastAPI) -> None:
    """Mount the console at /console (vendored files at /console/vendor); / leads there."""
    api.mount(
        f"{PREFIX}/vendor", StaticFiles(directory=VENDOR_DIR), name="console-vendor"
    )
    api.mount(PREFIX, StaticFiles(directory=STATIC_DIR, html=True), name="console")

    @api.get("/", include_in_schema=False)
    async def open_console() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    api.add_middleware(ConsoleHeadersMiddleware)

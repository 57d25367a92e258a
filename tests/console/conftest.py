"""The web console in a real browser: Playwright driving Debian's chromium against `signvault serve`.

The servers run on SQLite (these tests run on the SQLite pass of CI only: the
console is the same static files whatever the database, and the API under it
is tested on both). A module may add server settings by overriding
`console_server_env`; the tests of modules with the same settings share one
server per xdist worker, started once. Each test gets a fresh browser context
that records every request and every console message; a test fails on a
request that leaves the server and on any console error or uncaught
exception. axe-core (vendored from npm, tests only) is injected as an init
script, which the page's CSP does not govern, so the CSP stays on.
"""

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    Request,
    ViewportSize,
    sync_playwright,
)

from tests.certificates.pki import Issued, make_ca, make_pkcs12, make_signer
from tests.license.conftest import public_key_text
from tests.served import Served, serve, signvault_env

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
ADMIN_PASSWORD = "Console-Admin-1"
P12_PASSWORD = "p12-secret"
# Where the README's screenshots are written, when asked for.
SCREENSHOTS = os.environ.get("SIGNVAULT_CONSOLE_SCREENSHOTS")
PHONE: ViewportSize = {"width": 390, "height": 844}
BROWSER_TESTS = [
    pytest.mark.skipif(
        bool(os.environ.get("SIGNVAULT_TEST_DATABASE_URL")),
        reason="browser tests run once per CI run, on the SQLite pass "
        "(SIGNVAULT_TEST_DATABASE_URL is set)",
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing (Debian's chromium package; .ci/run installs it)",
    ),
]


@dataclass
class ConsoleServer:
    served: Served
    licence_issuer: Ed25519PrivateKey
    ca: Issued
    access_token_ttl: int
    _admin_token: str = ""
    _admin_token_at: float = 0.0

    @property
    def base_url(self) -> str:
        return self.served.base_url

    def log_in(
        self, username: str, password: str, totp: str | None = None
    ) -> httpx.Response:
        body = {"username": username, "password": password}
        if totp is not None:
            body["totp"] = totp
        return httpx.post(f"{self.base_url}/api/v1/auth/login", json=body, timeout=30)

    @property
    def admin_token(self) -> str:
        """The administrator's access token, fetched again before half its lifetime is gone."""
        if time.monotonic() - self._admin_token_at > self.access_token_ttl / 2:
            login = self.log_in("admin", ADMIN_PASSWORD)
            assert login.status_code == 200, login.text
            self._admin_token = login.json()["access_token"]
            self._admin_token_at = time.monotonic()
        return self._admin_token

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=30,
        )

    def admin_id(self) -> str:
        with self.api() as api:
            return str(api.get("/auth/me").json()["id"])

    def assign(self, certificate_id: str, user_id: str) -> None:
        with self.api() as api:
            assigned = api.post(
                f"/certificates/{certificate_id}/assignments", json={"user_id": user_id}
            )
            assert assigned.status_code == 201, assigned.text

    def new_pkcs12(self, common_name: str) -> bytes:
        return make_pkcs12(
            make_signer(self.ca, cn=common_name), P12_PASSWORD, chain=(self.ca,)
        )

    def import_certificate(self, common_name: str) -> dict[str, Any]:
        with self.api() as api:
            imported = api.post(
                "/certificates/base64",
                json={
                    "name": common_name,
                    "pkcs12_base64": base64.b64encode(
                        self.new_pkcs12(common_name)
                    ).decode(),
                    "password": P12_PASSWORD,
                },
            )
            assert imported.status_code == 201, imported.text
            return dict(imported.json())

    def create_user(self, *, roles: tuple[str, ...]) -> tuple[str, str, str]:
        """A user with the named built-in roles; returns (id, username, password)."""
        username = f"user-{uuid.uuid4().hex[:8]}"
        password = "Console-User-1"
        with self.api() as api:
            all_roles = api.get("/roles", params={"limit": 1000}).json()["data"]
            role_ids = [r["id"] for r in all_roles if r["name"] in roles]
            created = api.post(
                "/users",
                json={
                    "username": username,
                    "full_name": f"Test {username}",
                    "password": password,
                    "role_ids": role_ids,
                },
            )
            assert created.status_code == 201, created.text
            return str(created.json()["id"]), username, password


@contextmanager
def console_server_running(
    tmp_path_factory: pytest.TempPathFactory, extra_env: dict[str, str]
) -> Iterator[ConsoleServer]:
    workdir = tmp_path_factory.mktemp("console")
    issuer = Ed25519PrivateKey.generate()
    env = signvault_env(
        workdir / "data",
        f"sqlite:///{workdir / 'signvault.db'}",
        SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SIGNVAULT_LICENSE_PUBLIC_KEY=public_key_text(issuer),
        # One administrator walks every page in seconds, several times over.
        SIGNVAULT_RATE_LIMIT_PER_MINUTE="100000",
        SIGNVAULT_LOGIN_RATE_LIMIT_PER_MINUTE="100000",
        **extra_env,
    )
    with serve(env, workdir) as served:
        server = ConsoleServer(
            served,
            issuer,
            make_ca("Console Test Root CA"),
            int(env.get("SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS", "900")),
        )
        with server.api() as api:
            # The verification report trusts the roots of the vault's chains.
            patched = api.patch(
                "/settings/signing", json={"include_vault_chains": True}
            )
            assert patched.status_code == 200, patched.text
        yield server


@pytest.fixture(scope="session")
def console_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[dict[str, str]], ConsoleServer]]:
    """One server per set of settings, started when first asked for and kept until the end.

    However xdist deals out the tests (its groups do not hold under pytest 9),
    a worker starts each kind of server once, not each time its tests change
    module.
    """
    started: dict[tuple[tuple[str, str], ...], ConsoleServer] = {}
    with ExitStack() as running:

        def server_for(extra_env: dict[str, str]) -> ConsoleServer:
            key = tuple(sorted(extra_env.items()))
            if key not in started:
                started[key] = running.enter_context(
                    console_server_running(tmp_path_factory, extra_env)
                )
            return started[key]

        yield server_for


@pytest.fixture(scope="module")
def console_server_env() -> dict[str, str]:
    """Server settings a module adds (environment variables)."""
    return {}


@pytest.fixture(scope="module")
def console_server(
    console_servers: Callable[[dict[str, str]], ConsoleServer],
    console_server_env: dict[str, str],
) -> ConsoleServer:
    return console_servers(console_server_env)


# Module-scoped, not kept like the servers: Playwright's sync API runs an event
# loop in this thread, which other modules' asyncio.run() (pyHanko) must not meet.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
    yield browser
    browser.close()


@dataclass
class Recorder:
    """What a page asked of the network and said on its console."""

    base_url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (status, path) of refusals a test provokes on purpose: Chromium logs each
    # failed response as a console error, and only these are let through.
    expected_refusals: set[tuple[int, str]] = field(default_factory=set)

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        for status, path in self.expected_refusals:
            if (
                message.text.startswith(
                    f"Failed to load resource: the server responded with a status of {status} "
                )
                and message.location["url"] == f"{self.base_url}{path}"
            ):
                return
        self.errors.append(f"console error: {message.text} at {message.location}")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")

    def foreign_requests(self) -> list[str]:
        own = self.base_url + "/"
        return [
            url for url in self.requests if not url.startswith((own, "blob:", "data:"))
        ]


@dataclass
class Console:
    page: Page
    server: ConsoleServer
    recorder: Recorder

    def open(self, route: str = "/") -> None:
        self.page.goto(f"{self.server.base_url}/console/#{route}")

    def go(self, route: str) -> None:
        """Follow an in-app link (the session lives in the page's memory: no reload)."""
        self.page.evaluate("route => { window.location.hash = route; }", route)

    def log_in(self, username: str, password: str) -> None:
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password", exact=True).fill(password)
        self.page.get_by_role("button", name="Log in").click()

    def log_in_as_admin(self) -> None:
        self.open_dashboard_as("admin", ADMIN_PASSWORD)

    def open_dashboard_as(self, username: str, password: str) -> None:
        """Open the console, log in, and wait for the dashboard."""
        self.open()
        self.log_in(username, password)
        self.page.get_by_role("heading", name="Dashboard").wait_for()

    def assert_accessible(self, what: str) -> None:
        """No serious or critical axe-core violation on the page as it is now."""
        violations = self.page.evaluate(
            """async () => {
                const result = await axe.run(document, { resultTypes: ["violations"] });
                return result.violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
            }"""
        )
        assert violations == [], f"{what}: {json.dumps(violations, indent=1)}"

    def download(self, control: Locator) -> tuple[str, bytes]:
        """Click `control` and take the file the page saves: its suggested name and bytes."""
        with self.page.expect_download() as started:
            control.click()
        download = started.value
        assert download.failure() is None, download.failure()
        return download.suggested_filename, Path(download.path()).read_bytes()

    def wait_until_loaded(self) -> None:
        self.page.get_by_text("Loading…").first.wait_for(state="detached")

    def assert_fits_the_width(self, what: str) -> None:
        """Nothing makes the page scroll sideways (tables scroll inside their own box)."""
        width, viewport = self.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width <= viewport, f"{what}: {width} px wide in a {viewport} px window"

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=False)


@pytest.fixture
def console(browser: Browser, console_server: ConsoleServer) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=AXE)
    page = context.new_page()
    page.set_default_timeout(15_000)
    recorder = Recorder(console_server.base_url)
    page.on("request", recorder.on_request)
    page.on("console", recorder.on_console)
    page.on("pageerror", recorder.on_page_error)
    try:
        yield Console(page, console_server, recorder)
        assert recorder.requests, "the page made no request at all"
        assert recorder.foreign_requests() == [], "requests that left the server"
        assert recorder.errors == [], "errors on the browser console"
    finally:
        context.close()

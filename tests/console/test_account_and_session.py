"""The console's session: two-factor login, token refresh past expiry, logout.

The server of this module issues access tokens that live 30 seconds (the
shortest SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS allows), so a test can outlive one.
(The module's name puts it first in collection order: xdist starts that
40-second wait early, beside the other tests.)
"""

import re
import time

import httpx
import pyotp
import pytest
from playwright.sync_api import Response

from tests.console.conftest import ADMIN_PASSWORD, BROWSER_TESTS, Console

pytestmark = BROWSER_TESTS

ACCESS_TOKEN_TTL = 30
# The server accepts a token this long past its expiry (clock skew between hosts).
SERVER_LEEWAY = 5


@pytest.fixture(scope="module")
def console_server_env() -> dict[str, str]:
    return {"SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL)}


def is_api(path: str) -> "re.Pattern[str]":
    return re.compile(rf"/api/v1{re.escape(path)}$")


def test_totp_enrolled_on_the_account_page_is_asked_for_at_the_next_login(
    console: Console,
) -> None:
    server, page = console.server, console.page
    user_id, username, password = server.create_user(roles=("signer",))
    console.open_dashboard_as(username, password)
    page.get_by_role("link", name="Account", exact=True).click()
    page.get_by_role("heading", name="Your account").wait_for()
    facts = page.locator("dl.facts").first
    assert facts.locator("dt:text-is('Roles') + dd").inner_text() == "signer"

    page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = page.locator("dt:text-is('Key') + dd").inner_text()
    uri = page.locator("dt:text-is('otpauth URI') + dd").inner_text()
    assert f"secret={secret}" in uri
    assert f"otpauth://totp/SignVault:{username}" in uri
    authenticator = pyotp.TOTP(secret)
    page.get_by_label("Code from the app").fill(authenticator.now())
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("Two-factor authentication is on.").wait_for()
    console.assert_accessible("account page, two-factor authentication on")

    page.get_by_role("button", name="Log out").click()
    page.get_by_text("You have logged out.").wait_for()
    # The password alone is not enough any more: the console asks for the code.
    console.recorder.expected_refusals.add((401, "/api/v1/auth/login"))
    console.log_in(username, password)
    page.get_by_text("This account uses two-factor authentication").wait_for()
    console.assert_accessible("login asking for the code")
    # A code is accepted once: the one that confirmed enrolment is spent, so
    # this is the next one the app shows (the server allows one step of drift).
    page.get_by_label("Authentication code").fill(authenticator.at(time.time() + 30))
    page.get_by_role("button", name="Log in").click()
    # Back on the page the user left, which knows 2FA is on now.
    page.get_by_role("heading", name="Your account").wait_for()
    page.get_by_text("Two-factor authentication is on.").wait_for()

    with server.api() as api:
        assert api.get(f"/users/{user_id}").json()["two_factor_enabled"] is True
    without_code = server.log_in(username, password)
    assert without_code.status_code == 401
    assert without_code.json()["code"] == "totp_required"


def test_the_console_outlives_its_access_token_and_logout_ends_the_session(
    console: Console,
) -> None:
    server, page, recorder = console.server, console.page, console.recorder
    console.open()
    with page.expect_response(is_api("/auth/login")) as login_answer:
        console.log_in("admin", ADMIN_PASSWORD)
    logged_in_at = time.monotonic()
    login = login_answer.value.json()
    assert login["expires_in"] == ACCESS_TOKEN_TTL
    page.get_by_role("heading", name="Dashboard").wait_for()
    console.wait_until_loaded()
    # Fresh tokens are used as they are, not refreshed before every call.
    for route, title in (
        ("/users", "Users, departments and roles"),
        ("/", "Dashboard"),
    ):
        console.go(route)
        page.get_by_role("heading", level=1, name=title).wait_for()
        console.wait_until_loaded()
    refreshes = [
        url for url in recorder.requests if is_api("/auth/refresh").search(url)
    ]
    assert refreshes == []

    # Idle until the first access token is dead on the server too.
    time.sleep(
        max(0.0, logged_in_at + ACCESS_TOKEN_TTL + SERVER_LEEWAY + 1 - time.monotonic())
    )
    with server.api(login["access_token"]) as api:
        assert api.get("/auth/me").status_code == 401

    with page.expect_response(is_api("/auth/refresh")) as refresh_answer:
        console.go("/audit")
    refreshed: Response = refresh_answer.value
    assert refreshed.status == 200
    tokens = refreshed.json()
    page.get_by_role("heading", level=1, name="Audit log").wait_for()
    page.get_by_test_id("audit-results").wait_for()
    assert page.get_by_role("button", name="Log in").count() == 0
    console.assert_accessible("audit log after a refresh")

    with page.expect_request(is_api("/auth/logout")) as logout_request:
        page.get_by_role("button", name="Log out").click()
    page.get_by_text("You have logged out.").wait_for()
    last_access_token = logout_request.value.all_headers()["authorization"]
    assert last_access_token == f"Bearer {tokens['access_token']}"
    # The session is over on the server: its access token and refresh token are refused.
    me = httpx.get(
        f"{server.base_url}/api/v1/auth/me",
        headers={"Authorization": last_access_token},
    )
    assert me.status_code == 401
    for refresh_token in (tokens["refresh_token"], login["refresh_token"]):
        again = httpx.post(
            f"{server.base_url}/api/v1/auth/refresh",
            json={"refresh_token": refresh_token},
        )
        assert again.status_code == 401, again.text

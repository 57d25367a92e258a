"""The web console end to end: each journey the issue names, in Debian's chromium.

Every test also fails on a request that leaves the server, on a console error
(see conftest.py), and on a serious or critical axe-core violation on each page
it checks.
"""

import base64
import re

import httpx
import pytest
from playwright.sync_api import expect

from app.console.router import CONTENT_SECURITY_POLICY
from tests.console.conftest import (
    ADMIN_PASSWORD,
    BROWSER_TESTS,
    P12_PASSWORD,
    PHONE,
    Console,
)
from tests.license.conftest import make_license
from tests.pdfs import make_pdf, signature_widget

pytestmark = BROWSER_TESTS

A4_HEIGHT = 841.89  # points: reportlab's default page, as make_pdf draws it


def test_first_login_forces_a_password_change_then_opens_the_dashboard(
    console: Console,
) -> None:
    server, page = console.server, console.page
    user_id, username, _ = server.create_user(roles=("auditor",))
    with server.api() as api:
        reset = api.post(f"/users/{user_id}/reset-password")
        temporary = reset.json()["temporary_password"]

    response = page.goto(f"{server.base_url}/")
    assert response is not None
    assert response.url == f"{server.base_url}/console/"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"

    console.log_in(username, temporary)
    page.get_by_role("heading", name="Change your password").wait_for()
    console.assert_accessible("forced password change")
    page.get_by_label("Current password").fill(temporary)
    page.get_by_label("New password", exact=True).fill("Fresh-Passw0rd-1")
    page.get_by_label("New password again").fill("Fresh-Passw0rd-1")
    page.get_by_role("button", name="Change password").click()

    page.get_by_role("heading", name="Dashboard").wait_for()
    assert page.get_by_text(f"Test {username}").is_visible()
    console.assert_accessible("dashboard of an auditor")
    # The new password is the one that works now, and no change is pending.
    login = httpx.post(
        f"{server.base_url}/api/v1/auth/login",
        json={"username": username, "password": "Fresh-Passw0rd-1"},
    )
    me = httpx.get(
        f"{server.base_url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    ).json()
    assert me["must_change_password"] is False


DROP_FILE = """([b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type: "application/x-pkcs12" }));
    const zone = document.querySelector('[data-testid="p12-dropzone"]');
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
}"""


def test_pkcs12_dropped_inspected_imported_assigned_and_made_default(
    console: Console,
) -> None:
    server, page = console.server, console.page
    console.log_in_as_admin()
    console.go("/certificates")
    page.get_by_role("heading", name="Certificates", exact=True).wait_for()
    p12 = server.new_pkcs12("Dropped Signer")
    page.evaluate(DROP_FILE, [base64.b64encode(p12).decode(), "dropped.p12"])
    page.get_by_text("Chosen: dropped.p12").wait_for()

    # A wrong password is explained in words, before anything is stored.
    console.recorder.expected_refusals.add((422, "/api/v1/certificates/inspect"))
    page.get_by_label("File password").fill("not-the-password")
    page.get_by_role("button", name="Inspect").click()
    page.get_by_text("The password does not open this file.").wait_for()

    page.get_by_label("File password").fill(P12_PASSWORD)
    page.get_by_role("button", name="Inspect").click()
    page.get_by_text("The vault would import this certificate.").wait_for()
    assert (
        page.get_by_test_id("inspection").get_by_text("CN=Dropped Signer").count() >= 1
    )
    console.assert_accessible("certificates, inspected")

    page.get_by_label("Name in the vault (optional)").fill("Dropped Signer")
    page.get_by_role("button", name="Import into the vault").click()
    page.get_by_text("Imported “Dropped Signer”.").wait_for()
    page.get_by_role("heading", name=re.compile("^Dropped Signer")).wait_for()

    page.get_by_label("Which user").select_option(label="Administrator (admin)")
    page.get_by_role("button", name="Assign", exact=True).click()
    page.get_by_text("Assigned.").wait_for()
    page.get_by_role("button", name="Make default for user admin").click()
    page.get_by_text("Now the default certificate of user admin.").wait_for()
    console.assert_accessible("certificate details")

    me = server.admin_id()
    with server.api() as api:
        [certificate] = api.get("/certificates", params={"q": "Dropped Signer"}).json()[
            "data"
        ]
        assert [a["user_id"] for a in certificate["assignments"]] == [me]
        default = api.get(f"/users/{me}/default-certificate").json()
        assert default["certificate_id"] == certificate["id"]


def test_upload_and_sign_with_a_box_drawn_on_the_preview_reads_valid(
    console: Console,
) -> None:
    server, page = console.server, console.page
    certificate = server.import_certificate("Drawing Signer")
    server.assign(certificate["id"], server.admin_id())
    console.log_in_as_admin()
    console.go("/documents")
    page.get_by_label("PDF file").set_input_files(
        {"name": "contract.pdf", "mimeType": "application/pdf", "buffer": make_pdf()}
    )
    page.get_by_label("Title", exact=True).fill("Contract 7")
    page.get_by_role("button", name="Upload").click()
    page.get_by_role("heading", name=re.compile("^Contract 7")).wait_for()
    document_id = page.url.rsplit("/", 1)[1]

    page.get_by_label("Certificate").select_option(
        label="Drawing Signer (Drawing Signer)"
    )
    page.get_by_label("Reason").fill("Approved in the console")
    page.get_by_label("Visible signature: draw its box on the page").check()
    page.locator('[data-testid="page-preview"][data-ready="true"]').wait_for()
    canvas = page.get_by_test_id("page-preview").locator("canvas").bounding_box()
    assert canvas is not None
    page.mouse.move(canvas["x"] + 100, canvas["y"] + 120)
    page.mouse.down()
    page.mouse.move(canvas["x"] + 300, canvas["y"] + 200, steps=8)
    page.mouse.up()
    page.get_by_test_id("drawn-box").wait_for()
    box = [
        float(page.get_by_label(label).input_value())
        for label in ("Left (x1)", "Bottom (y1)", "Right (x2)", "Top (y2)")
    ]
    # CSS px to points: the page (595.28 pt wide) is drawn canvas["width"] px wide.
    scale = canvas["width"] / 595.28
    expected = [
        100 / scale,
        A4_HEIGHT - 200 / scale,
        300 / scale,
        A4_HEIGHT - 120 / scale,
    ]
    assert box == pytest.approx(expected, abs=1.0)
    console.assert_accessible("signing with the preview")
    page.evaluate("document.getElementById('sign-heading').scrollIntoView()")
    console.screenshot("console-signing.png")

    page.get_by_role("button", name="Sign the document").click()
    page.get_by_text(re.compile("^Signed with .*Drawing Signer")).wait_for()
    page.get_by_role("button", name="Verify signatures").click()
    report = page.get_by_test_id("verification-report")
    report.get_by_text("All 1 signature(s) are valid.").wait_for()
    assert report.locator(".badge", has_text=re.compile("^valid$")).count() == 1
    console.assert_accessible("verification report")

    # The stamp is where it was drawn.
    with server.api() as api:
        [signature] = api.get(f"/documents/{document_id}/signatures").json()
        signed = api.get(
            f"/documents/{document_id}/content", params={"version": "latest"}
        )
    widget = signature_widget(signed.content, 1, signature["field_name"])
    assert [float(v) for v in widget["/Rect"]] == pytest.approx(box, abs=1.0)


def test_audit_search_finds_the_signature(console: Console) -> None:
    server, page = console.server, console.page
    certificate = server.import_certificate("Audited Signer")
    server.assign(certificate["id"], server.admin_id())
    with server.api() as api:
        document = api.post(
            "/documents",
            files={"file": ("audited.pdf", make_pdf(), "application/pdf")},
        ).json()
        signed = api.post(
            f"/documents/{document['id']}/sign",
            json={"certificate_id": certificate["id"], "reason": "audit me"},
        )
        assert signed.status_code == 201, signed.text

    console.log_in_as_admin()
    console.go("/audit")
    page.get_by_label("Action (exact, or a prefix ending in .)").fill("document.")
    page.get_by_label("Resource id").fill(document["id"])
    page.get_by_role("button", name="Search the log").click()
    results = page.get_by_test_id("audit-results")
    signed_cell = results.get_by_role("cell", name="document.signed", exact=True)
    signed_cell.first.wait_for()
    signed_row = results.locator(
        "tr", has=page.get_by_role("cell", name="document.signed", exact=True)
    )
    signed_row.first.get_by_role("button").click()
    entry = page.get_by_role(
        "heading", name=re.compile(r"^Entry \d+: document.signed$")
    )
    entry.wait_for()
    assert page.get_by_text(certificate["fingerprint_sha256"]).count() >= 1
    console.assert_accessible("audit log with an entry open")

    page.get_by_role("button", name="Verify the chain").click()
    page.get_by_test_id("chain-result").get_by_text(
        re.compile("^The chain is intact")
    ).wait_for()


def test_licence_installed_from_the_settings_page(console: Console) -> None:
    server, page = console.server, console.page
    licence = make_license(server.licence_issuer, licensee="Console Test Ltd")
    console.log_in_as_admin()
    console.go("/settings")
    page.get_by_role("heading", name="Licence", exact=True).wait_for()
    page.get_by_label("Licence file").set_input_files(
        {
            "name": "signvault.license",
            "mimeType": "application/octet-stream",
            "buffer": licence,
        }
    )
    page.get_by_role("button", name="Install the licence").click()
    page.get_by_text("Licence installed: valid, Console Test Ltd.").wait_for()
    status = page.get_by_test_id("licence-status")
    status.get_by_text("Console Test Ltd", exact=True).wait_for()
    assert status.locator(".badge", has_text="valid").count() == 1
    console.assert_accessible("licence")
    with server.api() as api:
        assert api.get("/license").json()["licensee"] == "Console Test Ltd"


def test_user_without_audit_read_neither_sees_nor_opens_the_audit_page(
    console: Console,
) -> None:
    server, page = console.server, console.page
    _, username, password = server.create_user(roles=("signer",))
    console.open_dashboard_as(username, password)
    navigation = page.get_by_role("navigation", name="Console pages")
    assert navigation.get_by_role("link", name="Documents").count() == 1
    assert navigation.get_by_role("link", name="Audit log").count() == 0

    console.go("/audit")
    page.get_by_role("heading", name="Audit log").wait_for()
    refusal = page.get_by_role("alert")
    assert "needs the entitlement audit:read" in refusal.inner_text()
    assert page.get_by_test_id("audit-results").count() == 0
    console.assert_accessible("audit page refused")

    # The API refuses the same user just as firmly, naming what is missing.
    token = httpx.post(
        f"{server.base_url}/api/v1/auth/login",
        json={"username": username, "password": password},
    ).json()["access_token"]
    with server.api(token) as api:
        refused = api.get("/audit-logs")
    assert refused.status_code == 403
    assert "audit:read" in refused.json()["detail"]


# Each page's tabs, each checked too.
TABS = {
    "/users": ["Departments", "Roles", "Users"],
    "/notifications": ["SMTP settings", "Deliveries", "Rules"],
    "/settings": [
        "Password policy",
        "Security",
        "Signing",
        "Documents",
        "Signing profiles",
    ],
}
PAGES = {
    "/": "Dashboard",
    "/documents": "Documents",
    "/certificates": "Certificates",
    "/users": "Users, departments and roles",
    "/clients": "API clients",
    "/audit": "Audit log",
    "/notifications": "Notifications",
    "/settings": "Settings and licence",
    "/account": "Your account",
}


def test_every_page_is_accessible_at_desktop_width(console: Console) -> None:
    page = console.page
    console.log_in_as_admin()
    for route, title in PAGES.items():
        console.go(route)
        page.get_by_role("heading", level=1, name=title, exact=True).wait_for()
        console.wait_until_loaded()
        console.assert_accessible(f"{title} at 1280 px")
        for tab in TABS.get(route, []):
            page.get_by_role("tab", name=tab, exact=True).click()
            console.wait_until_loaded()
            console.assert_accessible(f"{title}, {tab} at 1280 px")
    console.go("/")
    page.get_by_role("heading", name="Dashboard").wait_for()
    console.wait_until_loaded()
    console.screenshot("console-dashboard.png")


def test_every_page_fits_a_phone_and_is_reached_through_the_menu(
    console: Console,
) -> None:
    server, page = console.server, console.page
    certificate = server.import_certificate("Phone Signer")
    server.assign(certificate["id"], server.admin_id())
    with server.api() as api:
        document = api.post(
            "/documents",
            files={"file": ("phone.pdf", make_pdf(), "application/pdf")},
            data={"title": "Phone contract", "external_reference": "PHONE-1"},
        ).json()
        signed = api.post(
            f"/documents/{document['id']}/sign",
            json={"certificate_id": certificate["id"], "reason": "on the road"},
        )
        assert signed.status_code == 201, signed.text

    page.set_viewport_size(PHONE)
    console.open()
    page.get_by_role("button", name="Log in").wait_for()
    console.assert_fits_the_width("login")
    console.log_in("admin", ADMIN_PASSWORD)
    page.get_by_role("heading", name="Dashboard").wait_for()
    navigation = page.get_by_role("navigation", name="Console pages")
    for route, title in PAGES.items():
        if route == "/account":
            # Not in the menu: the top bar's link, which stays at phone width.
            page.get_by_role("link", name="Account", exact=True).click()
        else:
            assert not navigation.is_visible()
            page.get_by_role("button", name="Menu").click()
            navigation.get_by_role("link", name=title, exact=True).click()
        page.get_by_role("heading", level=1, name=title, exact=True).wait_for()
        assert not navigation.is_visible()  # the menu closes once a page is chosen
        console.wait_until_loaded()
        console.assert_fits_the_width(f"{title} at 390 px")
        console.assert_accessible(f"{title} at 390 px")
        for tab in TABS.get(route, []):
            page.get_by_role("tab", name=tab, exact=True).click()
            console.wait_until_loaded()
            console.assert_fits_the_width(f"{title}, {tab} at 390 px")

    # The pages that open from a list: a certificate, a document, an audit entry.
    page.get_by_role("button", name="Menu").click()
    navigation.get_by_role("link", name="Certificates").click()
    page.get_by_role("button", name="Details of Phone Signer").click()
    page.get_by_role("heading", name=re.compile("^Phone Signer")).wait_for()
    console.assert_fits_the_width("a certificate's details at 390 px")
    console.assert_accessible("a certificate's details at 390 px")

    page.get_by_role("button", name="Menu").click()
    navigation.get_by_role("link", name="Documents").click()
    page.get_by_role("link", name="Phone contract").click()
    page.get_by_role("heading", level=1, name=re.compile("^Phone contract")).wait_for()
    console.wait_until_loaded()
    page.get_by_label("Visible signature: draw its box on the page").check()
    page.locator('[data-testid="page-preview"][data-ready="true"]').wait_for()
    console.assert_fits_the_width("a document with its page preview at 390 px")
    console.assert_accessible("a document at 390 px")

    page.get_by_role("button", name="Menu").click()
    navigation.get_by_role("link", name="Audit log").click()
    page.get_by_label("Resource id").fill(document["id"])
    page.get_by_role("button", name="Search the log").click()
    results = page.get_by_test_id("audit-results")
    signed_row = results.locator(
        "tr", has=page.get_by_role("cell", name="document.signed", exact=True)
    )
    expect(signed_row).to_have_count(1)  # the search's answer, not the whole log
    signed_row.get_by_role("button").click()
    page.get_by_role(
        "heading", name=re.compile(r"^Entry \d+: document.signed$")
    ).wait_for()
    console.assert_fits_the_width("an audit entry's details at 390 px")
    console.assert_accessible("an audit entry at 390 px")

"""Administering the server in the console: users, departments and roles, API
clients, notifications and settings, each checked afterwards through the API
(and, for API clients and mail, by using what the console made)."""

import re
import time
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from playwright.sync_api import Locator, expect

from tests.console.conftest import BROWSER_TESTS, Console, ConsoleServer
from tests.notifications.servers import smtp_server
from tests.pdfs import make_pdf
from tests.served import free_port

pytestmark = BROWSER_TESTS

NOTIFY_FROM = "signvault@example.com"


@pytest.fixture(scope="module")
def console_server_env() -> dict[str, str]:
    return {
        # The test's SMTP server listens on loopback.
        "SIGNVAULT_SMTP_ALLOWED_HOSTS": "127.0.0.1",
        # A delivery that cannot be made gives up within a second or two.
        "SIGNVAULT_NOTIFICATION_POLL_SECONDS": "0.5",
        "SIGNVAULT_NOTIFICATION_MAX_ATTEMPTS": "2",
        "SIGNVAULT_NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
        "SIGNVAULT_NOTIFICATION_RETRY_MAX_SECONDS": "0.5",
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def status_says(console: Console, text: str) -> None:
    console.page.get_by_role("status").filter(has_text=text).first.wait_for()


def login_status(server: ConsoleServer, username: str, password: str) -> str:
    """200, or the problem code of the refusal."""
    login = server.log_in(username, password)
    return "200" if login.status_code == 200 else str(login.json()["code"])


def row_of(table: Locator, text: str) -> Locator:
    return table.locator(
        "tr", has=table.page.get_by_role("cell", name=text, exact=True)
    )


def test_departments_roles_and_users_managed_end_to_end(console: Console) -> None:
    server, page = console.server, console.page
    department, role, username = unique("Finance"), unique("invoicer"), unique("ann")
    with server.api() as api:
        catalogue = api.get("/entitlements").json()
    console.log_in_as_admin()
    console.go("/users")
    page.get_by_role("heading", name="Users, departments and roles").wait_for()

    page.get_by_role("tab", name="Departments").click()
    page.get_by_role("button", name="New department").click()
    page.get_by_label("Name of the department").fill(department)
    page.get_by_label("Description of the department").fill("Invoices")
    page.get_by_role("button", name="Save the department").click()
    page.get_by_role("button", name=f"Edit {department}").click()
    page.get_by_label("Description of the department").fill("Invoices and payroll")
    page.get_by_role("button", name="Save the department").click()
    page.get_by_role("cell", name="Invoices and payroll", exact=True).wait_for()

    page.get_by_role("tab", name="Roles").click()
    page.get_by_role("button", name="New role").click()
    page.get_by_label("Name of the role").fill(role)
    page.get_by_label("Description of the role").fill("Signs invoices")
    entitlements = page.get_by_role("group", name="Entitlements")
    # Every entitlement of the catalogue, with its description in words.
    for entry in catalogue:
        expect(
            entitlements.get_by_role(
                "checkbox", name=f"{entry['name']}: {entry['description']}", exact=True
            )
        ).to_have_count(1)
    console.assert_accessible("a new role with the entitlement catalogue")
    for name in ("documents:read", "documents:sign"):
        entitlements.get_by_role("checkbox", name=re.compile(f"^{name}: ")).check()
    page.get_by_role("button", name="Save the role").click()
    page.get_by_role("button", name=f"Edit {role}").click()
    entitlements.get_by_role("checkbox", name=re.compile("^documents:write: ")).check()
    page.get_by_role("button", name="Save the role").click()
    page.get_by_role(
        "cell", name="documents:read, documents:sign, documents:write", exact=True
    ).wait_for()

    page.get_by_role("tab", name="Users").click()
    page.get_by_role("button", name="New user").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Full name").fill("Ann Example")
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Initial password").fill("Initial-Passw0rd")
    page.get_by_label("Department").select_option(label=department)
    page.get_by_role("checkbox", name=f"{role}: Signs invoices").check()
    page.get_by_role("button", name="Create the user").click()
    page.get_by_label("Search users").fill(username)
    users = page.locator("table")
    expect(users.locator("tbody tr")).to_have_count(1)
    row = row_of(users, username)
    expect(row.get_by_role("cell", name=department, exact=True)).to_have_count(1)
    expect(row.get_by_role("cell", name=role, exact=True)).to_have_count(1)

    page.get_by_role("button", name=f"Edit {username}").click()
    page.get_by_label("Full name").fill("Ann Example-Smith")
    page.get_by_role("button", name="Save the user").click()
    row.get_by_role("cell", name="Ann Example-Smith").wait_for()
    with server.api() as api:
        [user] = api.get("/users", params={"q": username}).json()["data"]
        [created_department] = [
            d
            for d in api.get("/departments", params={"limit": 1000}).json()["data"]
            if d["name"] == department
        ]
        [created_role] = [
            r
            for r in api.get("/roles", params={"limit": 1000}).json()["data"]
            if r["name"] == role
        ]
    assert user["full_name"] == "Ann Example-Smith"
    assert user["department_id"] == created_department["id"]
    assert user["role_ids"] == [created_role["id"]]
    assert created_department["description"] == "Invoices and payroll"
    assert sorted(created_role["entitlements"]) == [
        "documents:read",
        "documents:sign",
        "documents:write",
    ]

    # A reset password is shown once, works once, and must be changed.
    page.get_by_role("button", name=f"Reset the password of {username}").click()
    secret = page.locator(".secret", has_text=f"Temporary password of {username}")
    temporary = secret.locator("code").inner_text()
    assert len(temporary) >= 10
    console.assert_accessible("users, a temporary password shown")
    login = server.log_in(username, temporary)
    assert login.status_code == 200, login.text
    with server.api(login.json()["access_token"]) as api:
        assert api.get("/auth/me").json()["must_change_password"] is True

    # Guessed passwords lock the address out of the account; the console lifts it.
    for _ in range(5):
        assert login_status(server, username, "wrong-guess") == "invalid_credentials"
    assert login_status(server, username, temporary) == "login_locked_out"
    page.get_by_role("button", name=f"Clear the failed logins of {username}").click()
    status_says(console, f"{username}: unlocked")
    assert login_status(server, username, temporary) == "200"

    page.get_by_role("button", name=f"Lock {username}").click()
    row.locator(".badge", has_text="locked").wait_for()
    assert login_status(server, username, temporary) == "account_locked"
    page.get_by_role("button", name=f"Unlock {username}").click()
    row.locator(".badge", has_text="active").wait_for()
    assert login_status(server, username, temporary) == "200"

    page.get_by_role("button", name=f"Disable {username}").click()
    row.locator(".badge", has_text="disabled").wait_for()
    assert login_status(server, username, temporary) == "account_disabled"
    page.get_by_role("button", name=f"Enable {username}").click()
    row.locator(".badge", has_text="active").wait_for()
    assert login_status(server, username, temporary) == "200"
    console.assert_accessible("users after every action")

    # Shown once: leaving the page forgets it.
    console.go("/")
    page.get_by_role("heading", name="Dashboard").wait_for()
    console.go("/users")
    page.get_by_role("heading", name="Users, departments and roles").wait_for()
    assert page.get_by_text(temporary).count() == 0


def client_token(server: ConsoleServer, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )


def test_api_client_created_copied_rotated_given_a_certificate_and_disabled(
    console: Console,
) -> None:
    server, page = console.server, console.page
    name = unique("erp")
    certificate = server.import_certificate(unique("Client Signer"))
    page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=server.base_url
    )
    console.log_in_as_admin()
    console.go("/clients")
    page.get_by_label("Client name").fill(name)
    page.get_by_label("Client description").fill("Signs invoices")
    granted = ("documents:read", "documents:sign", "documents:write")
    for entitlement in granted:
        page.get_by_role("checkbox", name=re.compile(f"^{entitlement}: ")).check()
    page.get_by_role("button", name="Create the client").click()
    client_id = page.locator("p", has_text=f"Client {name}: id").locator("code")
    secret = page.locator(".secret", has_text="Client secret").locator("code")
    secret.wait_for()
    first_secret = secret.inner_text()
    page.get_by_role("button", name="Copy client secret").click()
    status_says(console, "Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == first_secret
    console.assert_accessible("a new API client with its secret")

    first = client_token(server, client_id.inner_text(), first_secret)
    assert first.status_code == 200, first.text
    with server.api(first.json()["access_token"]) as api:
        me = api.get("/auth/me").json()
    assert (me["kind"], me["name"]) == ("client", name)
    assert sorted(me["entitlements"]) == list(granted)

    page.get_by_role("button", name=f"Rotate the secret of {name}").click()
    expect(secret).not_to_have_text(first_secret)
    rotated = secret.inner_text()
    assert client_token(server, client_id.inner_text(), first_secret).status_code == 401
    assert client_token(server, client_id.inner_text(), rotated).status_code == 200

    page.get_by_role("button", name=f"Certificates of {name}").click()
    page.get_by_label(f"Certificate for {name}").select_option(
        label=certificate["name"]
    )
    page.get_by_role("button", name="Assign as default").click()
    status_says(
        console, f"{certificate['name']} assigned to {name} and made its default."
    )
    # The client signs with it without naming it.
    token = client_token(server, client_id.inner_text(), rotated).json()["access_token"]
    with server.api(token) as api:
        document = api.post(
            "/documents", files={"file": ("invoice.pdf", make_pdf(), "application/pdf")}
        ).json()
        signed = api.post(f"/documents/{document['id']}/sign", json={})
    assert signed.status_code == 201, signed.text
    assert signed.json()["certificate_id"] == certificate["id"]

    page.get_by_role("button", name=f"Disable {name}").click()
    page.get_by_role("button", name=f"Enable {name}").wait_for()
    refused = client_token(server, client_id.inner_text(), rotated)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    console.assert_accessible("API clients after every action")


def wait_for_delivery(server: ConsoleServer, target: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with server.api() as api:
            deliveries = api.get("/notifications/deliveries").json()["data"]
        if any(d["target"] == target and d["status"] == status for d in deliveries):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {status} delivery to {target}: {deliveries}")


def test_notification_rule_smtp_test_mail_and_a_failed_delivery_retried(
    console: Console,
) -> None:
    server, page = console.server, console.page
    rule, recipient = unique("Signed documents"), f"{unique('records')}@example.com"
    certificate = server.import_certificate(unique("Notified Signer"))
    server.assign(certificate["id"], server.admin_id())
    console.log_in_as_admin()
    console.go("/notifications")
    page.get_by_label("Rule name").fill(rule)
    page.get_by_label(re.compile("^Event")).select_option("document.signed")
    page.get_by_label("Channel").select_option("email")
    page.get_by_label("Recipients (comma-separated)").fill(recipient)
    page.get_by_role("button", name="Create the rule").click()
    page.get_by_role("cell", name=rule, exact=True).wait_for()

    with smtp_server() as mail:
        # First a port where nothing listens: the test email and the delivery fail.
        page.get_by_role("tab", name="SMTP settings").click()
        page.get_by_label("SMTP host").fill("127.0.0.1")
        page.get_by_label("Port").fill(str(free_port()))
        page.get_by_label("Security").select_option("none")
        page.get_by_label("From address").fill(NOTIFY_FROM)
        page.get_by_label("Timeout (seconds)").fill("5")
        page.get_by_role("button", name="Save the SMTP settings").click()
        status_says(console, "SMTP settings saved.")
        console.recorder.expected_refusals.add((502, "/api/v1/notifications/smtp/test"))
        page.get_by_label("Send a test email to").fill("admin@example.com")
        page.get_by_role("button", name="Send test").click()
        page.get_by_role("alert").filter(
            has_text="The test email was not sent"
        ).wait_for()

        with server.api() as api:
            document = api.post(
                "/documents",
                files={"file": ("notified.pdf", make_pdf(), "application/pdf")},
            ).json()
            signed = api.post(
                f"/documents/{document['id']}/sign",
                json={"certificate_id": certificate["id"]},
            )
            assert signed.status_code == 201, signed.text
        wait_for_delivery(server, recipient, "failed")
        page.get_by_role("tab", name="Deliveries").click()
        page.get_by_label("Delivery status").select_option("failed")
        failed = row_of(page.locator("table"), recipient)
        expect(failed).to_have_count(1)
        assert failed.get_by_role("cell", name="2", exact=True).count() == 1  # attempts
        console.assert_accessible("a failed delivery")
        console.go("/")
        failing = page.get_by_role("region", name="Failing notification deliveries")
        failing.get_by_text(f"document.signed to {recipient}").wait_for()

        # Then the real server: the test email arrives, and so does the retry.
        console.go("/notifications")
        page.get_by_role("tab", name="SMTP settings").click()
        page.get_by_label("Port").fill(str(mail.port))
        page.get_by_role("button", name="Save the SMTP settings").click()
        status_says(console, "SMTP settings saved.")
        page.get_by_label("Send a test email to").fill("admin@example.com")
        page.get_by_role("button", name="Send test").click()
        [test_mail] = mail.wait_for(1)
        assert test_mail.rcpt_tos == ["admin@example.com"]
        assert test_mail.message["Subject"] == "[SignVault] Test email"
        assert test_mail.mail_from == NOTIFY_FROM

        page.get_by_role("tab", name="Deliveries").click()
        page.get_by_label("Delivery status").select_option("failed")
        page.get_by_role(
            "button", name=f"Retry delivery document.signed to {recipient}"
        ).click()
        retried = mail.wait_for(2)[1]
        assert retried.rcpt_tos == [recipient]
        assert retried.message["Subject"] == "[SignVault] A document was signed"
        wait_for_delivery(server, recipient, "delivered")
        page.get_by_label("Delivery status").select_option("delivered")
        page.get_by_role("button", name="Refresh the deliveries").click()
        expect(row_of(page.locator("table"), recipient)).to_have_count(1)


def test_signing_settings_saved_and_a_signing_profile_created(console: Console) -> None:
    server, page = console.server, console.page
    profile = unique("archive")
    root_pem = server.ca.certificate.public_bytes(Encoding.PEM).decode().strip()
    with server.api() as api:
        before = api.get("/settings/signing").json()
    console.log_in_as_admin()
    console.go("/settings")
    page.get_by_role("tab", name="Signing", exact=True).click()
    page.get_by_label("Hash algorithm").select_option("sha512")
    page.get_by_label("Box (comma-separated)").fill("40, 40, 240, 100")
    page.get_by_label("Trust roots (PEM, one after another)").fill(root_pem + "\n")
    console.assert_accessible("signing settings")
    page.get_by_role("button", name="Save", exact=True).click()
    status_says(console, "Saved.")

    page.get_by_role("tab", name="Signing profiles").click()
    page.get_by_label("Profile name").fill(profile)
    page.get_by_label("Profile description").fill("Certified, nothing may change")
    page.get_by_label("Profile level").select_option("B-B")
    page.get_by_label("Certification").select_option("no_changes")
    page.get_by_role("button", name="Create the profile").click()
    page.get_by_role("cell", name=profile, exact=True).wait_for()
    console.assert_accessible("signing profiles")

    with server.api() as api:
        after = api.get("/settings/signing").json()
        profiles = api.get("/signing-profiles/choices").json()
        # Leave the module's server as it was.
        restored = api.put(
            "/settings/signing",
            json={k: v for k, v in before.items() if k != "updated_at"},
        )
        assert restored.status_code == 200, restored.text
    assert after["hash_algorithm"] == "sha512"
    assert after["default_appearance"]["box"] == [40, 40, 240, 100]
    assert after["trust_roots"] == [root_pem]
    assert {
        "name": profile,
        "description": "Certified, nothing may change",
        "level": "B-B",
        "certify": "no_changes",
    } in profiles

"""What the vault, the documents and the audit log hold, as the console shows and
downloads it: each download is parsed (certificates, PDFs, CSV, JSON Lines)."""

import csv
import hashlib
import io
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from playwright.sync_api import expect
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from tests.console.conftest import BROWSER_TESTS, Console, ConsoleServer
from tests.pdfs import make_pdf

pytestmark = BROWSER_TESTS


def upload(server: ConsoleServer, pdf: bytes, **fields: str) -> dict[str, Any]:
    with server.api() as api:
        uploaded = api.post(
            "/documents",
            files={"file": ("upload.pdf", pdf, "application/pdf")},
            data=fields,
        )
        assert uploaded.status_code == 201, uploaded.text
        return dict(uploaded.json())


def test_certificate_chain_downloaded_then_disabled_and_revoked_after_confirmation(
    console: Console,
) -> None:
    server, page = console.server, console.page
    name = f"Vault Signer {uuid.uuid4().hex[:6]}"
    certificate = server.import_certificate(name)
    console.log_in_as_admin()
    console.go("/certificates")
    page.get_by_label("Search", exact=True).fill(name)
    page.get_by_role("button", name=f"Details of {name}").click()
    details = page.get_by_role("region", name=re.compile(f"^{name}"))
    details.wait_for()

    filename, chain = console.download(
        page.get_by_role("button", name="Download the chain (PEM)")
    )
    assert filename == f"{name}-chain.pem"
    assert b"PRIVATE KEY" not in chain
    leaf, root = x509.load_pem_x509_certificates(chain)
    assert leaf.fingerprint(hashes.SHA256()).hex() == certificate["fingerprint_sha256"]
    assert leaf.issuer == root.subject == server.ca.certificate.subject

    def status() -> str:
        with server.api() as api:
            return str(api.get(f"/certificates/{certificate['id']}").json()["status"])

    details.get_by_role("button", name="Disable").click()
    details.locator("h2 .badge", has_text="disabled").wait_for()
    assert status() == "disabled"
    details.get_by_role("button", name="Enable").click()
    details.locator("h2 .badge", has_text="active").wait_for()
    assert status() == "active"

    details.get_by_role("button", name="Revoke…").click()
    details.get_by_text("Revoking is final").wait_for()
    assert status() == "active"  # nothing happens before the confirmation
    console.assert_accessible("revocation asking for confirmation")
    details.get_by_label("Reason (optional)").fill("Key compromised")
    details.get_by_role("button", name="Revoke for good").click()
    details.locator("h2 .badge", has_text="revoked").wait_for()
    assert status() == "revoked"
    for gone in ("Disable", "Enable", "Revoke…"):
        assert details.get_by_role("button", name=gone, exact=True).count() == 0
    page.get_by_label(re.compile("^Status")).select_option("revoked")
    in_vault = page.get_by_role("region", name="In the vault")
    expect(in_vault.locator("tbody tr td:first-child")).to_have_text([name])
    console.assert_accessible("a revoked certificate")


def signature_holds(pdf: bytes) -> bool:
    """The PDF's one signature is intact and cryptographically valid (trust aside).

    pyHanko's sync API runs an event loop of its own, which Playwright's
    (running in this thread) forbids: it runs in a thread of its own.
    """

    def check() -> bool:
        [signature] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
        # No trust roots: whether it holds, not whom it chains to.
        context = ValidationContext(trust_roots=[], allow_fetching=False)
        status = validate_pdf_signature(signature, context)
        return bool(status.intact and status.valid)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(check).result()


def local_input(moment: datetime) -> str:
    """A datetime-local field's value (the browser runs in the machine's zone: UTC here, ±1 day apart anyway)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def test_documents_filtered_and_every_version_and_the_sealed_trail_downloaded(
    console: Console,
) -> None:
    server, page = console.server, console.page
    tag = uuid.uuid4().hex[:6]
    certificate = server.import_certificate(f"Records Signer {tag}")
    server.assign(certificate["id"], server.admin_id())
    original = make_pdf(text=f"Lease {tag}")
    lease = upload(
        server, original, title=f"Lease {tag}", external_reference=f"A-{tag}"
    )
    upload(server, make_pdf(), title=f"Order {tag}", external_reference=f"B-{tag}")
    with server.api() as api:
        signed = api.post(
            f"/documents/{lease['id']}/sign",
            json={"certificate_id": certificate["id"]},
        )
        assert signed.status_code == 201, signed.text
        latest = api.get(f"/documents/{lease['id']}").json()

    console.log_in_as_admin()
    console.go("/documents")
    listed = page.get_by_role("region", name="Documents").locator("tbody tr")
    titles = page.get_by_role("region", name="Documents").locator(
        "tbody tr td:first-child"
    )
    page.get_by_label("Title contains").fill(tag)
    expect(titles).to_have_text([f"Order {tag}", f"Lease {tag}"])
    page.get_by_label("Status").select_option("signed")
    expect(titles).to_have_text([f"Lease {tag}"])
    page.get_by_label("Status").select_option("uploaded")
    expect(titles).to_have_text([f"Order {tag}"])
    page.get_by_label("Status").select_option("")
    page.get_by_label("External reference (exact)").fill(f"A-{tag}")
    expect(titles).to_have_text([f"Lease {tag}"])
    page.get_by_label("External reference (exact)").fill("")
    now = datetime.now(UTC)
    page.get_by_label("Created from").fill(local_input(now + timedelta(days=1)))
    expect(listed).to_have_count(0)
    page.get_by_label("Created from").fill(local_input(now - timedelta(days=1)))
    page.get_by_label("Created to").fill(local_input(now - timedelta(hours=23)))
    expect(listed).to_have_count(0)
    page.get_by_label("Created to").fill(local_input(now + timedelta(days=1)))
    expect(titles).to_have_text([f"Order {tag}", f"Lease {tag}"])
    console.assert_accessible("documents, filtered")

    page.get_by_role("link", name=f"Lease {tag}").click()
    page.get_by_role("heading", level=1, name=re.compile(f"^Lease {tag}")).wait_for()
    console.wait_until_loaded()
    downloads = {
        label: console.download(page.get_by_role("button", name=label))
        for label in (
            "Download the original",
            "Download the latest version",
            "Download version 1",
            "Download version 2",
            "Download the audit trail (sealed PDF)",
        )
    }
    assert {name for name, _ in downloads.values()} == {
        f"Lease {tag}-original.pdf",
        f"Lease {tag}-latest.pdf",
        f"Lease {tag}-1.pdf",
        f"Lease {tag}-2.pdf",
        f"Lease {tag}-audit-trail.pdf",
    }
    for _, content in downloads.values():
        assert content.startswith(b"%PDF-")
    assert downloads["Download the original"][1] == original
    assert downloads["Download version 1"][1] == original
    signed_pdf = downloads["Download the latest version"][1]
    assert downloads["Download version 2"][1] == signed_pdf
    assert hashlib.sha256(signed_pdf).hexdigest() == latest["sha256"]
    assert signature_holds(signed_pdf)
    assert signature_holds(downloads["Download the audit trail (sealed PDF)"][1])


def test_audit_exported_as_csv_and_jsonl_and_verified_against_the_exports_anchor(
    console: Console,
) -> None:
    server, page = console.server, console.page
    document = upload(server, make_pdf(), title="Exported")
    console.log_in_as_admin()
    console.go("/audit")
    page.get_by_label("Resource id").fill(document["id"])
    page.get_by_role("button", name="Search the log").click()
    results = page.get_by_test_id("audit-results")
    expect(results.locator("tbody tr")).to_have_count(1)
    results.get_by_role("cell", name="document.uploaded", exact=True).wait_for()

    csv_name, csv_bytes = console.download(
        page.get_by_role("button", name="Export as CSV")
    )
    assert csv_name.endswith(".csv")
    *rows, anchor_row = csv.DictReader(io.StringIO(csv_bytes.decode()))
    assert [(r["action"], r["resource_id"]) for r in rows] == [
        ("document.uploaded", document["id"])
    ]
    assert anchor_row["id"] == "anchor"

    jsonl_name, jsonl_bytes = console.download(
        page.get_by_role("button", name="Export as JSON Lines")
    )
    assert jsonl_name.endswith(".jsonl")
    *entries, last = [json.loads(line) for line in jsonl_bytes.splitlines()]
    assert [(e["action"], e["resource_id"]) for e in entries] == [
        ("document.uploaded", document["id"])
    ]
    assert entries[0]["hash"] == rows[0]["hash"]
    anchor = last["anchor"]

    page.get_by_label(re.compile("^Anchor kept outside the server")).fill(
        json.dumps(anchor)
    )
    page.get_by_role("button", name="Verify the chain").click()
    result = page.get_by_test_id("chain-result")
    result.get_by_text(re.compile("^The chain is intact")).wait_for()
    expect(result).to_contain_text(f"The anchor of seq {anchor['seq']} matches")
    console.assert_accessible("audit log, verified against an anchor")

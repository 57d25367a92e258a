"""The signing engine against pyHanko's validator, a live test PKI (certomancer) and independent tools."""

import hashlib
import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.timestamps import HTTPTimeStamper

from app.signing.engine import (
    MAX_IMAGE_BYTES,
    Appearance,
    CachedKeySigner,
    Certification,
    EngineError,
    PadesLevel,
    RevocationCache,
    RevocationFetching,
    SignOptions,
    _run,
    revocation_fetching,
    sign_pdf,
    timestamper_for,
    validate_pdf,
)
from app.signing.engine import stamp_image as stamp_image_of
from tests.independent import check_signed_pdf, missing_tools
from tests.keys import Issued, asn1_of, issue, make_ca, pem_of, signer_of
from tests.pdfs import image_xobjects, make_pdf, signature_widget, stamp_image
from tests.pki import TestPki, running_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPki]:
    with running_pki(tmp_path_factory.mktemp("pki")) as running:
        yield running


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


def sign(
    pdf: bytes,
    signer: CachedKeySigner,
    options: SignOptions,
    *,
    timestamper: HTTPTimeStamper | None = None,
    revocation: RevocationFetching | None = None,
) -> bytes:
    out = io.BytesIO()
    sign_pdf(
        io.BytesIO(pdf),
        out,
        signer,
        options,
        signing_time=datetime.now(UTC),
        timestamper=timestamper,
        revocation=revocation,
    )
    return out.getvalue()


def pki_signer(pki: TestPki, label: str) -> CachedKeySigner:
    return CachedKeySigner(
        certificate=pki.cert(label),
        private_key=pki.private_key(label),
        chain=[pki.interm, pki.root],
    )


needs_tools = pytest.mark.skipif(
    bool(missing_tools()), reason=f"independent validators missing: {missing_tools()}"
)


@needs_tools
@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_b_b_is_valid_for_pyhanko_pdfsig_qpdf_and_openssl(
    ca: Issued, tmp_path: Path, key_type: str
) -> None:
    signer = signer_of(issue(ca, "Alice", key_type=key_type), ca)
    signed = sign(
        make_pdf(), signer, SignOptions(reason="Approved", location="Brussels")
    )
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert (
        report.intact,
        report.valid,
        report.trusted,
        report.bottom_line,
        report.pades_level,
    ) == (True, True, True, True, "B-B")
    assert report.coverage == "entire_file"
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    independent = check_signed_pdf(path, [pem_of(ca)], tmp_path)
    assert independent.pdfsig_valid == [True]
    assert independent.pdfsig_trusted == [True]
    assert independent.qpdf_ok
    assert independent.openssl_ok == [True]


@needs_tools
def test_b_t_has_a_valid_timestamp_everywhere(
    ca: Issued, pki: TestPki, tmp_path: Path
) -> None:
    signer = signer_of(issue(ca, "Alice"), ca)
    signed = sign(
        make_pdf(),
        signer,
        SignOptions(level=PadesLevel.B_T),
        timestamper=timestamper_for(pki.tsa_url),
    )
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca), pki.root], allow_fetching=False
    )
    assert (report.pades_level, report.timestamp_valid, report.bottom_line) == (
        "B-T",
        True,
        True,
    )
    assert report.timestamp_time is not None
    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    independent = check_signed_pdf(path, [pem_of(ca), pki.root_pem], tmp_path)
    assert (independent.pdfsig_valid, independent.qpdf_ok, independent.openssl_ok) == (
        [True],
        True,
        [True],
    )


@pytest.mark.parametrize(
    ("level", "expected"),
    [(PadesLevel.B_LT, ["B-LT"]), (PadesLevel.B_LTA, ["B-LTA", None])],
)
def test_long_term_levels_validate_offline_from_the_dss(
    pki: TestPki, level: PadesLevel, expected: list[str | None]
) -> None:
    signer = pki_signer(pki, "alice")
    signed = sign(
        make_pdf(),
        signer,
        SignOptions(level=level),
        timestamper=timestamper_for(pki.tsa_url),
        revocation=revocation_fetching([pki.root], [pki.interm]),
    )
    reports = validate_pdf(
        io.BytesIO(signed), trust_roots=[pki.root], allow_fetching=False
    )
    assert [r.pades_level for r in reports] == expected
    assert all(r.bottom_line for r in reports)
    assert [r.kind for r in reports][-1] == (
        "document_timestamp" if level == PadesLevel.B_LTA else "signature"
    )


def test_b_b_asks_no_tsa_even_when_one_is_configured(ca: Issued) -> None:
    # An address nothing listens on: a timestamp request would fail the signature.
    unreachable = timestamper_for("http://127.0.0.1:9/tsa", timeout=1)
    signed = sign(
        make_pdf(),
        signer_of(issue(ca, "Alice"), ca),
        SignOptions(level=PadesLevel.B_B),
        timestamper=unreachable,
    )
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert (report.bottom_line, report.pades_level, report.timestamp_time) == (
        True,
        "B-B",
        None,
    )


def test_b_t_without_a_tsa_is_refused(ca: Issued) -> None:
    with pytest.raises(EngineError) as refused:
        sign(
            make_pdf(), signer_of(issue(ca, "A"), ca), SignOptions(level=PadesLevel.B_T)
        )
    assert refused.value.code == "tsa_not_configured"


@needs_tools
def test_second_signature_keeps_the_first_valid(ca: Issued, tmp_path: Path) -> None:
    first = sign(
        make_pdf(), signer_of(issue(ca, "Alice"), ca), SignOptions(reason="author")
    )
    both = sign(first, signer_of(issue(ca, "Bob"), ca), SignOptions(reason="approver"))
    reports = validate_pdf(
        io.BytesIO(both), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert [(r.field_name, r.bottom_line) for r in reports] == [
        ("Signature1", True),
        ("Signature2", True),
    ]
    assert [r.coverage for r in reports] == ["entire_revision", "entire_file"]
    assert "Alice" in str(reports[0].signer_subject)
    assert "Bob" in str(reports[1].signer_subject)
    path = tmp_path / "two.pdf"
    path.write_bytes(both)
    if not missing_tools():
        independent = check_signed_pdf(path, [pem_of(ca)], tmp_path)
        assert independent.pdfsig_valid == [True, True]
        assert independent.openssl_ok == [True, True]


def test_visible_appearance_is_on_the_requested_page_and_box(ca: Issued) -> None:
    signed = sign(
        make_pdf(pages=3),
        signer_of(issue(ca, "Alice"), ca),
        SignOptions(
            field_name="Approval",
            appearance=Appearance(
                page=2, box=(50, 60, 250, 120), text="Approved by %(signer)s"
            ),
        ),
    )
    widget = signature_widget(signed, 2, "Approval")
    assert [float(v) for v in widget["/Rect"]] == [50.0, 60.0, 250.0, 120.0]
    assert "/AP" in widget
    assert image_xobjects(widget["/AP"]["/N"]) == []
    reader = PdfFileReader(io.BytesIO(signed))
    assert "/Annots" not in reader.root["/Pages"]["/Kids"][0].get_object()


@pytest.mark.parametrize(
    ("image_format", "size"), [("PNG", (300, 150)), ("JPEG", (2400, 600))]
)
def test_appearance_image_is_drawn_in_the_stamp(
    ca: Issued, tmp_path: Path, image_format: str, size: tuple[int, int]
) -> None:
    signed = sign(
        make_pdf(pages=2),
        signer_of(issue(ca, "Alice"), ca),
        SignOptions(
            field_name="Approval",
            reason="Approved",
            appearance=Appearance(
                page=2,
                box=(50, 60, 350, 160),
                image=stamp_image(image_format, size),
            ),
        ),
    )
    widget = signature_widget(signed, 2, "Approval")
    assert [float(v) for v in widget["/Rect"]] == [50.0, 60.0, 350.0, 160.0]
    [image] = image_xobjects(widget["/AP"]["/N"])
    # PNG keeps its transparency as a soft mask; large images are scaled down to 1024 px.
    assert ("/SMask" in image) == (image_format == "PNG")
    assert max(image["/Width"], image["/Height"]) == min(max(size), 1024)
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert (report.bottom_line, report.field_name) == (True, "Approval")
    if not missing_tools():
        path = tmp_path / "stamped.pdf"
        path.write_bytes(signed)
        independent = check_signed_pdf(path, [pem_of(ca)], tmp_path)
        assert (independent.pdfsig_valid, independent.qpdf_ok) == ([True], True)
        assert independent.openssl_ok == [True]


def bomb_png(size: tuple[int, int] = (10_000, 5_000)) -> bytes:
    """A tiny PNG that claims millions of pixels (all white: it compresses to almost nothing)."""
    buffer = io.BytesIO()
    Image.new("1", size, 1).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (b"GIF89a not what we take", "image_invalid"),
        (stamp_image()[:200], "image_invalid"),
        (b"\x89PNG" + bytes(MAX_IMAGE_BYTES), "image_too_large"),
        (bomb_png(), "image_too_large"),
        # 20 million pixels: 80 MB once decoded as RGBA, from a few kilobytes.
        (bomb_png((5_000, 4_000)), "image_too_large"),
    ],
    ids=["not-an-image", "truncated", "over-1-MB", "pixel-bomb", "20-megapixels"],
)
def test_unusable_appearance_images_are_refused(
    ca: Issued, image: bytes, code: str
) -> None:
    with pytest.raises(EngineError) as refused:
        stamp_image_of(image)
    assert refused.value.code == code
    with pytest.raises(EngineError) as refused:
        sign(
            make_pdf(),
            signer_of(issue(ca, "A"), ca),
            SignOptions(
                appearance=Appearance(page=1, box=(0, 0, 200, 80), image=image)
            ),
        )
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (
            SignOptions(appearance=Appearance(page=9, box=(0, 0, 10, 10))),
            "page_out_of_range",
        ),
        (
            SignOptions(appearance=Appearance(page=1, box=(100, 100, 50, 150))),
            "invalid_box",
        ),
    ],
)
def test_impossible_appearances_are_refused(
    ca: Issued, options: SignOptions, code: str
) -> None:
    with pytest.raises(EngineError) as refused:
        sign(make_pdf(), signer_of(issue(ca, "A"), ca), options)
    assert refused.value.code == code


def test_a_signed_field_cannot_be_signed_again(ca: Issued) -> None:
    signer = signer_of(issue(ca, "A"), ca)
    signed = sign(make_pdf(), signer, SignOptions(field_name="Only"))
    with pytest.raises(EngineError) as refused:
        sign(signed, signer, SignOptions(field_name="Only"))
    assert refused.value.code == "field_already_signed"


def test_certification_locks_the_document(ca: Issued) -> None:
    signed = sign(
        make_pdf(),
        signer_of(issue(ca, "A"), ca),
        SignOptions(certify=Certification.NO_CHANGES),
    )
    reader = PdfFileReader(io.BytesIO(signed))
    assert "/DocMDP" in reader.root["/Perms"]
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert report.bottom_line


def test_tampered_pdf_gets_a_report_not_an_error(ca: Issued) -> None:
    original = make_pdf(text="pay 100 EUR")
    signed = bytearray(sign(original, signer_of(issue(ca, "A"), ca), SignOptions()))
    signed[len(original) // 2] ^= 0x01  # a byte inside the first signed range
    [report] = validate_pdf(
        io.BytesIO(bytes(signed)), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert (report.intact, report.bottom_line) == (False, False)
    assert "changed after signing" in report.problems[0]


def test_unsigned_pdf_has_no_signatures_and_untrusted_signer_is_reported(
    ca: Issued,
) -> None:
    assert (
        validate_pdf(
            io.BytesIO(make_pdf()), trust_roots=[asn1_of(ca)], allow_fetching=False
        )
        == []
    )
    other = make_ca("Other CA")
    signed = sign(make_pdf(), signer_of(issue(other, "Mallory"), other), SignOptions())
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert (report.intact, report.valid, report.trusted, report.bottom_line) == (
        True,
        True,
        False,
        False,
    )


def test_revoked_signer_is_reported_revoked(pki: TestPki) -> None:
    signed = sign(make_pdf(), pki_signer(pki, "revoked"), SignOptions())
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[pki.root], allow_fetching=True
    )
    assert report.revocation == "revoked"
    assert report.bottom_line is False


def sign_long_term(
    pki: TestPki, label: str, cache: RevocationCache, max_age: timedelta
) -> bytes:
    return sign(
        make_pdf(),
        pki_signer(pki, label),
        SignOptions(level=PadesLevel.B_LT),
        timestamper=timestamper_for(pki.tsa_url),
        revocation=revocation_fetching(
            [pki.root], [pki.interm], cache=cache, max_age=max_age
        ),
    )


def test_consecutive_long_term_signatures_fetch_revocation_data_once(
    pki: TestPki,
) -> None:
    cache = RevocationCache()
    ocsp, crls = pki.requests_to("ocsp"), pki.requests_to("crls")

    signed = [
        sign_long_term(pki, "alice", cache, timedelta(minutes=5)) for _ in range(2)
    ]

    # the signer's OCSP response and the issuing CA's CRL, each fetched once
    assert (pki.requests_to("ocsp") - ocsp, pki.requests_to("crls") - crls) == (1, 1)
    for pdf in signed:
        [report] = validate_pdf(
            io.BytesIO(pdf), trust_roots=[pki.root], allow_fetching=False
        )
        assert (report.pades_level, report.bottom_line) == ("B-LT", True)


def test_consecutive_long_term_signatures_validate_the_signer_once(
    pki: TestPki,
) -> None:
    cache = RevocationCache()
    sign_long_term(pki, "alice", cache, timedelta(minutes=5))
    looked_up = cache.hits + cache.misses

    again = sign_long_term(pki, "alice", cache, timedelta(minutes=5))

    # one look-up: the first signature's validation outcome, not its OCSP and CRLs
    assert (cache.hits + cache.misses - looked_up, cache.hits) == (1, 1)
    [report] = validate_pdf(
        io.BytesIO(again), trust_roots=[pki.root], allow_fetching=False
    )
    assert (report.pades_level, report.bottom_line) == ("B-LT", True)
    # another signer of the same CA is validated on its own, and refused
    with pytest.raises(EngineError) as refused:
        sign_long_term(pki, "revoked", cache, timedelta(minutes=5))
    assert refused.value.code == "signer_revoked"


@pytest.mark.parametrize(
    ("max_age", "later"),
    [
        (timedelta(minutes=5), timedelta(minutes=5, seconds=1)),
        # the responder's answers are good for 10 minutes: never used past that
        (timedelta(hours=1), timedelta(minutes=9, seconds=30)),
    ],
    ids=["past-max-age", "past-next-update"],
)
def test_cached_revocation_data_expires(
    pki: TestPki, max_age: timedelta, later: timedelta
) -> None:
    now = [datetime.now(UTC)]
    cache = RevocationCache(clock=lambda: now[0])
    ocsp = pki.requests_to("ocsp")
    sign_long_term(pki, "alice", cache, max_age)
    sign_long_term(pki, "alice", cache, max_age)
    assert pki.requests_to("ocsp") - ocsp == 1

    now[0] += later
    sign_long_term(pki, "alice", cache, max_age)

    assert pki.requests_to("ocsp") - ocsp == 2


def test_revoked_signer_is_refused_at_long_term_levels_every_time(
    pki: TestPki,
) -> None:
    cache = RevocationCache()
    for _ in range(2):
        with pytest.raises(EngineError) as refused:
            sign_long_term(pki, "revoked", cache, timedelta(minutes=5))
        assert refused.value.code == "signer_revoked"


def test_revocation_cache_is_bounded_and_keeps_only_data_with_a_next_update() -> None:
    now = datetime.now(UTC)
    cache = RevocationCache(max_entries=2, max_bytes=10, clock=lambda: now)
    later = now + timedelta(hours=1)
    age = timedelta(minutes=5)
    cache.put("a", [b"aaa"], later)
    cache.put("b", [b"bbb"], later)
    assert cache.get("a", max_age=age) == [b"aaa"]  # now the most recently used
    cache.put("c", [b"ccc"], later)
    assert [cache.get(k, max_age=age) for k in "abc"] == [[b"aaa"], None, [b"ccc"]]
    cache.put("d", [b"dddddddd"], later)  # over 10 bytes in all: the oldest go
    assert [cache.get(k, max_age=age) for k in "acd"] == [None, None, [b"dddddddd"]]
    cache.put("e", [b"e"], None)
    cache.put("f", [b"f" * 11], later)
    assert [cache.get(k, max_age=age) for k in "ef"] == [None, None]


def test_unreachable_revocation_responders_refuse_long_term_levels(
    tmp_path: Path,
) -> None:
    with running_pki(tmp_path) as pki:
        signer = pki_signer(pki, "alice")
        pki.stop()
        with pytest.raises(EngineError) as refused:
            sign(
                make_pdf(),
                signer,
                SignOptions(level=PadesLevel.B_LT),
                timestamper=timestamper_for(pki.tsa_url),
                revocation=revocation_fetching(
                    [pki.root], [pki.interm], cache=RevocationCache()
                ),
            )
    assert refused.value.code == "revocation_unavailable"


def test_signing_certificate_v2_names_the_signer_by_its_sha512(pki: TestPki) -> None:
    # An explicit (non-default) hash algorithm keeps the attribute a parsed value,
    # which asn1crypto dumps without re-serialising it for every signature.
    signed = sign(make_pdf(), pki_signer(pki, "alice"), SignOptions())
    [embedded] = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    [attribute] = [
        a
        for a in embedded.signer_info["signed_attrs"]
        if a["type"].native == "signing_certificate_v2"
    ]
    [cert_id] = attribute["values"][0]["certs"]
    assert cert_id["hash_algorithm"]["algorithm"].native == "sha512"
    assert (
        cert_id["cert_hash"].native == hashlib.sha512(pki.cert("alice").dump()).digest()
    )


@pytest.mark.parametrize("md_algorithm", ["sha256", "sha512"])
def test_templated_cms_is_byte_identical_to_pyhankos_own(
    ca: Issued, md_algorithm: str
) -> None:
    signer = signer_of(issue(ca, "Alice"), ca)
    for _ in range(3):  # built on the first use, reused after
        digest = os.urandom(hashlib.new(md_algorithm).digest_size)
        ours = _run(signer.async_sign(digest, md_algorithm, use_pades=True))
        pyhankos = _run(
            signers.SimpleSigner.async_sign(
                signer, digest, md_algorithm, use_pades=True
            )
        )
        assert ours.dump() == pyhankos.dump()
        [attribute] = [
            a
            for a in ours["content"]["signer_infos"][0]["signed_attrs"]
            if a["type"].native == "message_digest"
        ]
        assert attribute["values"][0].native == digest
    assert signer._templates[md_algorithm] is not None


def test_signers_without_a_fixed_cms_layout_use_pyhanko(ca: Issued) -> None:
    ecdsa = signer_of(issue(ca, "Bob", key_type="p256"), ca)
    signed = sign(make_pdf(), ecdsa, SignOptions())
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert report.bottom_line
    assert ecdsa._templates == {"sha256": None}
    # pyHanko's own size estimate (a dry run) does not build the template either.
    rsa = signer_of(issue(ca, "Carol"), ca)
    _run(rsa.async_sign(os.urandom(32), "sha256", use_pades=True, dry_run=True))
    assert rsa._templates == {}

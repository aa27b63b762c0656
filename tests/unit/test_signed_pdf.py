"""Signed PDFs: a signature page after a PDF/A document, site credentials at rest, PAdES signatures checked by
pyHanko and by poppler's pdfsig. Keys are generated per run; nothing here is a real credential."""

from __future__ import annotations

import io
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pikepdf
import pytest
import time_machine
from asn1crypto import cms
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.unit.test_document_rendering import DATA, META
from trialcoord.kernel.render import signed_pdf as sp
from trialcoord.kernel.render.pdf_documents import render_pdf

SIGNED_AT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
PASSPHRASE = b"correct horse battery staple"
PDFSIG = "/usr/bin/pdfsig"
SIGN = dict(signed_at=SIGNED_AT, reason="Approved as investigator", location="Berlin", signer_name="Dr. Anna Schmidt")


@pytest.fixture(scope="module")
def parts() -> tuple[bytes, bytes]:
    """A consent form and, as its signature page, a binder cover: both real PDF/A-3b renders."""
    return render_pdf("consent_form", DATA["consent_form"], **META), render_pdf(
        "binder_cover", DATA["binder_cover"], **META
    )


@pytest.fixture(scope="module")
def document(parts) -> bytes:
    return sp.append_pages(*parts)


@pytest.fixture(scope="module")
def site() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return sp.new_site_credentials(
        "Dr. Anna Schmidt", "Site 101 Berlin", SIGNED_AT - timedelta(days=30), SIGNED_AT + timedelta(days=365)
    )


@pytest.fixture(scope="module")
def saved(site) -> bytes:
    """Saved once: each save or load costs a 600,000-round key derivation, on purpose."""
    return sp.save_credentials(*site, PASSPHRASE)


def xmp(pdf: pikepdf.Pdf) -> dict[str, str]:
    meta = pdf.open_metadata()
    return {key: str(meta.get(key)) for key in ("pdfaid:part", "pdfaid:conformance", "pdf:Producer", "xmp:ModifyDate")}


def pdf_date(text: str) -> datetime:
    """A PDF date (D:YYYYMMDDHHmmSS followed by Z or +HH'mm') as an aware datetime."""
    body = str(text).removeprefix("D:")
    zone = body[14:].replace("'", "")
    return datetime.strptime(body[:14] + ("+0000" if zone in ("Z", "") else zone), "%Y%m%d%H%M%S%z")


def flipped(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


# --- append_pages --------------------------------------------------------------------------------------


def test_the_extra_pages_follow_the_base_pages_in_order(parts, document):
    base, extra = parts
    with (
        pikepdf.open(io.BytesIO(base)) as b,
        pikepdf.open(io.BytesIO(extra)) as e,
        pikepdf.open(io.BytesIO(document)) as both,
    ):
        assert len(b.pages) >= 1 and len(e.pages) >= 1
        assert len(both.pages) == len(b.pages) + len(e.pages)
        contents = [page.Contents.read_bytes() for page in both.pages]
        assert contents[: len(b.pages)] == [page.Contents.read_bytes() for page in b.pages]
        assert contents[len(b.pages) :] == [page.Contents.read_bytes() for page in e.pages]


def test_appending_keeps_the_base_documents_pdfa_metadata(parts, document):
    base = parts[0]
    with pikepdf.open(io.BytesIO(base)) as b, pikepdf.open(io.BytesIO(document)) as both:
        assert xmp(both)["pdfaid:part"] == "3" and xmp(both)["pdfaid:conformance"] == "B"
        assert both.Root.Metadata.read_bytes() == b.Root.Metadata.read_bytes()
        assert dict(both.docinfo.items()) == dict(b.docinfo.items())
        assert both.Root.OutputIntents[0].S == "/GTS_PDFA1"
        assert bytes(both.Root.OutputIntents[0].DestOutputProfile.read_bytes()) == bytes(
            b.Root.OutputIntents[0].DestOutputProfile.read_bytes()
        )
        assert "data.json" in both.attachments  # the base's own attachment, which PDF/A-3 relates to it


def test_appending_is_reproducible_whatever_the_clock_says(parts, document):
    with time_machine.travel("2031-05-05T12:00:00Z", tick=False):
        again = sp.append_pages(*parts)
    assert again == document
    with pikepdf.open(io.BytesIO(document)) as both, pikepdf.open(io.BytesIO(parts[0])) as base:
        # the permanent identifier stays the base's, the changing one is new: a hash of the content, not random
        assert both.trailer.ID[0] == base.trailer.ID[0] and both.trailer.ID[1] != base.trailer.ID[1]


@pytest.mark.parametrize("argument", ["base", "extra"])
@pytest.mark.parametrize("bad", [b"", b"not a pdf at all", "a str, not bytes"])
def test_an_argument_that_is_not_a_pdf_is_named(parts, argument, bad):
    arguments = dict(base=parts[0], extra=parts[1]) | {argument: bad}
    with pytest.raises(ValueError, match=rf"^{argument} is not a readable PDF"):
        sp.append_pages(**arguments)


# --- credentials -----------------------------------------------------------------------------------


def test_the_site_certificate_is_a_self_signed_p256_signing_certificate(site):
    key, cert = site
    assert isinstance(key.curve, ec.SECP256R1) and cert.public_key() == key.public_key()
    assert cert.issuer == cert.subject
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == "Dr. Anna Schmidt"
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)[0].value == "Site 101 Berlin"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (
        SIGNED_AT - timedelta(days=30),
        SIGNED_AT + timedelta(days=365),
    )
    cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))


def test_the_certificate_pem_loads_back(site):
    pem = sp.certificate_pem(site[1])
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n") and pem.endswith("-----END CERTIFICATE-----\n")
    assert x509.load_pem_x509_certificate(pem.encode()) == site[1]


def test_saved_credentials_load_back_and_sign_for_the_same_certificate(site, saved):
    key, cert = sp.load_credentials(saved, PASSPHRASE)
    assert cert == site[1]
    assert key.private_numbers() == site[0].private_numbers()
    cert.public_key().verify(key.sign(b"message", ec.ECDSA(hashes.SHA256())), b"message", ec.ECDSA(hashes.SHA256()))


def test_saved_credentials_hold_no_plain_key(site, saved):
    key = site[0]
    assert key.private_numbers().private_value.to_bytes(32, "big") not in saved
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert der not in saved and der[-40:] not in saved


def test_every_passphrase_guess_costs_600000_pbkdf2_rounds(saved):
    pfx = asn1_pkcs12.Pfx.load(saved)
    # a MAC would offer a cheaper check of a guess: cryptography computes it with 2,048 rounds
    assert not pfx["mac_data"].native
    algorithms = []
    for info in asn1_pkcs12.AuthenticatedSafe.load(pfx["auth_safe"]["content"].native):
        if info["content_type"].native == "encrypted_data":  # the certificate bag
            algorithms.append(info["content"]["encrypted_content_info"]["content_encryption_algorithm"])
        else:  # the shrouded key bag
            for bag in asn1_pkcs12.SafeContents.load(info["content"].native):
                assert bag["bag_id"].native == "pkcs8_shrouded_key_bag"
                algorithms.append(bag["bag_value"]["encryption_algorithm"])
    assert len(algorithms) == 2
    for algorithm in algorithms:
        assert (algorithm.kdf, algorithm.kdf_hmac, algorithm.kdf_iterations) == ("pbkdf2", "sha256", 600_000)
        assert (algorithm.encryption_cipher, algorithm.key_length) == ("aes", 32)


@pytest.mark.parametrize("damage", ["wrong passphrase", "flipped byte", "truncated", "not pkcs12", "str data"])
def test_unloadable_credentials_are_a_clear_error(saved, damage):
    data, passphrase = {
        "wrong passphrase": (saved, b"Tr0ub4dor&3"),
        "flipped byte": (flipped(saved, len(saved) // 2), PASSPHRASE),
        "truncated": (saved[:-20], PASSPHRASE),
        "not pkcs12": (b"-----BEGIN CERTIFICATE-----", PASSPHRASE),
        "str data": ("not bytes", PASSPHRASE),
    }[damage]
    with pytest.raises(ValueError, match=r"^wrong passphrase or damaged credentials$") as raised:
        sp.load_credentials(data, passphrase)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no traceback from cryptography


def test_credentials_without_a_p256_key_are_refused():
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "P-384")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(SIGNED_AT)
        .not_valid_after(SIGNED_AT + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        None, key, cert, None, serialization.BestAvailableEncryption(PASSPHRASE)
    )
    with pytest.raises(ValueError, match="no P-256 signing key"):
        sp.load_credentials(data, PASSPHRASE)


# --- PAdES signing and checking ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_signed_document_checks_out_against_its_certificate(document, site):
    signed = await sp.pades_sign(document, *site, **SIGN)
    check = await sp.pades_verify(signed, [site[1]])
    assert check == sp.PadesCheck(
        signed=True,
        intact=True,
        valid=True,
        trusted=True,
        covers_whole_file=True,
        signer="Dr. Anna Schmidt",
        signed_at=SIGNED_AT,
        problems=(),
    )
    assert check.ok


@pytest.mark.anyio
async def test_signing_appends_an_invisible_pades_signature_as_an_incremental_update(document, site):
    signed = await sp.pades_sign(document, *site, **SIGN, field_name="Investigator")
    assert signed.startswith(document)  # the unsigned bytes stay as they were: store both hashes
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        (field,) = pdf.Root.AcroForm.Fields
        assert (field.FT, field.T, field.Subtype) == ("/Sig", "Investigator", "/Widget")
        assert [float(x) for x in field.Rect] == [0, 0, 0, 0]
        assert int(field.F) & 0b100 and not int(field.F) & 0b11  # printable, not hidden: PDF/A
        value = field.V
        assert (value.SubFilter, value.Reason, value.Location, value.Name) == (
            "/ETSI.CAdES.detached",
            "Approved as investigator",
            "Berlin",
            "Dr. Anna Schmidt",
        )
        assert pdf_date(value.M) == SIGNED_AT
        signed_data = cms.ContentInfo.load(bytes(value.Contents))["content"]
        attributes = {a["type"].native for a in signed_data["signer_infos"][0]["signed_attrs"]}
    # PAdES baseline: the signer's certificate is bound to the signature; the time is /M, not a CMS attribute
    assert "signing_certificate_v2" in attributes and "signing_time" not in attributes
    assert signed_data["certificates"][0].chosen.dump() == site[1].public_bytes(serialization.Encoding.DER)


@pytest.mark.anyio
async def test_a_signed_document_stays_pdfa_consistent_and_is_dated_by_the_signing_not_the_clock(document, site):
    with time_machine.travel("2031-05-05T12:00:00Z", tick=False):
        signed = await sp.pades_sign(document, *site, **SIGN)
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        meta = xmp(pdf)
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("3", "B")
        assert str(pdf.docinfo.Producer) == meta["pdf:Producer"]  # pyHanko alone would append itself to Info's
        assert pdf_date(pdf.docinfo.ModDate) == datetime.fromisoformat(meta["xmp:ModifyDate"]) == SIGNED_AT
        assert pdf_date(pdf.docinfo.CreationDate) == pdf_date(pikepdf.open(io.BytesIO(document)).docinfo.CreationDate)
        # pyHanko declares ISO 32002 (a PDF 2.0 extension) for ECDSA unless told not to: PDF/A-3 is PDF 1.7
        assert "/Version" not in pdf.Root and pdf.pdf_version == "1.7"
        assert set(pdf.Root.Extensions.keys()) == {"/ESIC"}
        assert "/GTS_PDFA1" == pdf.Root.OutputIntents[0].S and "data.json" in pdf.attachments


@pytest.mark.anyio
async def test_a_naive_signing_time_is_refused(document, site):
    with pytest.raises(ValueError, match="time zone"):
        await sp.pades_sign(document, *site, **(SIGN | {"signed_at": datetime(2026, 11, 27, 10, 0)}))


@pytest.mark.anyio
async def test_signing_a_non_pdf_is_a_clear_error(site):
    with pytest.raises(ValueError, match="^pdf is not a readable PDF"):
        await sp.pades_sign(b"plain text", *site, **SIGN)


@pytest.mark.anyio
async def test_another_sites_certificate_is_not_trusted(document, site):
    signed = await sp.pades_sign(document, *site, **SIGN)
    _, other = sp.new_site_credentials(
        "Dr. Anna Schmidt", "Site 101 Berlin", SIGNED_AT - timedelta(days=30), SIGNED_AT + timedelta(days=365)
    )  # same name, different key
    for trusted in ([other], []):
        check = await sp.pades_verify(signed, trusted)
        assert (check.signed, check.intact, check.valid, check.covers_whole_file) == (True, True, True, True)
        assert not check.trusted and not check.ok
        assert len(check.problems) == 1 and "not one of the trusted certificates" in check.problems[0]
    assert (await sp.pades_verify(signed, [other, site[1]])).ok


@pytest.mark.anyio
@pytest.mark.parametrize("valid_from, valid_to", [(-400, -35), (1, 400)], ids=["expired", "not yet valid"])
async def test_a_certificate_not_valid_at_the_signing_time_is_not_trusted(document, valid_from, valid_to):
    key, cert = sp.new_site_credentials(
        "Dr. Anna Schmidt",
        "Site 101 Berlin",
        SIGNED_AT + timedelta(days=valid_from),
        SIGNED_AT + timedelta(days=valid_to),
    )
    check = await sp.pades_verify(await sp.pades_sign(document, key, cert, **SIGN), [cert])
    assert check.valid and check.intact and not check.trusted and not check.ok
    assert check.problems == ("The signer's certificate was not valid at the signing time.",)


@pytest.mark.anyio
async def test_a_certificate_that_expired_after_signing_still_vouches_for_the_signature(document):
    """Checked at the signing time, not today: the same document checks out in any year."""
    key, cert = sp.new_site_credentials(
        "Dr. Anna Schmidt", "Site 101 Berlin", SIGNED_AT - timedelta(days=1), SIGNED_AT + timedelta(days=1)
    )
    signed = await sp.pades_sign(document, key, cert, **SIGN)
    with time_machine.travel("2040-01-01T00:00:00Z", tick=False):
        assert (await sp.pades_verify(signed, [cert])).ok


@pytest.mark.anyio
async def test_a_changed_byte_inside_the_signed_range_is_caught(document, site):
    signed = await sp.pades_sign(document, *site, **SIGN)
    # a byte in the middle of the consent form's first content stream: the file still parses, its hash differs
    start = document.index(b"stream\n", document.index(b"/FlateDecode")) + len(b"stream\n")
    check = await sp.pades_verify(flipped(signed, start + 10), [site[1]])
    assert check.signed and not check.intact and not check.ok
    assert "altered" in " ".join(check.problems)


@pytest.mark.anyio
async def test_bytes_appended_after_signing_are_caught(document, site):
    signed = await sp.pades_sign(document, *site, **SIGN)
    check = await sp.pades_verify(signed + b"\n% appended after signing\n", [site[1]])
    assert check.intact and check.valid and check.trusted
    assert not check.covers_whole_file and not check.ok
    assert check.problems == ("Data was appended to the file after it was signed.",)


@pytest.mark.anyio
async def test_an_unsigned_pdf_is_reported_unsigned(document, site):
    check = await sp.pades_verify(document, [site[1]])
    assert not check.signed and not check.ok and check.problems == ("The file carries no signature.",)


@pytest.mark.anyio
@pytest.mark.parametrize("data", [b"", b"plain text", b"%PDF-1.7\n%%EOF", "a str, not bytes"])
async def test_a_non_pdf_is_reported_not_raised(site, data):
    check = await sp.pades_verify(data, [site[1]])
    assert not check.signed and not check.ok
    assert len(check.problems) == 1 and "not a readable PDF" in check.problems[0]


@pytest.mark.anyio
async def test_a_truncated_signed_file_is_reported_not_raised(document, site):
    signed = await sp.pades_sign(document, *site, **SIGN)
    for cut in (len(signed) - 100, len(document) + 200, len(signed) // 2):
        check = await sp.pades_verify(signed[:cut], [site[1]])
        assert not check.ok and check.problems


# --- poppler's pdfsig --------------------------------------------------------------------------------


def pdfsig(tmp_path, data: bytes) -> str:
    if not os.path.exists(PDFSIG):
        reason = f"{PDFSIG} is missing (apt-get install poppler-utils)"
        if os.environ.get("TRIALCOORD_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    path = tmp_path / "signed.pdf"
    path.write_bytes(data)
    # pdfsig prints the signing time in the local zone and locale
    done = subprocess.run(
        [PDFSIG, str(path)], capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.anyio
async def test_pdfsig_verifies_the_signature_and_catches_a_changed_byte(tmp_path, document, site):
    signed = await sp.pades_sign(document, *site, **SIGN)
    report = pdfsig(tmp_path, signed)
    assert "Signature Validation: Signature is Valid." in report
    assert "Signature Type: ETSI.CAdES.detached" in report
    assert "Signer Certificate Common Name: Dr. Anna Schmidt" in report
    assert "Signing Time: Nov 27 2026 10:00:00" in report
    assert "Total document signed" in report
    # self-signed: poppler knows no issuer for it, which is expected here
    assert "Certificate Validation: Certificate issuer is unknown." in report

    start = document.index(b"stream\n", document.index(b"/FlateDecode")) + len(b"stream\n")
    tampered = pdfsig(tmp_path, flipped(signed, start + 10))
    assert "Signature is Valid." not in tampered and "Signature Validation: Digest Mismatch." in tampered

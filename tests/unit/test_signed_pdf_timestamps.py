"""PAdES B-T and B-LT: a signature time-stamped by an RFC 3161 authority, here pyHanko's DummyTimeStamper behind
an HTTP server on loopback (tests/timestamp_authority.py), and with the authority's CA given, its validation data
in a DSS. The token is checked with asn1crypto and cryptography (its imprint is the hash of the signature value,
its own signature verifies with the TSA's key), with pyHanko's validator (the time, the TSA trusted through its
CA; for B-LT with only what the DSS holds, revocation data required) and with poppler's pdfsig (which shows no
time-stamps in version 22.12, but checks that the signature still verifies with the token added); the DSS is
read with pikepdf. An authority that cannot be reached or refuses is a TimestampError naming it; nothing is
signed."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pikepdf
import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.timestamp_authority import _asn1, closed_port_url, serving
from tests.unit.test_signed_pdf import SIGN, SIGNED_AT, pdf_date, pdfsig, xmp
from tests.unit.test_signed_pdf import document as document  # noqa: F401 - the fixture, shared
from tests.unit.test_signed_pdf import parts as parts  # noqa: F401 - the fixture document needs
from tests.unit.test_signed_pdf import site as site  # noqa: F401 - the fixture, shared
from trialcoord.kernel.render import signed_pdf as sp

pytestmark = pytest.mark.anyio
STAMPED_AT = SIGNED_AT + timedelta(seconds=7)  # the authority's clock, not the signer's


@pytest.fixture(scope="module")
def server():
    with serving(STAMPED_AT) as running:
        yield running


@pytest.fixture
def authority(server):
    return server.authority


@pytest.fixture
def tsa(server):
    return server.url


def signer_info(signed: bytes) -> cms.SignerInfo:
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        (field,) = pdf.Root.AcroForm.Fields
        contents = bytes(field.V.Contents)
    return cms.ContentInfo.load(contents)["content"]["signer_infos"][0]


def token_of(info: cms.SignerInfo) -> cms.ContentInfo:
    (attribute,) = [a for a in info["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"]
    return attribute["values"][0]


@pytest.fixture
async def stamped(document, site, tsa) -> bytes:  # noqa: F811 - the fixtures imported above
    return await sp.pades_sign(document, *site, **SIGN, tsa_url=f"{tsa}/tsa")


async def test_the_token_is_the_authoritys_over_the_signature_value(stamped, authority):
    info = signer_info(stamped)
    signed_data = token_of(info)["content"]
    tst_info = signed_data["encap_content_info"]["content"].parsed
    # RFC 3161 within CAdES: the token's imprint is the hash of the signature value it time-stamps
    assert tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert tst_info["message_imprint"]["hashed_message"].native == hashlib.sha256(info["signature"].native).digest()
    assert tst_info["gen_time"].native == STAMPED_AT
    # the token is signed by the TSA's certificate, over its signed attributes (DER, as a SET)
    (tsa_info,) = signed_data["signer_infos"]
    tsa_certificate = authority.certificate.public_bytes(serialization.Encoding.DER)
    assert tsa_certificate in [c.chosen.dump() for c in signed_data["certificates"]]
    attributes = {a["type"].native: a["values"][0].native for a in tsa_info["signed_attrs"]}
    assert (
        attributes["message_digest"] == hashlib.sha256(signed_data["encap_content_info"]["content"].contents).digest()
    )
    signed_attributes = b"\x31" + tsa_info["signed_attrs"].dump()[1:]  # stored as [0] IMPLICIT, signed as a SET
    authority.certificate.public_key().verify(
        tsa_info["signature"].native, signed_attributes, padding.PKCS1v15(), hashes.SHA256()
    )


async def test_pyhankos_validator_trusts_the_time_stamp_through_the_tsas_ca(stamped, site, authority):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    (embedded,) = PdfFileReader(io.BytesIO(stamped)).embedded_signatures
    status = await async_validate_pdf_signature(
        embedded,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(site[1])], allow_fetching=False),
        ts_validation_context=ValidationContext(trust_roots=[_asn1(authority.root)], allow_fetching=False),
    )
    stamp = status.timestamp_validity
    assert stamp is not None and (stamp.intact, stamp.valid, stamp.trusted) == (True, True, True)
    assert stamp.timestamp == STAMPED_AT
    assert status.bottom_line and status.signer_reported_dt == SIGNED_AT
    # a time-stamp from an authority the reader does not trust is reported so
    untrusted = await async_validate_pdf_signature(
        embedded,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(site[1])], allow_fetching=False),
        ts_validation_context=ValidationContext(trust_roots=[_asn1(site[1])], allow_fetching=False),
    )
    assert untrusted.timestamp_validity.intact and not untrusted.timestamp_validity.trusted


async def test_pdfsig_still_verifies_a_time_stamped_signature(tmp_path, stamped):
    report = pdfsig(tmp_path, stamped)
    assert "Signature Validation: Signature is Valid." in report
    assert "Signature Type: ETSI.CAdES.detached" in report
    assert "Signing Time: Nov 27 2026 10:00:00" in report  # /M, as the signer claims it
    assert "Total document signed" in report


async def test_a_time_stamped_file_stays_pdfa_consistent_and_checks_out(stamped, document, site):
    assert stamped.startswith(document)
    with pikepdf.open(io.BytesIO(stamped)) as pdf:
        meta = xmp(pdf)
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("3", "B")
        assert pdf_date(pdf.docinfo.ModDate) == SIGNED_AT and str(pdf.docinfo.Producer) == meta["pdf:Producer"]
        assert "/Version" not in pdf.Root and set(pdf.Root.Extensions.keys()) == {"/ESIC"}
    assert (await sp.pades_verify(stamped, [site[1]])).ok


async def test_without_an_authority_the_signature_carries_no_time_stamp(document, site):
    info = signer_info(await sp.pades_sign(document, *site, **SIGN))
    assert not info["unsigned_attrs"].native  # B-B: the signing time is the signer's claim alone


@pytest.mark.parametrize(
    "path, cause",
    [
        ("/refuse", "it answered rejection: policy not accepted"),
        ("/error", "500, message='Internal Server Error'"),
        ("/garbage", "its reply is no RFC 3161 time-stamp response"),
        ("/html", "expected content type application/timestamp-reply, but got text/html"),
    ],
)
async def test_an_authority_that_answers_no_token_is_named_with_what_it_said(document, site, tsa, path, cause):
    url = f"{tsa}{path}"
    with pytest.raises(sp.TimestampError) as raised:
        await sp.pades_sign(document, *site, **SIGN, tsa_url=url)
    message = str(raised.value)
    assert message.startswith(f"the time-stamp authority {url} (TRIALCOORD_TSA_URL) gave no time-stamp: ")
    assert cause in message and message.endswith("; nothing was signed") and "\n" not in message
    assert raised.value.url == url and raised.value.__cause__ is None  # no traceback of aiohttp's or asn1crypto's
    assert raised.value.__context__ is None or raised.value.__suppress_context__


async def test_an_unreachable_authority_is_named_with_the_refused_connection(document, site):
    url = closed_port_url()
    with pytest.raises(sp.TimestampError, match=r"^the time-stamp authority .* gave no time-stamp: ") as raised:
        await sp.pades_sign(document, *site, **SIGN, tsa_url=url)
    assert url in str(raised.value) and "Connect call failed" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# --- B-LT: the validation data in a DSS ---------------------------------------------------------------


@pytest.fixture
async def long_term(document, site, tsa, authority) -> bytes:  # noqa: F811 - the fixtures imported above
    return await sp.pades_sign(document, *site, **SIGN, tsa_url=f"{tsa}/tsa", tsa_roots=[authority.root])


def der(certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def dss_of(signed: bytes) -> tuple[set[bytes], list[bytes], set[str]]:
    """The DSS as pikepdf reads it: its certificates, CRLs and keys."""
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        dss = pdf.Root.DSS
        return (
            {bytes(c.read_bytes()) for c in dss.Certs},
            [bytes(c.read_bytes()) for c in dss.get("/CRLs", [])],
            set(dss.keys()),
        )


async def test_with_the_tsas_ca_a_dss_holds_both_chains_and_the_tsas_crl(long_term, site, authority):
    certificates, crls, keys = dss_of(long_term)
    assert keys == {"/Certs", "/CRLs"}  # no VRI: optional, and pyHanko would key it differently from ISO 32000-2
    assert {der(site[1]), der(authority.certificate), der(authority.root)} <= certificates
    assert crls == [authority.crl.public_bytes(serialization.Encoding.DER)]  # fetched from the TSA's CRL URL
    with pikepdf.open(io.BytesIO(long_term)) as pdf:
        (field,) = pdf.Root.AcroForm.Fields
        # the DSS is a revision of its own after the signature, dated by the signing, not the clock
        assert pdf_date(pdf.docinfo.ModDate) == SIGNED_AT == pdf_date(field.V.M)
        assert "/Version" not in pdf.Root and set(pdf.Root.Extensions.keys()) == {"/ESIC"}
        assert (xmp(pdf)["pdfaid:part"], xmp(pdf)["pdfaid:conformance"]) == ("3", "B")
    assert signer_info(long_term)["unsigned_attrs"][0]["type"].native == "signature_time_stamp_token"


async def test_a_b_lt_file_validates_from_its_dss_alone(long_term, site, authority):
    """pyHanko's validator, fetching nothing and requiring revocation data for every certificate but the anchors,
    given only the certificates and CRLs the DSS holds (read with pikepdf): the time-stamp is trusted."""
    from asn1crypto import crl as asn1_crl
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    certificates, crls, _ = dss_of(long_term)
    offline = dict(
        other_certs=[asn1_x509.Certificate.load(c) for c in certificates],
        crls=[asn1_crl.CertificateList.load(c) for c in crls],
        allow_fetching=False,
        revocation_mode="require",
    )
    (embedded,) = PdfFileReader(io.BytesIO(long_term)).embedded_signatures
    status = await async_validate_pdf_signature(
        embedded,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(site[1])], **offline),
        ts_validation_context=ValidationContext(trust_roots=[_asn1(authority.root)], **offline),
    )
    stamp = status.timestamp_validity
    assert (stamp.intact, stamp.valid, stamp.trusted, stamp.timestamp) == (True, True, True, STAMPED_AT)
    assert status.bottom_line
    # without the DSS's CRL the same demand fails: the DSS is what makes it verifiable offline
    bare = await async_validate_pdf_signature(
        embedded,
        signer_validation_context=ValidationContext(trust_roots=[_asn1(site[1])], **offline),
        ts_validation_context=ValidationContext(trust_roots=[_asn1(authority.root)], **(offline | {"crls": []})),
    )
    assert not bare.timestamp_validity.trusted


async def test_a_b_lt_file_checks_out_and_pdfsig_sees_the_dss_revision(tmp_path, long_term, site):
    check = await sp.pades_verify(long_term, [site[1]])
    assert check.ok, check.problems  # the DSS revision is validation data, not content appended
    tampered = await sp.pades_verify(long_term + b"\n% appended after the DSS\n", [site[1]])
    assert not tampered.covers_whole_file and not tampered.ok
    report = pdfsig(tmp_path, long_term)
    assert "Signature Validation: Signature is Valid." in report
    assert "Not total document signed" in report  # the DSS follows the signed revision, as B-LT has it


async def test_a_tsa_ca_that_did_not_issue_the_tsas_certificate_is_an_error(document, site, tsa):
    _, stranger = sp.new_site_credentials(
        "Another CA", "Elsewhere", SIGNED_AT - timedelta(days=1), SIGNED_AT + timedelta(days=1)
    )
    expected = (
        r"a certificate to embed does not validate against the site's certificate and TRIALCOORD_TSA_CA_FILE: Unable"
    )
    with pytest.raises(sp.TimestampError, match=expected):
        await sp.pades_sign(document, *site, **SIGN, tsa_url=f"{tsa}/tsa", tsa_roots=[stranger])


async def test_an_unreachable_crl_of_the_tsa_is_an_error_not_a_dss_without_it(document, site, server):
    server.crl_down = True
    try:
        with pytest.raises(sp.TimestampError) as raised:
            await sp.pades_sign(document, *site, **SIGN, tsa_url=f"{server.url}/tsa", tsa_roots=[server.authority.root])
    finally:
        server.crl_down = False
    message = str(raised.value)
    assert "does not validate against the site's certificate and TRIALCOORD_TSA_CA_FILE: " in message
    assert "no revocation information could be found for the end-entity certificate Common Name: Test TSA" in message
    assert message.endswith("; nothing was signed") and "\n" not in message

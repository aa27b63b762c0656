"""PAdES B-T: a signature time-stamped by an RFC 3161 authority, here pyHanko's DummyTimeStamper behind an HTTP
server on loopback (tests/timestamp_authority.py). The token is checked with asn1crypto and cryptography (its
imprint is the hash of the signature value, its own signature verifies with the TSA's key), with pyHanko's
validator (the time, the TSA trusted through its CA) and with poppler's pdfsig (which shows no time-stamps in
version 22.12, but checks that the signature still verifies with the token added). An authority that cannot be
reached or refuses is a TimestampError naming it; nothing is signed."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pikepdf
import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.timestamp_authority import closed_port_url, new_authority, serving
from tests.unit.test_signed_pdf import SIGN, SIGNED_AT, pdf_date, pdfsig, xmp
from tests.unit.test_signed_pdf import document as document  # noqa: F401 - the fixture, shared
from tests.unit.test_signed_pdf import parts as parts  # noqa: F401 - the fixture document needs
from tests.unit.test_signed_pdf import site as site  # noqa: F401 - the fixture, shared
from trialcoord.kernel.render import signed_pdf as sp

pytestmark = pytest.mark.anyio
STAMPED_AT = SIGNED_AT + timedelta(seconds=7)  # the authority's clock, not the signer's


@pytest.fixture(scope="module")
def authority():
    return new_authority()


@pytest.fixture
def tsa(authority):
    with serving(authority, STAMPED_AT) as base:
        yield base


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

    from tests.timestamp_authority import _asn1

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
    assert cause in message and "\n" not in message
    assert raised.value.url == url and raised.value.__cause__ is None  # no traceback of aiohttp's or asn1crypto's
    assert raised.value.__context__ is None or raised.value.__suppress_context__


async def test_an_unreachable_authority_is_named_with_the_refused_connection(document, site):
    url = closed_port_url()
    with pytest.raises(sp.TimestampError, match=r"^the time-stamp authority .* gave no time-stamp: ") as raised:
        await sp.pades_sign(document, *site, **SIGN, tsa_url=url)
    assert url in str(raised.value) and "Connect call failed" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

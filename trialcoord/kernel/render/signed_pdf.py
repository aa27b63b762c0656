"""Signed PDFs: a signature page after a document, site signing credentials, PAdES signatures and their check.

Functions of their inputs only (and of a time-stamp authority's answers, when one is named): no clock, no state.
Appending pages is byte-reproducible; a signature is not (ECDSA and the new file identifier are random), and its
incremental update changes the file's hash: store both files.
A signed file stays PDF/A-3b: pyHanko rewrites the XMP, so Producer and ModDate are aligned with the Info dictionary.
pyHanko takes most of a second to import, so only the functions that need it import it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import pikepdf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from trialcoord.kernel.render import timestamps
from trialcoord.kernel.render.timestamps import TimestampError

__all__ = ["TimestampError"]  # raised by pades_sign: callers catch it from here

# --- a signature page after the document -------------------------------------------------------------


def _open(data: bytes, argument: str) -> pikepdf.Pdf:
    try:
        return pikepdf.open(io.BytesIO(data))
    except (pikepdf.PdfError, TypeError) as error:  # PasswordError is a PdfError too
        raise ValueError(f"{argument} is not a readable PDF ({error})") from None


def append_pages(base: bytes, extra: bytes) -> bytes:
    """`base` followed by every page of `extra`; base's catalog and Info (XMP, OutputIntents) stay as they are."""
    with _open(base, "base") as document, _open(extra, "extra") as appendix:
        document.pages.extend(appendix.pages)
        out = io.BytesIO()
        # /ID from a hash of the content, as WeasyPrint does (qpdf adds no dates of its own); pikepdf would
        # otherwise re-serialise the XMP packet, which must stay base's.
        document.save(out, deterministic_id=True, fix_metadata_version=False)
        return out.getvalue()


# --- site credentials --------------------------------------------------------------------------------


def new_site_credentials(
    common_name: str, organisation: str, valid_from: datetime, valid_to: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 key and a self-signed certificate for it: poppler's pdfsig cannot verify Ed25519 PAdES."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # nonRepudiation (contentCommitment) is what pyHanko's validator requires of a document signer
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def save_credentials(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate, passphrase: bytes) -> bytes:
    """PKCS#12, key and certificate under PBKDF2-SHA256 with 600,000 rounds and AES-256 (BestAvailableEncryption
    uses 2,048), and no MAC (see below): each passphrase guess costs a full key derivation."""
    from asn1crypto import pkcs12 as asn1_pkcs12

    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(600_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    pfx = asn1_pkcs12.Pfx.load(pkcs12.serialize_key_and_certificates(None, key, certificate, None, encryption))
    # cryptography MACs the file with 2,048 rounds of the PKCS#12 KDF whatever kdf_rounds says: a guess checked
    # against that MAC would skip the 600,000 rounds. The MAC is optional (openssl pkcs12 -nomac), so drop it.
    pfx["mac_data"] = None
    return pfx.dump(force=True)


def load_credentials(data: bytes, passphrase: bytes) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(data, passphrase)
    except (ValueError, TypeError):  # cryptography cannot tell a wrong passphrase from damaged data
        raise ValueError("wrong passphrase or damaged credentials") from None
    if (
        not isinstance(key, ec.EllipticCurvePrivateKey)
        or not isinstance(key.curve, ec.SECP256R1)
        or certificate is None
        or certificate.public_key() != key.public_key()
    ):
        raise ValueError("the credentials hold no P-256 signing key with its certificate")
    return key, certificate


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --- PAdES signatures --------------------------------------------------------------------------------


def _asn1(certificate: x509.Certificate):
    from asn1crypto import x509 as asn1_x509

    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


async def pades_sign(
    pdf: bytes,
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    *,
    signed_at: datetime,
    reason: str,
    location: str,
    signer_name: str,
    field_name: str = "Signature1",
    tsa_url: str | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
) -> bytes:
    """`pdf` with an invisible PAdES signature (ETSI.CAdES.detached) appended as an incremental update: B-B, or
    B-T given `tsa_url`, an RFC 3161 time-stamp authority whose token over the signature value is added to it.

    PAdES keeps the signing time out of the CMS (the signing-time attribute is forbidden there): it is the
    signature dictionary's /M, and the file's ModDate, both `signed_at`, as the signer claims it; the token's
    time is the authority's. A time-stamp authority that cannot be reached or refuses raises TimestampError:
    never a B-B signature in place of the B-T asked for.
    """
    from asn1crypto import keys as asn1_keys
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.metadata.model import VENDOR, DocumentMetadata
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    if signed_at.tzinfo is None:
        raise ValueError("signed_at must carry a time zone")

    class SignedAtMetadata(DocumentMetadata):
        # pyHanko's writer sets last_modified to "now" just before writing (PdfFileWriter._update_meta), which
        # would date Info /ModDate and XMP xmp:ModifyDate from the clock: keep the signing time instead.
        def __setattr__(self, name: str, value) -> None:
            if not (name == "last_modified" and value == "now"):
                super().__setattr__(name, value)

    class SignerAt(signers.PdfSigner):
        def register_extensions(self, pdf_out, *, md_algorithm: str) -> None:
            # pyHanko declares ISO 32002 for any ECDSA key, which sets the catalog /Version to 2.0: PDF/A-3 is
            # PDF 1.7, where PAdES with ECDSA over SHA-256 needs only the ESIC extension.
            pdf_out.ensure_output_version((1, 7))
            pdf_out.register_extension(signers.constants.ESIC_EXTENSION_1)

        # pyHanko 0.38 has no signing-time option (issue #569): the session takes the clock unless told.
        def init_signing_session(self, pdf_out, existing_fields_only=False):
            session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
            session.system_time = signed_at
            return session

    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    except (PdfError, ValueError, TypeError) as error:
        raise ValueError(f"pdf is not a readable PDF ({error})") from None
    writer._meta = SignedAtMetadata(last_modified=signed_at)
    if "/Info" in writer.trailer:
        # pyHanko writes XMP pdf:Producer = its own name but appends it to Info's: PDF/A wants the two equal.
        writer.trailer["/Info"]["/Producer"] = generic.TextStringObject(VENDOR)
        writer.mark_update(writer.trailer.raw_get("/Info"))

    cert = _asn1(certificate)
    signer = signers.SimpleSigner(
        signing_cert=cert,
        cert_registry=SimpleCertificateStore.from_certs([cert]),
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        reason=reason,
        location=location,
        name=signer_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    stamper = timestamps.authority(tsa_url) if tsa_url else None
    signed = (await SignerAt(meta, signer, timestamper=stamper).async_sign_pdf(writer)).getvalue()
    if not (tsa_url and tsa_roots):
        return signed
    return await timestamps.with_validation_data(
        signed, [certificate, *tsa_roots], tsa_url, SignedAtMetadata(last_modified=signed_at)
    )


@dataclass(frozen=True)
class PadesCheck:
    signed: bool  # the file carries a signature
    intact: bool  # the signed bytes hash to the digest the signature covers
    valid: bool  # the signature over that digest verifies with the signer's key
    trusted: bool  # the signer's certificate is one of the trusted ones, valid at the signing time
    covers_whole_file: bool  # nothing was appended after signing but validation data (B-LT's DSS)
    signer: str  # the certificate's common name
    signed_at: datetime | None  # as the signer claims it (no time-stamp authority)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.signed and self.intact and self.valid and self.trusted and self.covers_whole_file


def _only_validation_data_after(pdf: bytes, embedded, status) -> bool:
    """B-LT appends its validation data (a DSS) in a revision of its own: such revisions, and nothing else, may
    follow. Each revision ends with %%EOF: bytes outside any revision pyHanko reads add an end, or trail the last."""
    from pyhanko.sign.diff_analysis import ModificationLevel

    later = embedded.reader.xrefs.total_revisions - 1 - embedded.signed_revision
    after = pdf[int(embedded.byte_range[2]) + int(embedded.byte_range[3]) :]
    return (
        later > 0
        and after.count(b"%%EOF") == later
        and not after[after.rindex(b"%%EOF") + len(b"%%EOF") :].strip()
        and status.modification_level is not None
        and status.modification_level <= ModificationLevel.LTA_UPDATES
    )


def _unsigned(problem: str) -> PadesCheck:
    return PadesCheck(False, False, False, False, False, "", None, (problem,))


async def pades_verify(pdf: bytes, trusted: list[x509.Certificate]) -> PadesCheck:
    """The last signature of `pdf`, checked against `trusted`; never raises on a malformed file.

    Certificates are checked at the signing time the file claims: these are the site's own pinned certificates,
    with no time-stamp authority, so an expired one must not invalidate what it signed while valid.
    """
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        signatures = PdfFileReader(io.BytesIO(pdf), strict=False).embedded_regular_signatures
    except Exception as error:  # noqa: BLE001 - anything a hostile file trips in the parser is a finding
        return _unsigned(f"The file is not a readable PDF ({error}).")
    if not signatures:
        return _unsigned("The file carries no signature.")
    embedded = signatures[-1]
    try:
        claimed = embedded.self_reported_timestamp
        context = ValidationContext(trust_roots=[_asn1(c) for c in trusted], moment=claimed, allow_fetching=False)
        status = await async_validate_pdf_signature(embedded, signer_validation_context=context)
    except Exception as error:  # noqa: BLE001 - a malformed signature dictionary or CMS
        return PadesCheck(
            True, False, False, False, False, "", None, (f"The signature could not be checked ({error}).",)
        )

    cert, at = status.signing_cert, status.signer_reported_dt
    pinned = status.trust_problem_indic is None and status.validation_path is not None
    # A trust anchor's validity period is not checked in path validation, and the signer's is the anchor here.
    in_time = at is not None and cert.not_valid_before <= at <= cert.not_valid_after
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE or (
        status.coverage == SignatureCoverageLevel.ENTIRE_REVISION and _only_validation_data_after(pdf, embedded, status)
    )
    problems = [
        sentence
        for failed, sentence in (
            (not status.intact, "The signed bytes were altered after signing."),
            (not status.valid, "The signature does not verify with the signer's key."),
            (not pinned, "The signer's certificate is not one of the trusted certificates."),
            (at is None, "The signature claims no signing time."),
            (at is not None and not in_time, "The signer's certificate was not valid at the signing time."),
            (not whole, "Data was appended to the file after it was signed."),
        )
        if failed
    ]
    return PadesCheck(
        True,
        status.intact,
        status.valid,
        pinned and in_time,
        whole,
        cert.subject.native.get("common_name", ""),
        at,
        tuple(problems),
    )

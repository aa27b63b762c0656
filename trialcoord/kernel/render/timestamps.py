"""RFC 3161 time-stamps for PAdES signatures: the authority's HTTP client, every failure of which names the
authority, and the validation data (a DSS) that lifts a time-stamped signature from B-T to B-LT.

pyHanko takes most of a second to import, so only the functions that need it import it.
"""

from __future__ import annotations

import io

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TSA_TIMEOUT_SECONDS = 20  # per request; a signature asks twice (a token to size the signature, then its own)


class TimestampError(RuntimeError):
    """The time-stamp authority could not be reached, refused, or answered what is not a time-stamp token, or
    (B-LT) the validation data could not be gathered: no signed file was made. The message names the authority
    and what went wrong."""

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        super().__init__(f"the time-stamp authority {url} (TRIALCOORD_TSA_URL) {cause}; nothing was signed")


def authority(url: str):
    """pyHanko's HTTP client (aiohttp), whose every failure, a refusal or a reply that does not parse included,
    is a TimestampError naming the authority."""
    from asn1crypto import cms, core, tsp
    from pyhanko.sign.timestamps import HTTPTimeStamper
    from pyhanko.sign.timestamps.common_utils import handle_tsp_response

    class Reply(core.Sequence):  # asn1crypto's TimeStampResp requires the token a refusal has not
        _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]

    class Authority(HTTPTimeStamper):
        async def async_timestamp(self, message_digest, md_algorithm):
            try:
                nonce, request = self.request_cms(message_digest, md_algorithm)
                reply = await self.async_request_tsa_response(request)
                try:
                    status = Reply.load(reply.dump())["status"].native
                except ValueError as error:
                    raise TimestampError(
                        url, f"gave no time-stamp: its reply is no RFC 3161 time-stamp response ({_cause(error)})"
                    ) from None
                if status["status"] not in ("granted", "granted_with_mods"):
                    said = "; ".join(status["status_string"] or []) or "no reason given"
                    failure = ", ".join(status["fail_info"] or [])
                    answer = f"gave no time-stamp: it answered {status['status']}: {said}" + (
                        f" ({failure})" if failure else ""
                    )
                    raise TimestampError(url, answer) from None  # pyHanko's cache miss is the context
                token = handle_tsp_response(reply, nonce)
                token.native  # noqa: B018 - asn1crypto parses lazily: a garbled token fails here, not in the PDF
            except TimestampError:
                raise
            except Exception as error:  # noqa: BLE001 - aiohttp, asn1crypto and pyHanko errors alike
                raise TimestampError(url, f"gave no time-stamp: {_cause(error)}") from None
            return token

    return Authority(url, timeout=TSA_TIMEOUT_SECONDS)


def _cause(error: BaseException | None) -> str:
    """The chain of reasons in words: pyHanko's, then aiohttp's (the HTTP status, the refused connection)."""
    reasons = []
    while error is not None:
        reasons.append(" ".join(str(error).split()) or type(error).__name__)
        error = error.__cause__
    return "; ".join(dict.fromkeys(reasons))


async def with_validation_data(signed: bytes, trusted: list[x509.Certificate], url: str, metadata) -> bytes:
    """`signed` (its last signature time-stamped) and a DSS in an incremental update: every certificate of the
    signer's and the time-stamp authority's chains to `trusted`, and the CRLs and OCSP responses those
    certificates name, fetched now (hard-fail: a revocation source named but unreachable is an error, never a
    DSS without it). The update is dated by `metadata`, not the clock."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
    from pyhanko_certvalidator import ValidationContext

    roots = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in trusted]
    context = ValidationContext(trust_roots=roots, allow_fetching=True, revocation_mode="hard-fail")
    reader = PdfFileReader(io.BytesIO(signed))
    embedded = reader.embedded_regular_signatures[-1]
    try:
        paths = await collect_validation_info(embedded, context)
    except Exception as error:  # noqa: BLE001 - certvalidator's path, revocation and fetching errors alike
        raise TimestampError(
            url,
            # the signer's path is checked too: the cause names the certificate
            f"gave a time-stamp, but a certificate to embed does not validate against the site's certificate and "
            f"TRIALCOORD_TSA_CA_FILE: {_cause(error)}",
        ) from None
    finally:
        await context.aclose()  # the HTTP session the fetchers opened, in this event loop
    writer = IncrementalPdfFileWriter.from_reader(reader)
    writer._meta = metadata
    # No VRI: it is optional in PAdES (EN 319 142-1 5.4.2), and pyHanko keys it by the SHA-1 of the hex text of
    # /Contents where ISO 32000-2 12.8.4.4 takes the signature's bytes, which other readers would not match.
    DocumentSecurityStore.supply_dss_in_writer(writer, None, validation_context=context, paths=paths)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()

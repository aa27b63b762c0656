"""An RFC 3161 time-stamp authority on loopback for the tests: pyHanko's DummyTimeStamper behind a small HTTP
server, with a CA and a TSA certificate made per run (RSA: DummyTimeStamper signs with RSA only). Nothing here is
a real credential, and nothing leaves the machine.

Paths: /tsa answers with a token; /refuse with a PKIStatus "rejection"; /error with HTTP 500; /garbage with
bytes that are no TimeStampResp; /html with a web page."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FROM, VALID_TO = datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Authority:
    root: x509.Certificate  # what a verifier trusts for the TSA
    certificate: x509.Certificate  # the TSA's signing certificate, issued by root
    key: rsa.RSAPrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_authority() -> Authority:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("Test TSA Root"))
        .issuer_name(_name("Test TSA Root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(VALID_TO)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("Test TSA"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(VALID_TO)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )  # digitalSignature, nonRepudiation
        # RFC 3161 2.3: a TSA's certificate carries the one extended key usage timeStamping, critical
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return Authority(root, certificate, key)


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


@contextmanager
def serving(authority: Authority, at: datetime) -> Iterator[str]:
    """The server's base address (http://127.0.0.1:PORT) while the block runs; its tokens are dated `at`."""
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    stamper = DummyTimeStamper(
        tsa_cert=_asn1(authority.certificate),
        tsa_key=asn1_keys.PrivateKeyInfo.load(
            authority.key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
        certs_to_embed=SimpleCertificateStore.from_certs([_asn1(authority.root)]),
        fixed_dt=at,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/error":
                return self._answer(500, "text/plain", b"internal error")
            if self.path == "/html":
                return self._answer(200, "text/html", b"<html>a login page</html>")
            if self.path == "/garbage":
                return self._answer(200, "application/timestamp-reply", b"\x30\x05\x02\x01\x00\xff\xff")
            if self.path == "/refuse":
                # asn1crypto's TimeStampResp insists on a token: a refusal is the SEQUENCE of its status alone
                status = tsp.PKIStatusInfo({"status": "rejection", "status_string": ["policy not accepted"]}).dump()
                refusal = b"\x30" + bytes([len(status)]) + status
                return self._answer(200, "application/timestamp-reply", refusal)
            reply = stamper.request_tsa_response(tsp.TimeStampReq.load(body))
            return self._answer(200, "application/timestamp-reply", reply.dump())

        def _answer(self, status: int, media_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """An address on loopback where nothing listens: the connection is refused at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"

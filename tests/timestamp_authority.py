"""An RFC 3161 time-stamp authority on loopback for the tests: pyHanko's DummyTimeStamper behind a small HTTP
server, with a CA and a TSA certificate made per run (RSA: DummyTimeStamper signs with RSA only). Nothing here is
a real credential, and nothing leaves the machine.

Paths: /tsa answers with a token; /refuse with a PKIStatus "rejection"; /error with HTTP 500; /garbage with
bytes that are no TimeStampResp; /html with a web page; /root.crl is the CA's CRL, which the TSA's certificate
names as its revocation source (as a public TSA's does), so B-LT has revocation data to fetch and embed."""

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
    crl: x509.CertificateRevocationList  # root's: revokes nothing


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    authority: Authority
    crl_down: bool = False  # /root.crl answers 503, as a revocation source that cannot be reached


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_authority(crl_url: str) -> Authority:
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
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
            ),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(VALID_FROM)
        .next_update(VALID_TO)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return Authority(root, certificate, key, crl)


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


@contextmanager
def serving(at: datetime) -> Iterator[Server]:
    """A new authority and its server while the block runs; its tokens are dated `at`."""
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    stamper: DummyTimeStamper | None = None
    crl = b""

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
            assert stamper is not None
            reply = stamper.request_tsa_response(tsp.TimeStampReq.load(body))
            return self._answer(200, "application/timestamp-reply", reply.dump())

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/root.crl" and not running.crl_down:
                return self._answer(200, "application/pkix-crl", crl)
            if self.path == "/root.crl":
                return self._answer(503, "text/plain", b"unavailable")
            return self._answer(404, "text/plain", b"not found")

        def _answer(self, status: int, media_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    authority = new_authority(f"{url}/root.crl")
    crl = authority.crl.public_bytes(serialization.Encoding.DER)
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
    running = Server(url, authority)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
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

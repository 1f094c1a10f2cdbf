"""A real RFC 3161 timestamp authority on a free local port: ``openssl ts -reply`` behind a tiny HTTP handler.

The test CA and the TSA certificate (critical extended key usage timeStamping, as RFC 3161 requires) are made
here; the token is made by OpenSSL's own TSA code, not by the library under test. The reply carries the TSA's
certificate only (no ``certs =`` chain): OpenSSL writes a chain in its own order, and rfc3161-client refuses a
certificate SET that is not in DER order, so a chained reply would fail about half the time, by certificate bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TSA_CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = 1.3.6.1.4.1.4146.2.3
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class LocalTsa:
    url: str
    root_pem: Path  # the test CA: what a reader must trust for the tokens to verify
    requests: list[bytes]


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
                 *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_identity(folder: Path) -> None:
    ca_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("soundtrail test TSA root", ca_key, "soundtrail test TSA root", ca_key, ca=True)
    tsa = _certificate("soundtrail test TSA", tsa_key, "soundtrail test TSA root", ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (folder / "tsa-key.pem").write_bytes(tsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "serial").write_text("01\n")
    (folder / "ts.cnf").write_text(TSA_CONFIG.format(folder=folder))


@contextlib.contextmanager
def local_tsa() -> Iterator[LocalTsa]:
    with tempfile.TemporaryDirectory(prefix="tsa-") as tmp:
        folder = Path(tmp)
        _write_identity(folder)
        requests: list[bytes] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
                query = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:  # one serial file: one reply at a time
                    requests.append(query)
                    (folder / "query.tsq").write_bytes(query)
                    subprocess.run(["openssl", "ts", "-reply", "-config", str(folder / "ts.cnf"), "-queryfile",
                                    str(folder / "query.tsq"), "-out", str(folder / "reply.tsr")],
                                   check=True, capture_output=True)
                    reply = (folder / "reply.tsr").read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield LocalTsa(f"http://127.0.0.1:{server.server_address[1]}/tsa", folder / "ca.pem", requests)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)

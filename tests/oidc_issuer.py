"""A local OpenID Connect issuer for the tests: its discovery document and JWKS over real HTTP on
a free port, and tokens signed with keys it generates (RSA for RS256, P-256 for ES256), shaped
like the access tokens Microsoft Entra ID issues for ``https://ml.azure.com/.default``.

It counts the fetches of its keys, can rotate them, and can be taken down (it then answers 503)
to show what aimi does without them. :func:`self_signed` makes a certificate for serving aimi
over https on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "https://ml.azure.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig"}


def new_key(alg: str = "RS256") -> SigningKey:
    private = rsa.generate_private_key(65537, 2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
    return SigningKey(uuid.uuid4().hex[:16], alg, private)


@functools.cache
def _first_key(alg: str) -> SigningKey:
    """Every issuer of a test run starts with the same keys (RSA keys are slow to make); rotation makes new ones."""
    return new_key(alg)


@dataclass
class Issuer:
    """The stand-in; ``url`` is its issuer URL (``iss`` of its tokens)."""

    url: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    down: bool = False
    stall: float = 0.0  # seconds each answer waits before it is sent
    jwks_fetches: int = 0
    discovery_fetches: int = 0

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/discovery/keys",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """A new key, published beside the old ones."""
        key = new_key(alg)
        self.keys.append(key)
        return key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": AUDIENCE,
            "iss": self.url,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": "5b3a0b0e-1111-4222-8333-944445555666",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "tid": TENANT,
            "roles": [],
            "ver": "1.0",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: SigningKey | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        """A token signed with ``key`` (default: the newest key) carrying :meth:`claims`."""
        key = key or self.keys[-1]
        return jwt.encode(
            self.claims(**claims), key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})}
        )


def _handler(issuer: Issuer, prefix: str) -> type[BaseHTTPRequestHandler]:
    """Serves the documents under ``prefix``, the path of the issuer URL (Entra's has the tenant)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.removeprefix(prefix)
            time.sleep(issuer.stall)
            if issuer.down:
                self._send(503, {"error": "down"})
            elif path == "/.well-known/openid-configuration":
                issuer.discovery_fetches += 1
                self._send(200, issuer.discovery())
            elif path == "/discovery/keys":
                issuer.jwks_fetches += 1
                self._send(200, issuer.jwks())
            else:
                self._send(404, {"error": "not found"})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_issuer(*algorithms: str) -> Iterator[Issuer]:
    """An issuer with one key per algorithm (default: one RS256 key), served until the block ends."""
    issuer = Issuer(keys=[_first_key(alg) for alg in algorithms or ("RS256",)])
    prefix = f"/{TENANT}/v2.0"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(issuer, prefix))
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aimi test")])
    now = datetime.datetime.now(datetime.UTC)

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path

"""A throwaway certificate authority, a broker certificate for the TLS listeners, and a
client certificate for the one that asks for it (mutual TLS).

Made with the `openssl` command rather than the `cryptography` package: openssl comes with
the system's CA certificates package (on every Debian-based machine that has a JDK), so
the project gains no Python dependency, and the four calls take ~0.1 s in all. Keys are
EC P-256 (fast to generate) in PKCS#8, the one private-key form Kafka's PEM keystore reads;
the broker certificate names 127.0.0.1 and localhost so clients verify the host name too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from siyu_stream.core.errors import BrokerError

_DAYS = "30"  # a launcher's data dir is short-lived; a month still covers a long-lived demo
_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class Certificates(NamedTuple):
    ca: Path  # PEM certificate clients trust, and the mutual-TLS listener trusts
    keystore: Path  # the broker's PEM keystore: private key, then its certificate chain
    client_cert: Path  # a client's certificate for mutual TLS, signed by the CA
    client_key: Path


def _openssl(cwd: Path, *args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        msg = "the `openssl` command is needed to make the SASL_SSL certificates; install openssl"
        raise BrokerError(msg)
    result = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"openssl {args[0]} failed ({result.returncode}): {result.stderr.strip()}"
        raise BrokerError(msg)


def certificates(directory: Path) -> Certificates:
    """Where `make_certificates` puts them."""
    names = ("ca.pem", "broker-keystore.pem", "client.pem", "client.key")
    return Certificates(*(directory / name for name in names))


def make_certificates(directory: Path) -> Certificates:
    """Create (once) a CA, and a broker and a client certificate signed by it, under
    `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    found = certificates(directory)
    if all(path.exists() for path in found):
        return found
    # Arguments split on spaces: none of them contains one (the subjects are kept apart).
    ca = f"req -x509 -keyout ca.key -out ca.pem -days {_DAYS}"
    _openssl(directory, *ca.split(), *_KEY, "-subj", "/CN=siyu-stream local CA")
    csr = "req -keyout broker.key -out broker.csr"
    _openssl(directory, *csr.split(), *_KEY, "-subj", "/CN=localhost")
    (directory / "broker.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    sign = "x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem"
    _openssl(directory, *sign.split(), "-days", _DAYS, "-extfile", "broker.ext")
    # Kafka's PEM keystore file: the key first, then the chain from the leaf up.
    parts = [directory / name for name in ("broker.key", "broker.pem", "ca.pem")]
    found.keystore.write_text("".join(part.read_text() for part in parts))
    csr = "req -keyout client.key -out client.csr"
    _openssl(directory, *csr.split(), *_KEY, "-subj", "/CN=siyu")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    sign = "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem"
    _openssl(directory, *sign.split(), "-days", _DAYS, "-extfile", "client.ext")
    for secret in (
        directory / "ca.key",
        directory / "broker.key",
        found.keystore,
        found.client_key,
    ):
        secret.chmod(0o600)
    return found

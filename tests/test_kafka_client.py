"""Kafka client options built in one place, and the preflight's errors, without a broker:
local TCP and TLS servers stand in for a broker that is down, silent, speaks another
protocol or shows a certificate we do not trust (a refused SASL login needs a real broker:
tests/integration/test_security.py). Every Kafka client in the code takes its options
from `client_options`."""

from __future__ import annotations

import ast
import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from siyu_stream.core.errors import KafkaAccessError, SettingsError
from siyu_stream.kafka import client
from siyu_stream.kafka.client import client_options, preflight, ssl_context
from siyu_stream.kafka.embedded import free_port
from siyu_stream.settings import KafkaConnection

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pa55-Word-never-shown"
FAST = 10.0
"""Seconds within which a refused connection must be reported: far below any retry loop."""


class Pki(NamedTuple):
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD


KEY_PASSWORD = "client-key-pa55"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make certificates")
    d = tmp_path_factory.mktemp("pki")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other"):
        run("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=test {ca}")  # fmt: skip
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext",
        )  # fmt: skip
    run("pkey", "-in", "client.key", "-out", "client.enc.key", "-aes256", "-passout",
        f"pass:{KEY_PASSWORD}")  # fmt: skip
    return Pki(
        d / "ca.pem",
        d / "other.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.enc.key",
    )


# ---------------------------------------------------------------- client options


def test_plaintext_options_are_the_address_alone() -> None:
    assert client_options(KafkaConnection("k1:9092,k2:9092")) == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_options_verify_the_broker_and_carry_the_login(pki: Pki) -> None:
    connection = KafkaConnection(
        "k:9093", "SASL_SSL", "SCRAM-SHA-512", "siyu", PASSWORD, ssl_cafile=pki.ca
    )
    options = client_options(connection)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "k:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "siyu",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] != []  # our CA, loaded


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_login() -> None:
    sasl = client_options(KafkaConnection("k:9092", "SASL_PLAINTEXT", "PLAIN", "u", PASSWORD))
    assert "ssl_context" not in sasl and sasl["sasl_mechanism"] == "PLAIN"
    tls = client_options(KafkaConnection("k:9093", "SSL"))
    assert isinstance(tls["ssl_context"], ssl.SSLContext)  # the system's CAs
    assert "sasl_mechanism" not in tls


def test_a_client_certificate_with_its_encrypted_key(pki: Pki) -> None:
    good = KafkaConnection(
        "k:9093",
        "SSL",
        ssl_cafile=pki.ca,
        ssl_certfile=pki.client_cert,
        ssl_keyfile=pki.client_key,
        ssl_key_password=KEY_PASSWORD,
    )
    assert isinstance(ssl_context(good), ssl.SSLContext)


@pytest.mark.parametrize("key_password", [None, "wrong"])
def test_a_key_that_does_not_open_is_a_settings_error_not_a_prompt(
    pki: Pki, key_password: str | None
) -> None:
    # without a password OpenSSL would ask for one on the terminal: a worker that hangs
    connection = KafkaConnection(
        "k:9093",
        "SSL",
        ssl_certfile=pki.client_cert,
        ssl_keyfile=pki.client_key,
        ssl_key_password=key_password,
    )
    with pytest.raises(SettingsError, match="SIYU_SSL_KEY_PASSWORD") as info:
        ssl_context(connection)
    assert KEY_PASSWORD not in str(info.value)


def test_a_ca_file_that_is_no_certificate_is_a_settings_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=r"SIYU_SSL_CAFILE=.*ca\.pem.*not a PEM CA"):
        ssl_context(KafkaConnection("k:9093", "SSL", ssl_cafile=bogus))


# ---------------------------------------------------------------- the preflight

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


@asynccontextmanager
async def server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A local TCP (or TLS) server standing in for a broker; yields its address."""
    listening = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        listening.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # reads the request, never answers


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def server_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


async def refused(connection: KafkaConnection, timeout: float = FAST) -> str:
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as info:
        await preflight(connection, timeout)
    assert time.monotonic() - started < FAST
    return str(info.value)


async def test_nobody_listening() -> None:
    address = f"127.0.0.1:{free_port()}"
    message = await refused(KafkaConnection(address))
    assert message.startswith(f"cannot reach Kafka at {address}: ")


async def test_a_broker_that_does_not_answer_times_out() -> None:
    async with server(silent) as address:
        message = await refused(KafkaConnection(address), timeout=0.5)
    assert message.startswith(f"no answer from {address} within 0.5 s")
    assert "SIYU_SECURITY_PROTOCOL=PLAINTEXT" in message


async def test_a_broker_that_hangs_up() -> None:
    async with server(hang_up) as address:
        message = await refused(KafkaConnection(address, "SASL_PLAINTEXT", "PLAIN", "u", "p"))
    assert f"{address} closed the connection while logging in" in message


async def test_an_untrusted_certificate(pki: Pki) -> None:
    async with server(silent, server_tls(pki)) as address:
        untrusted = KafkaConnection(address, "SASL_SSL", "SCRAM-SHA-512", "siyu", PASSWORD,
                                    ssl_cafile=pki.other_ca)  # fmt: skip
        message = await refused(untrusted)
    assert message.startswith(f"the TLS certificate of {address} is not trusted (")
    assert f"check SIYU_SSL_CAFILE ({pki.other_ca})" in message
    assert PASSWORD not in message


async def test_a_trusted_certificate_gets_past_tls(pki: Pki) -> None:
    async with server(silent, server_tls(pki)) as address:
        trusted = KafkaConnection(address, "SSL", ssl_cafile=pki.ca)
        message = await refused(trusted, timeout=0.5)
    assert message.startswith(f"no answer from {address}")  # TLS was fine: Kafka is not there


async def test_a_tls_client_on_a_plaintext_listener(pki: Pki) -> None:
    async with server(silent) as address:
        message = await refused(KafkaConnection(address, "SSL", ssl_cafile=pki.ca), timeout=0.5)
    assert "SIYU_SECURITY_PROTOCOL=SSL" in message


async def test_every_bootstrap_broker_is_tried_and_each_failure_named() -> None:
    first, second = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    message = await refused(KafkaConnection(f"{first},{second}"))
    assert f"cannot reach Kafka at {first}" in message
    assert f"cannot reach Kafka at {second}" in message


async def test_a_broker_the_cluster_advertises_is_tried_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a cluster advertising an address clients cannot use: they would retry it for ever
    bootstrap, advertised = f"127.0.0.1:{free_port()}", ("127.0.0.1", free_port())

    async def brokers(*_: object) -> list[tuple[str, int]]:
        return [advertised]

    monkeypatch.setattr(client, "_brokers", brokers)
    message = await refused(KafkaConnection(bootstrap))
    assert message.startswith(
        f"{bootstrap} answered, but a broker it advertises refused: "
        f"cannot reach Kafka at {advertised[0]}:{advertised[1]}"
    )


# ---------------------------------------------------------------- every client uses them

CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}


def _client_calls(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in CLIENTS:
                calls.append(node)
    return calls


def test_every_kafka_client_takes_its_connection_from_client_options() -> None:
    # a client given `bootstrap_servers=` alone would connect without TLS or a login
    paths = [*(ROOT / "siyu_stream").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    paths += (ROOT / "tests" / "integration").glob("*.py")
    seen = 0
    for path in sorted(paths):
        for call in _client_calls(path):
            seen += 1
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            spread = [k.value for k in call.keywords if k.arg is None]
            assert not any(k.arg == "bootstrap_servers" for k in call.keywords), where
            assert any(
                isinstance(v, ast.Call) and getattr(v.func, "id", "") == "client_options"
                for v in spread
            ), where
    assert seen >= 20  # the walk found the clients (worker, producers, admin, bench, tests)

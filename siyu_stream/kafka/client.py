"""How every Kafka client of the project connects: aiokafka's arguments built in one place
from a `KafkaConnection` (brokers, TLS, SASL), and a preflight that turns a refused login
or an untrusted certificate into one clear error at once.

Why the preflight: an aiokafka client that cannot log in only logs the reason and raises
"Unable to bootstrap from [...]", or, once bootstrapped, retries in the background; the
reason (wrong password, certificate not trusted, a TLS client on a plaintext listener)
would be in a log line at best. `preflight` logs in to a bootstrap broker as every client
will, then to each broker the cluster advertises (an advertised address the certificate
does not name, or that cannot be reached, is the background retry case), each with a
short timeout, and raises `KafkaAccessError` naming the broker, the user, the mechanism
and the setting to check. `admin` runs it before anything else talks to Kafka, so each
command and the worker fail within seconds.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from siyu_stream.core.errors import KafkaAccessError, SettingsError
from siyu_stream.settings import KafkaConnection

PREFLIGHT_SECONDS = 10.0
"""How long the preflight waits for one broker to answer and accept the login."""


def client_options(connection: KafkaConnection) -> dict[str, Any]:
    """The keyword arguments every AIOKafkaConsumer, AIOKafkaProducer and
    AIOKafkaAdminClient of the project is given for where and how to connect."""
    options: dict[str, Any] = {
        "bootstrap_servers": connection.bootstrap,
        "security_protocol": connection.security_protocol,
    }
    if connection.tls:
        options["ssl_context"] = ssl_context(connection)
    if connection.sasl:
        # aiokafka takes the SCRAM credentials in its `sasl_plain_*` arguments too
        options["sasl_mechanism"] = connection.sasl_mechanism
        options["sasl_plain_username"] = connection.sasl_username
        options["sasl_plain_password"] = connection.sasl_password
    return options


def ssl_context(connection: KafkaConnection) -> ssl.SSLContext:
    """A client TLS context that verifies the broker's certificate and host name (TLS 1.2
    or later), trusting SIYU_SSL_CAFILE or else the system's CAs, with the client
    certificate for mutual TLS when one is set. Built anew for each client, so that a
    renewed certificate file is read by the next client started."""
    cafile = connection.ssl_cafile
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        msg = f"SIYU_SSL_CAFILE={str(cafile)!r}: not a PEM CA certificate ({exc})"
        raise SettingsError(msg) from exc
    if connection.ssl_certfile is not None:
        try:
            # a password, even empty, keeps OpenSSL from prompting on the terminal for the
            # password of an encrypted key
            context.load_cert_chain(
                connection.ssl_certfile,
                connection.ssl_keyfile,
                password=connection.ssl_key_password or "",
            )
        except (ssl.SSLError, OSError) as exc:
            msg = (
                f"SIYU_SSL_CERTFILE={str(connection.ssl_certfile)!r}, SIYU_SSL_KEYFILE="
                f"{str(connection.ssl_keyfile)!r}: cannot load the client certificate and key "
                f"(not PEM, a key of another certificate, or a wrong SIYU_SSL_KEY_PASSWORD): "
                f"{exc}"
            )
            raise SettingsError(msg) from exc
    return context


async def preflight(connection: KafkaConnection, timeout: float = PREFLIGHT_SECONDS) -> None:
    """Log in to a bootstrap broker as every client will, ask it for the cluster's
    brokers, then log in to each of those as the clients will next (by the address the
    cluster advertises, which the certificate must name too). Raises `KafkaAccessError`
    saying why as soon as a broker refuses, within `timeout` per step; an unusable
    certificate file raises `SettingsError` first."""
    failures = []
    for host, port, _ in collect_hosts(connection.bootstrap, randomize=False):
        try:
            advertised = await _brokers(connection, host, port, timeout)
        except (KafkaError, OSError, EOFError, TimeoutError) as exc:
            # another bootstrap broker may answer: a client tries them all too
            failures.append(_explain(connection, f"{host}:{port}", exc, timeout))
            continue
        advertised = [broker for broker in advertised if broker != (host, port)]  # done
        checks = [_log_in(connection, *broker, timeout) for broker in advertised]
        for (h, p), failure in zip(advertised, await asyncio.gather(*checks), strict=True):
            if failure is not None:
                reason = _explain(connection, f"{h}:{p}", failure, timeout)
                msg = f"{host}:{port} answered, but a broker it advertises refused: {reason}"
                raise KafkaAccessError(msg)
        return
    msg = "; ".join(failures) or f"no broker in SIYU_BROKER={connection.bootstrap!r}"
    raise KafkaAccessError(msg)


async def _open(connection: KafkaConnection, host: str, port: int, timeout: float) -> Any:
    options = client_options(connection)
    del options["bootstrap_servers"]
    return await asyncio.wait_for(
        create_conn(host, port, request_timeout_ms=int(timeout * 1000), **options), timeout
    )


async def _brokers(
    connection: KafkaConnection, host: str, port: int, timeout: float
) -> list[tuple[str, int]]:
    """(host, port) of every broker in the cluster, as `host:port` advertises them."""
    opened = await _open(connection, host, port, timeout)
    try:
        # no topic named: a broker that creates topics on a metadata request creates none
        response = await asyncio.wait_for(opened.send(MetadataRequest([])), timeout)
    finally:
        opened.close()
    return sorted({(str(b[1]), int(b[2])) for b in response.brokers})  # (id, host, port, ...)


async def _log_in(
    connection: KafkaConnection, host: str, port: int, timeout: float
) -> BaseException | None:
    """None if the broker at host:port takes this client's login, else the failure."""
    try:
        opened = await _open(connection, host, port, timeout)
    except (KafkaError, OSError, EOFError, TimeoutError) as exc:
        return exc
    opened.close()
    return None


def _explain(connection: KafkaConnection, address: str, exc: BaseException, timeout: float) -> str:
    """Why `address` refused `connection`, and which settings to check; never a secret
    (the broker's own message names the mechanism, not the password)."""
    protocol = f"SIYU_SECURITY_PROTOCOL={connection.security_protocol}"
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"authentication failed for user {connection.sasl_username} on {address} "
            f"(SASL {connection.sasl_mechanism}): {exc}; check SIYU_SASL_USERNAME, "
            "SIYU_SASL_PASSWORD and SIYU_SASL_MECHANISM"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        # the handshake's refusal names only the connection; the other names what it takes
        said = "" if "AIOKafkaConnection" in str(exc) else f": {exc}"
        return f"{address} does not take SIYU_SASL_MECHANISM={connection.sasl_mechanism}{said}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = str(connection.ssl_cafile) if connection.ssl_cafile else "unset: system CAs"
        return (
            f"the TLS certificate of {address} is not trusted ({exc.verify_message}); "
            f"check SIYU_SSL_CAFILE ({trusted}) and the broker address"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake with {address} failed ({exc.reason or exc}): is it a TLS listener "
            f"({protocol}), and does it want a client certificate (SIYU_SSL_CERTFILE)?"
        )
    if isinstance(exc, TimeoutError):
        return f"no answer from {address} within {timeout:g} s: does it take {protocol}?"
    if isinstance(exc, KafkaConnectionError | EOFError | ConnectionResetError):
        hint = f"does it take {protocol}"
        if connection.tls and connection.ssl_certfile is None:
            # under TLS 1.3 a broker that wants a client certificate says so by closing
            hint += ", or want a client certificate (SIYU_SSL_CERTFILE, SIYU_SSL_KEYFILE)"
        return f"{address} closed the connection while logging in ({exc}): {hint}?"
    if isinstance(exc, OSError):
        return f"cannot reach Kafka at {address}: {exc}"
    return f"{address} refused the connection ({protocol}): {exc}"

"""Settings from the environment: the API token a worker accepts at start, the Kafka
security settings that fit together, and secrets no repr or command output shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siyu_stream.cli import main
from siyu_stream.core.errors import SettingsError
from siyu_stream.settings import KafkaConnection, Settings


@pytest.mark.parametrize("token", [None, "", " ", "   ", "\t\n"])
def test_a_blank_token_is_refused_naming_the_variable(token: str | None) -> None:
    env = {} if token is None else {"SIYU_API_TOKEN": token}
    with pytest.raises(SettingsError, match="SIYU_API_TOKEN"):
        Settings.from_env(env)


@pytest.mark.parametrize("token", ["two words", "tok\u00e9n", " padded", "tab\there"])
def test_a_token_no_header_can_carry_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(SettingsError, match="SIYU_API_TOKEN") as info:
        Settings.from_env({"SIYU_API_TOKEN": token})
    assert token not in str(info.value)  # the token is a secret: never in a log line


@pytest.mark.parametrize("token", [None, "", "   "])
def test_auth_off_needs_no_token(token: str | None) -> None:
    env = {"SIYU_API_AUTH": "false"}
    if token is not None:
        env["SIYU_API_TOKEN"] = token
    assert Settings.from_env(env).api_auth is False


def test_a_usable_token_is_kept_as_given() -> None:
    token = "Abc-123_~.+/="
    assert Settings.from_env({"SIYU_API_TOKEN": token}).api_token == token


def test_defaults_fill_only_what_the_environment_leaves_unset() -> None:
    generated = {"api_token": "generated"}
    assert Settings.from_env({}, generated).api_token == "generated"
    assert Settings.from_env({"SIYU_API_TOKEN": ""}, generated).api_token == "generated"
    assert Settings.from_env({"SIYU_API_TOKEN": "given"}, generated).api_token == "given"
    with pytest.raises(SettingsError, match="SIYU_API_TOKEN"):  # set but blank: refused
        Settings.from_env({"SIYU_API_TOKEN": "  "}, generated)
    assert Settings.from_env({}, generated, api_token="override").api_token == "override"


# ---------------------------------------------------------------- Kafka security

PASSWORD = "pa55-Word-never-shown"
SASL = {
    "SIYU_API_AUTH": "false",
    "SIYU_SECURITY_PROTOCOL": "SASL_SSL",
    "SIYU_SASL_MECHANISM": "SCRAM-SHA-512",
    "SIYU_SASL_USERNAME": "siyu",
    "SIYU_SASL_PASSWORD": PASSWORD,
}


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    settings = Settings.from_env({"SIYU_API_AUTH": "false"})
    assert settings.kafka == KafkaConnection("127.0.0.1:9092")
    assert str(settings.kafka) == "127.0.0.1:9092 (PLAINTEXT)"


def test_sasl_ssl_settings_reach_the_connection(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA")  # its content is read when a client connects
    settings = Settings.from_env(
        {**SASL, "SIYU_BROKER": "b1:9093,b2:9093", "SIYU_SSL_CAFILE": str(ca)}
    )
    connection = settings.kafka
    assert connection.bootstrap == "b1:9093,b2:9093"
    assert (connection.security_protocol, connection.sasl_mechanism) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert (connection.sasl_username, connection.sasl_password) == ("siyu", PASSWORD)
    assert connection.ssl_cafile == ca
    assert connection.sasl and connection.tls
    assert str(connection) == "b1:9093,b2:9093 (SASL_SSL SCRAM-SHA-512 as siyu)"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIYU_SECURITY_PROTOCOL": "TLS"}, "SIYU_SECURITY_PROTOCOL"),
        ({**SASL, "SIYU_SASL_MECHANISM": "GSSAPI"}, "SIYU_SASL_MECHANISM"),
        ({**SASL, "SIYU_SASL_USERNAME": ""}, "SIYU_SASL_USERNAME"),
        ({**SASL, "SIYU_SASL_USERNAME": "  "}, "SIYU_SASL_USERNAME"),
        ({**SASL, "SIYU_SASL_PASSWORD": ""}, "SIYU_SASL_PASSWORD"),
        (
            {**SASL, "SIYU_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SIYU_SASL_PASSWORD": ""},
            "SIYU_SASL_PASSWORD",
        ),
        ({**SASL, "SIYU_SECURITY_PROTOCOL": "PLAINTEXT"}, "SIYU_SASL_PASSWORD"),
        ({**SASL, "SIYU_SECURITY_PROTOCOL": "SSL"}, "SIYU_SASL_USERNAME"),
        (
            {**SASL, "SIYU_SSL_CAFILE": "/nonexistent/ca.pem"},
            "SIYU_SSL_CAFILE='/nonexistent/ca.pem'",
        ),
        ({**SASL, "SIYU_SSL_CERTFILE": "/nonexistent/client.pem"}, "SIYU_SSL_CERTFILE"),
    ],
)
def test_security_settings_that_do_not_fit_are_refused_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(named)) as info:
        Settings.from_env({"SIYU_API_AUTH": "false", **env})
    assert PASSWORD not in str(info.value)


def test_tls_files_need_a_tls_protocol_and_a_certificate(tmp_path: Path) -> None:
    pem = tmp_path / "some.pem"
    pem.write_text("pem")
    sasl_plain = {**SASL, "SIYU_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    with pytest.raises(
        SettingsError, match="SIYU_SSL_CAFILE: SIYU_SECURITY_PROTOCOL=SASL_PLAINTEXT uses no TLS"
    ):
        Settings.from_env({**sasl_plain, "SIYU_SSL_CAFILE": str(pem)})
    with pytest.raises(SettingsError, match="SIYU_SSL_KEYFILE: set without SIYU_SSL_CERTFILE"):
        Settings.from_env({**SASL, "SIYU_SSL_KEYFILE": str(pem)})
    with pytest.raises(
        SettingsError, match="SIYU_SSL_KEY_PASSWORD: set without a client certificate"
    ):
        Settings.from_env({**SASL, "SIYU_SSL_KEY_PASSWORD": "x"})
    with pytest.raises(SettingsError, match=r"SIYU_SSL_CAFILE=.*no such readable file"):
        Settings.from_env({**SASL, "SIYU_SSL_CAFILE": str(tmp_path)})  # a directory
    mtls = {
        "SIYU_SSL_CERTFILE": str(pem),
        "SIYU_SSL_KEYFILE": str(pem),
        "SIYU_SSL_KEY_PASSWORD": "k",
    }
    settings = Settings.from_env(
        {
            **SASL,
            "SIYU_SECURITY_PROTOCOL": "SSL",
            "SIYU_SASL_USERNAME": "",
            "SIYU_SASL_PASSWORD": "",
            **mtls,
        }
    )
    assert str(settings.kafka) == "127.0.0.1:9092 (SSL with a client certificate)"
    assert settings.kafka.ssl_keyfile == pem


def test_repr_and_str_mask_every_secret(tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    pem.write_text("pem")
    key_password, token = "key-pa55-never-shown", "api-token-never-shown"
    env = {
        **SASL,
        "SIYU_API_AUTH": "true",
        "SIYU_API_TOKEN": token,
        "SIYU_SSL_CERTFILE": str(pem),
        "SIYU_SSL_KEY_PASSWORD": key_password,
    }
    settings = Settings.from_env(env)
    shown = [
        repr(settings),
        str(settings),
        repr(settings.kafka),
        str(settings.kafka),
        f"{settings!r}",
    ]
    for text in shown:
        for secret in (PASSWORD, key_password, token):
            assert secret not in text
    assert "sasl_password='***'" not in repr(settings)  # masked, not quoted as a value
    assert "sasl_password=***" in repr(settings) and "ssl_key_password=***" in repr(settings)
    assert "api_token=***" in repr(settings) and "sasl_username='siyu'" in repr(settings)
    assert "sasl_password=***" in repr(settings.kafka)
    assert "sasl_password=None" in repr(Settings(api_auth=False))  # unset: shown as unset


def test_the_settings_command_prints_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "`SIYU_SASL_PASSWORD`" in out and "`SIYU_SECURITY_PROTOCOL` | `PLAINTEXT`" in out
    assert PASSWORD not in out

"""Settings from the environment: the API token a worker accepts at start."""

from __future__ import annotations

import pytest

from siyu_stream.core.errors import SettingsError
from siyu_stream.settings import Settings


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

"""Configuration: precedence, every-problem-at-once errors, secrets kept out of sight."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tradovate_async._config import ENVIRONMENTS, TradovateConfig
from tradovate_async._errors import ConfigError
from tradovate_async._secret import Secret

FULL = {
    "TRADOVATE_USERNAME": "env-user",
    "TRADOVATE_PASSWORD": "env-password-123",
    "TRADOVATE_APP_ID": "env-app",
    "TRADOVATE_DEVICE_ID": "env-device",
    "TRADOVATE_SEC": "env-secret-456",
}


def write_env(tmp_path: Path, values: dict[str, str]) -> Path:
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def test_all_missing_names_every_variable_and_no_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        TradovateConfig.from_env(tmp_path / "absent.env" if False else None, environ={})
    message = str(info.value)
    for var in (
        "TRADOVATE_USERNAME",
        "TRADOVATE_PASSWORD",
        "TRADOVATE_APP_ID",
        "TRADOVATE_SEC",
        "TRADOVATE_DEVICE_ID",
    ):
        assert var in message
        assert var in info.value.problems
    assert len(info.value.problems) == 5


def test_precedence_argument_over_environment_over_file(tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path,
        {
            **FULL,
            "TRADOVATE_USERNAME": "file-user",
            "TRADOVATE_APP_ID": "file-app",
            "TRADOVATE_CID": "3",
        },
    )
    environ = {"TRADOVATE_USERNAME": "env-user", "TRADOVATE_CID": "5"}
    config = TradovateConfig.from_env(env_file, environ=environ, app_id="arg-app")
    assert config.username == "env-user"
    assert config.app_id == "arg-app"
    assert config.cid == 5
    assert config.password.reveal() == FULL["TRADOVATE_PASSWORD"]


def test_env_file_is_not_written_into_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("TRADOVATE_USERNAME", raising=False)
    env_file = write_env(tmp_path, FULL)
    TradovateConfig.from_env(env_file, environ={})
    assert "TRADOVATE_USERNAME" not in os.environ


def test_explicit_missing_env_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TradovateConfig.from_env(tmp_path / "nope.env", environ=FULL)


def test_default_env_file_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert TradovateConfig.from_env(environ=FULL).username == "env-user"


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"TRADOVATE_CID": "abc"}, "TRADOVATE_CID"),
        ({"TRADOVATE_CID": "-1"}, "TRADOVATE_CID"),
        ({"TRADOVATE_ENV": "prod"}, "TRADOVATE_ENV"),
        ({"TRADOVATE_API_URL": "http://example.com/v1"}, "TRADOVATE_API_URL"),
        ({"TRADOVATE_WS_URL": "ws://example.com/v1/websocket"}, "TRADOVATE_WS_URL"),
        ({"TRADOVATE_MD_URL": "ftp://md/v1"}, "TRADOVATE_MD_URL"),
        ({"TRADOVATE_SEC": ""}, "TRADOVATE_SEC"),
        ({"TRADOVATE_PASSWORD": "   "}, "TRADOVATE_PASSWORD"),
        ({"TRADOVATE_USERNAME": "x" * 65}, "TRADOVATE_USERNAME"),
    ],
)
def test_invalid_values(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        TradovateConfig.from_env(None, environ={**FULL, **extra})
    assert variable in info.value.problems
    for value in extra.values():
        if value.strip():
            assert value not in str(info.value)


def test_several_problems_reported_together() -> None:
    environ = {**FULL, "TRADOVATE_CID": "x", "TRADOVATE_ENV": "nope"}
    del environ["TRADOVATE_SEC"]
    with pytest.raises(ConfigError) as info:
        TradovateConfig.from_env(None, environ=environ)
    assert {"TRADOVATE_CID", "TRADOVATE_ENV", "TRADOVATE_SEC"} <= set(info.value.problems)


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_environment_maps_to_documented_hosts(name: str) -> None:
    config = TradovateConfig.from_env(None, environ={**FULL, "TRADOVATE_ENV": name})
    assert config.api_url == ENVIRONMENTS[name].api_url
    assert config.ws_url == ENVIRONMENTS[name].ws_url
    assert config.md_url == ENVIRONMENTS[name].md_url
    assert config.api_url.startswith("https://") and config.api_url.endswith("/v1")


def test_explicit_urls_win_and_loopback_may_be_plain() -> None:
    config = TradovateConfig.from_env(
        None,
        environ={**FULL, "TRADOVATE_ENV": "live", "TRADOVATE_API_URL": "http://127.0.0.1:9/v1/"},
    )
    assert config.api_url == "http://127.0.0.1:9/v1"
    assert config.ws_url == "ws://127.0.0.1:9/v1/websocket"
    assert config.md_url == "ws://127.0.0.1:9/v1/websocket"


def test_defaults_follow_the_source_document() -> None:
    config = TradovateConfig.from_env(None, environ=FULL)
    assert config.api_url == "https://live-api.staging.ninjatrader.dev/v1"
    assert config.app_version == "1.0"
    assert config.cid == 0


def test_secrets_are_masked_everywhere() -> None:
    config = TradovateConfig.from_env(None, environ=FULL)
    assert isinstance(config.password, Secret)
    for text in (repr(config), str(config), f"{config.password}", f"{config.sec!r}"):
        assert FULL["TRADOVATE_PASSWORD"] not in text
        assert FULL["TRADOVATE_SEC"] not in text
    with pytest.raises(TypeError):
        pickle.dumps(config.password)
    assert config.password.prefix() == FULL["TRADOVATE_PASSWORD"][:8]
    assert Secret("abc") == Secret("abc") and Secret("abc") != Secret("abd")

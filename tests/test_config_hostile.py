"""Bad settings: every one a ConfigError naming the variable, never a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tradovate_async._config import TradovateConfig, merged_settings
from tradovate_async._errors import ConfigError

FULL = {
    "TRADOVATE_USERNAME": "env-user",
    "TRADOVATE_PASSWORD": "env-password-123",
    "TRADOVATE_APP_ID": "env-app",
    "TRADOVATE_DEVICE_ID": "env-device",
    "TRADOVATE_SEC": "env-secret-456",
}


def test_env_file_not_utf8_names_the_variable_and_hides_the_value(tmp_path: Path) -> None:
    path = tmp_path / "latin1.env"
    path.write_bytes(
        b"TRADOVATE_USERNAME=env-user\nTRADOVATE_PASSWORD=p\xe4ssw\xf6rd-secret\n"
        b"TRADOVATE_APP_ID=env-app\n"
    )
    with pytest.raises(ConfigError) as info:
        TradovateConfig.from_env(path, environ={})
    assert set(info.value.problems) == {"TRADOVATE_PASSWORD"}
    why = info.value.problems["TRADOVATE_PASSWORD"]
    assert "UTF-8" in why and "line 2" in why and str(path) in why
    assert "ssw" not in str(info.value) and "secret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_env_file_not_utf8_outside_an_assignment_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bom.env"
    path.write_bytes(b"\xff\xfe# comment\n")
    with pytest.raises(ConfigError) as info:
        TradovateConfig.from_env(path, environ={})
    assert set(info.value.problems) == {"env_file"}
    with pytest.raises(ConfigError) as info:
        merged_settings(path)
    assert set(info.value.problems) == {"env_file"}


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("TRADOVATE_API_URL", "https://example.com:99999/v1"),
        ("TRADOVATE_API_URL", "https://example.com:0/v1"),
        ("TRADOVATE_WS_URL", "wss://example.com:70000/v1/websocket"),
        ("TRADOVATE_MD_URL", "wss://example.com:-1/v1/websocket"),
    ],
)
def test_url_with_out_of_range_port_is_a_config_error(variable: str, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        TradovateConfig.from_env(None, environ={**FULL, variable: url})
    assert "port" in info.value.problems[variable]


def test_password_with_spaces_is_kept_as_written_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "".join(f"{k}={v}\n" for k, v in FULL.items() if k != "TRADOVATE_PASSWORD")
        + 'TRADOVATE_PASSWORD=" spaced pass "\n'
    )
    with caplog.at_level(logging.WARNING, logger="tradovate_async"):
        config = TradovateConfig.from_env(path, environ={"TRADOVATE_SEC": "sec-with-tab\t"})
    assert config.password.reveal() == " spaced pass "
    assert config.sec.reveal() == "sec-with-tab\t"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("TRADOVATE_PASSWORD" in m and "leading or trailing" in m for m in warned)
    assert any("TRADOVATE_SEC" in m for m in warned)
    assert not any("spaced" in m or "sec-with" in m for m in warned)
    # Other settings are still trimmed.
    trimmed = TradovateConfig.from_env(None, environ={**FULL, "TRADOVATE_USERNAME": " u  "})
    assert trimmed.username == "u"


def test_token_keys_cannot_collide() -> None:
    base = {k: v for k, v in FULL.items() if k not in ("TRADOVATE_USERNAME", "TRADOVATE_APP_ID")}
    pairs = [("alice|ops", "bot"), ("alice", "ops|bot"), ("alice%7Cops", "bot"), ("a%", "b")]
    keys = {
        TradovateConfig.from_env(
            None, environ={**base, "TRADOVATE_USERNAME": user, "TRADOVATE_APP_ID": app}
        ).token_key
        for user, app in pairs
    }
    assert len(keys) == len(pairs)
    # Names without '|' or '%' keep the key earlier versions wrote (existing files stay valid).
    plain = TradovateConfig.from_env(None, environ=FULL)
    assert plain.token_key == f"{plain.api_url}|env-user|env-app"

"""Settings: sources, precedence, defaults, and one clear line for every bad value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dinomail.settings import Settings, SettingsError, env_name, load_settings
from tests.support.cli import dinomail


def test_defaults_are_the_pinned_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.DATABASE_URL == "sqlite:///dinomail.sqlite3"
    assert settings.ALLOWED_HOSTS == ("localhost", "127.0.0.1", "[::1]")
    assert settings.HTTP_LISTEN == "127.0.0.1:8000"
    assert settings.SOCKETMAP_LISTEN == "127.0.0.1:10027"
    assert settings.POLICY_LISTEN == "127.0.0.1:10028"
    assert settings.LOOKUPD_HTTP_LISTEN == "127.0.0.1:10029"
    assert settings.dict_listen.startswith("unix:/")
    assert settings.dict_listen.endswith("/dovecot-dict.sock")
    assert settings.DINOMAIL_NAME == "DinoMail"
    assert settings.DINOMAIL_PASSWORD_SCHEME == "SHA512-CRYPT"
    assert settings.SECRET_KEY == ""
    assert settings.api_page_limit == 1000  # the original's 0, "no limit", capped at 1000


def test_env_names_do_not_double_the_prefix() -> None:
    assert env_name("NAME") == "DINOMAIL_NAME"
    assert env_name("DINOMAIL_NAME") == "DINOMAIL_NAME"
    assert env_name("DATABASE_URL") == "DINOMAIL_DATABASE_URL"


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "dinomail.toml"
    config.write_text(
        'DINOMAIL_NAME = "From file"\nDEBUG = true\nALLOWED_HOSTS = ["mail.example.org"]\n'
        "API_LIMIT_PER_PAGE = 50\n"
    )
    settings = load_settings(
        str(config),
        environ={"DINOMAIL_NAME": "From env", "DINOMAIL_ALLOWED_HOSTS": "a.org, b.org,*"},
    )
    assert settings.DINOMAIL_NAME == "From env"
    assert settings.DEBUG is True
    assert settings.ALLOWED_HOSTS == ("a.org", "b.org", "*")
    assert settings.API_LIMIT_PER_PAGE == 50


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('LANGUAGE_CODE = "fr"\n')
    assert load_settings(environ={"DINOMAIL_CONFIG": str(config)}).LANGUAGE_CODE == "fr"


def test_original_dotted_scheme_names() -> None:
    settings = load_settings(
        environ={"DINOMAIL_PASSWORD_SCHEME": "core.utils.make_password_ssha512"}
    )
    assert settings.DINOMAIL_PASSWORD_SCHEME == "SSHA512"


BAD_VALUES = [
    ("DEBUG", "perhaps"),
    ("API_LIMIT_PER_PAGE", "ten"),
    ("API_LIMIT_PER_PAGE", "-1"),
    ("DATABASE_URL", "mysql://x/y"),
    ("DATABASE_URL", "not a url"),
    ("DATABASE_URL", "postgresql://host"),
    ("LANGUAGE_CODE", "de"),
    ("TIME_ZONE", "Mars/Olympus"),
    ("HTTP_LISTEN", "8000"),
    ("SOCKETMAP_LISTEN", "127.0.0.1:99999"),
    ("POLICY_LISTEN", "::1:10028"),
    ("LOOKUPD_HTTP_LISTEN", "unix:"),
    ("DICT_LISTEN", "localhost:port"),
    ("ALLOWED_HOSTS", ","),
    ("DINOMAIL_PASSWORD_SCHEME", "ROT13"),
    ("DINOMAIL_PASSWORD_SCHEME", "PLAIN"),  # weak, not allowed without the explicit setting
    ("RECIPIENT_DELIMITER", "@"),
    ("MAIL_HOME", "vmail/%d/%n"),
    ("SQLITE_POLL_INTERVAL", "0"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={env_name(key): value})
    assert caught.value.key == key


def test_weak_scheme_needs_explicit_permission() -> None:
    settings = load_settings(
        environ={"DINOMAIL_PASSWORD_SCHEME": "PLAIN", "DINOMAIL_ALLOW_WEAK_PASSWORD_SCHEMES": "1"}
    )
    assert settings.DINOMAIL_PASSWORD_SCHEME == "PLAIN"


def test_bad_toml_and_unknown_keys(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("DEBUG = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(str(broken), environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("DEBGU = true\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(str(unknown), environ={})
    assert caught.value.key == "DEBGU"
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(str(tmp_path / "missing.toml"), environ={})
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text("API_LIMIT_PER_PAGE = true\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(str(wrong_type), environ={})
    assert caught.value.key == "API_LIMIT_PER_PAGE"


@pytest.mark.parametrize(("key", "value"), BAD_VALUES[::3])
def test_cli_exits_2_with_one_line(key: str, value: str, tmp_path: Path) -> None:
    result = dinomail("check", env={env_name(key): value}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_settings_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().DEBUG = True  # type: ignore[misc]


def test_a_retired_setting_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A configuration carried over from a release that documented STATIC_ROOT still starts."""
    config = tmp_path / "dinomail.toml"
    config.write_text('STATIC_ROOT = "/var/www/static"\nHTTP_LISTEN = "127.0.0.1:8123"\n')
    with caplog.at_level(logging.WARNING, logger="dinomail.settings"):
        settings = load_settings(str(config), environ={})
    assert settings.HTTP_LISTEN == "127.0.0.1:8123"
    assert "STATIC_ROOT" in caplog.text and "no longer used" in caplog.text
    config.write_text('STATIC_ROOTS = "/x"\n')  # a typo is still refused
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(str(config), environ={})


def test_the_retired_vacation_refresh_interval_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "dinomail.toml"
    config.write_text("VACATION_REFRESH_INTERVAL = 5\nAPP_PASSWORD_FLUSH_INTERVAL = 2\n")
    with caplog.at_level(logging.WARNING, logger="dinomail.settings"):
        settings = load_settings(str(config), environ={})
    assert settings.APP_PASSWORD_FLUSH_INTERVAL == 2
    assert not hasattr(settings, "VACATION_REFRESH_INTERVAL")
    assert "VACATION_REFRESH_INTERVAL" in caplog.text and "change log" in caplog.text

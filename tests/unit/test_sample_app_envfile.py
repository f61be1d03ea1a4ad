"""The sample app's env-file loader (lab/app/src/sampleapp/envfile.py) without Django: several files."""

import importlib.util
import os
import pathlib

import pytest

ENVFILE = pathlib.Path(__file__).resolve().parents[2] / "lab" / "app" / "src" / "sampleapp" / "envfile.py"


@pytest.fixture(scope="module")
def envfile():
    spec = importlib.util.spec_from_file_location("sampleapp_envfile_under_test", ENVFILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, text, mode=0o600):
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return str(path)


def test_two_files_are_merged(envfile, tmp_path):
    settings = write(tmp_path / "env", "DB_HOST=127.0.0.11\nDB_NAME=sampleapp\n")
    secrets = write(tmp_path / "secrets.env", "# from Vault\nDB_USER=sampleapp_green\nDB_PASSWORD=p=w#1\n")
    config = envfile.Config.load({"SAMPLEAPP_ENV_FILE": settings + ":" + secrets})
    assert config.require("DB_HOST", "DB_USER", "DB_PASSWORD") == ["127.0.0.11", "sampleapp_green", "p=w#1"]
    assert settings in config.source and secrets in config.source


def test_a_key_in_two_files_is_refused_without_its_value(envfile, tmp_path):
    settings = write(tmp_path / "env", "DB_PASSWORD=stale-value\n")
    secrets = write(tmp_path / "secrets.env", "DB_PASSWORD=current-value\n")
    with pytest.raises(envfile.ConfigError) as caught:
        envfile.load_env_files([settings, secrets])
    message = str(caught.value)
    assert "DB_PASSWORD is set in both %s and %s" % (settings, secrets) in message
    assert "stale-value" not in message and "current-value" not in message


def test_every_named_file_must_exist_and_be_private(envfile, tmp_path):
    settings = write(tmp_path / "env", "DB_HOST=x\n")
    # Config.load raises Django's ImproperlyConfigured when Django is importable, else ConfigError.
    with pytest.raises(envfile._SettingsError, match="cannot read"):
        envfile.Config.load({"SAMPLEAPP_ENV_FILE": settings + ":" + str(tmp_path / "missing.env")})
    loose = write(tmp_path / "loose.env", "SECRET_KEY=x\n", mode=0o644)
    with pytest.raises(envfile._SettingsError, match="accessible by other users"):
        envfile.Config.load({"SAMPLEAPP_ENV_FILE": settings + ":" + loose})


def test_a_list_naming_no_file_is_refused(envfile):
    with pytest.raises(envfile._SettingsError, match="names no file"):
        envfile.Config.load({"SAMPLEAPP_ENV_FILE": "::"})


def test_the_process_environment_overrides_the_files(envfile, tmp_path):
    secrets = write(tmp_path / "secrets.env", "SECRET_KEY=from-file\nSECRET_KEY_FALLBACKS=a, b,,\n")
    config = envfile.Config.load({"SAMPLEAPP_ENV_FILE": secrets, "SECRET_KEY": "from-env"})
    assert config.get("SECRET_KEY") == "from-env"
    assert config.get_list("SECRET_KEY_FALLBACKS") == ["a", "b"]

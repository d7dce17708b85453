"""`dashboard serve`'s launcher passes the server's safety settings itself, whatever the
working directory (the server started from another folder is in tests/dashboard/
test_browser.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from streamlit import config

from queries.bulk import MAX_FILE_BYTES
from tooling.serve_app import SETTINGS, env_var, settings_flags

ROOT = Path(__file__).resolve().parents[2]


def _as_flags(settings: dict[str, str]) -> list[str]:
    return [part for key, value in settings.items() for part in (f"--{key}", value)]


def test_every_setting_is_passed_as_a_flag_when_nothing_else_sets_it() -> None:
    assert settings_flags([], {}) == _as_flags(dict(SETTINGS))
    for key in (
        "server.address",
        "server.enableXsrfProtection",
        "server.enableCORS",
        "server.maxUploadSize",
        "server.runOnSave",
        "server.fileWatcherType",
        "client.toolbarMode",
        "client.showErrorDetails",
        "browser.gatherUsageStats",
    ):
        assert key in SETTINGS


@pytest.mark.parametrize(
    ("args", "env", "left_out"),
    [
        (["--server.address", "0.0.0.0", "--server.port", "8600"], {}, "server.address"),
        (["--server.address=0.0.0.0"], {}, "server.address"),
        ([], {"STREAMLIT_SERVER_ADDRESS": "0.0.0.0"}, "server.address"),
        ([], {"STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "5"}, "server.maxUploadSize"),
    ],
)
def test_a_setting_given_to_serve_as_a_flag_or_variable_wins(
    args: list[str], env: dict[str, str], left_out: str
) -> None:
    expected = {key: value for key, value in SETTINGS.items() if key != left_out}
    assert settings_flags(args, env) == _as_flags(expected)


def test_a_blank_variable_sets_nothing() -> None:
    assert settings_flags([], {"STREAMLIT_SERVER_ADDRESS": " "}) == _as_flags(dict(SETTINGS))


def test_the_variables_are_the_ones_streamlit_reads() -> None:
    config.get_config_options()
    for key in SETTINGS:
        assert env_var(key) == config._config_options_template[key].env_var


def test_the_project_config_says_what_serve_passes() -> None:
    # `streamlit run` in the project folder reads .streamlit/config.toml: the same server.
    with (ROOT / ".streamlit" / "config.toml").open("rb") as handle:
        sections = tomllib.load(handle)
    written = {
        f"{section}.{key}": str(value).lower() if isinstance(value, bool) else str(value)
        for section, values in sections.items()
        for key, value in values.items()
    }
    assert written == dict(SETTINGS)


def test_the_upload_limit_takes_a_whole_bulk_file_and_not_much_more() -> None:
    megabytes = int(SETTINGS["server.maxUploadSize"])
    assert MAX_FILE_BYTES <= megabytes * 2**20 < MAX_FILE_BYTES + 2**20

"""The integration-platform command, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = str(Path(sys.executable).with_name("integration-platform"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "demo"),
        (("demo",), "maintenance_kpis_job"),
        (("db",), "INTEGRATION_PLATFORM_DB_URL"),
        (("db", "upgrade"), "revision"),
    ],
)
def test_help_says_what_each_command_does(args: tuple[str, ...], expected: str) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_db_upgrade_then_current_then_downgrade(data_dir: Path) -> None:
    import os

    env = {**os.environ}
    upgraded = run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (data_dir / "state" / "integration_platform.db").is_file()
    assert run("db", "current", env=env).stdout.strip() == "0001"
    downgraded = run("db", "downgrade", "base", env=env)
    assert downgraded.returncode == 0, downgraded.stderr
    assert "base" in run("db", "current", env=env).stdout


def test_a_bad_database_url_fails_naming_the_variable(data_dir: Path) -> None:
    import os

    env = {**os.environ, "INTEGRATION_PLATFORM_DB_URL": "not a url"}
    result = run("db", "upgrade", env=env)
    assert result.returncode == 2
    assert "INTEGRATION_PLATFORM_DB_URL" in result.stderr
    assert "Traceback" not in result.stderr

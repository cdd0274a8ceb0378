"""The integration-platform command, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

import pytest

from integration_platform.state import head

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
    assert run("db", "current", env=env).stdout.strip() == head()
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


ROOT = Path(__file__).resolve().parent.parent
WORK_ORDER_MAPPING = (
    ROOT / "integration_platform" / "defs" / "sample_cmms" / "work_orders" / "defs.yaml"
)
SAMPLES = ROOT / "data" / "samples" / "cmms"


def test_mapping_validate_accepts_the_shipped_mappings() -> None:
    files = sorted((ROOT / "integration_platform" / "defs").rglob("defs.yaml"))
    mappings = [path for path in files if "MappingComponent" in path.read_text(encoding="utf-8")]
    result = run("mapping", "validate", *map(str, mappings))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok: ") == len(mappings) >= 2


def test_mapping_validate_names_file_line_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "defs.yaml"
    text = WORK_ORDER_MAPPING.read_text(encoding="utf-8")
    broken.write_text(text.replace("    title: description", "    titel: description"))
    line = next(
        number
        for number, content in enumerate(broken.read_text().splitlines(), start=1)
        if content.startswith("    titel:")
    )
    result = run("mapping", "validate", str(broken))
    assert result.returncode == 1
    assert f"{broken}, line {line}: field titel: WorkOrder has no field 'titel'" in result.stderr
    assert "field title: required by WorkOrder but not mapped" in result.stderr


def test_mapping_preview_prints_mapped_rows_and_rejects(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    lines = (SAMPLES / "work_orders.csv").read_text(encoding="utf-8").splitlines()
    sample.write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    result = run(
        "mapping",
        "preview",
        str(WORK_ORDER_MAPPING),
        "--sample",
        str(sample),
        "--lookup",
        f"site_timezone={SAMPLES / 'sites.csv'}",
        "-n",
        "3",
    )
    assert result.returncode == 0, result.stderr
    first = lines[1].split(",")[0]
    assert "of 5 records" in result.stdout
    assert first in result.stdout
    # WO-101017 on line 6 of the sample export has negative labour hours.
    assert "WO-101017 (line 6): labor_hours" in result.stdout


def test_mapping_preview_asks_for_missing_lookups(tmp_path: Path) -> None:
    result = run(
        "mapping", "preview", str(WORK_ORDER_MAPPING), "--sample", str(SAMPLES / "sites.csv")
    )
    assert result.returncode == 2
    assert "--lookup for: site_timezone" in result.stderr


def test_demo_with_a_bad_lake_uri_fails_fast_naming_the_variable(data_dir: Path) -> None:
    import os

    env = {**os.environ, "INTEGRATION_PLATFORM_LAKE_URI": "ftp://nas/lake"}
    result = run("demo", env=env)
    assert result.returncode == 2
    assert "INTEGRATION_PLATFORM_LAKE_URI" in result.stderr
    assert "unsupported scheme 'ftp'" in result.stderr
    assert not (data_dir / "lake").exists()


@pytest.mark.slow
def test_demo_runs_the_main_job_and_a_signed_webhook_event(data_dir: Path, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    result = subprocess.run(
        [COMMAND, "demo"], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "maintenance_kpis_job succeeded" in result.stdout
    assert "quarantine/work_orders                 34 rows" in result.stdout
    assert "-> 202 (event " in result.stdout
    assert "event status: processed" in result.stdout
    assert "status scheduled -> completed" in result.stdout
    assert (data_dir / "lake" / "gold" / "work_order_kpis" / "_delta_log").is_dir()
    # The streams part: the critical alert's work order, or (no broker, outside CI) why not.
    assert "(outbox, status scheduled) opened for alert" in result.stdout or (
        "streams part skipped: no MQTT broker" in result.stdout and not os.environ.get("CI")
    )

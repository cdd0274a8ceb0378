"""``integration-platform sync`` and ``conflicts`` as an operator uses them, against the
Maximo contract server and a table on the real PostgreSQL (the state database there too)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration_platform.cli import main
from integration_platform_tests.sync_rig import SYNC, SyncRig

COMMAND = str(Path(sys.executable).with_name("integration-platform"))


@pytest.fixture
def rig(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncRig]:
    found = SyncRig(tmp_path, postgres_url, monkeypatch)
    yield found
    found.close()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    status, out, err = cli(capsys, *args, "--json")
    assert status == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("sync",), "SyncComponent"),
        (("sync", "run"), "--dry-run"),
        (("sync", "history"), "who decided"),
        (("conflicts",), "next run of the sync"),
        (("conflicts", "resolve"), "--take"),
    ],
)
def test_help_says_what_each_command_does(
    args: tuple[str, ...], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    assert expected in " ".join(capsys.readouterr().out.split())


def test_the_installed_command_has_the_sync_commands() -> None:
    result = subprocess.run(
        [COMMAND, "conflicts", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "list" in result.stdout and "resolve" in result.stdout


@pytest.mark.postgres
def test_a_conflict_resolved_on_the_command_line_is_applied_by_the_next_run(
    rig: SyncRig, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = str(rig.defs_file)
    status, out, err = cli(capsys, "sync", "run", SYNC, "--defs", defs)
    assert status == 0, err
    assert "succeeded" in out

    # A planner and a technician assign work order 1003 to different people (manual policy).
    rig.edit_maximo("1003", lead="GARCIA")
    rig.edit_sql("1003", assigned_to="NGUYEN")
    status, out, err = cli(capsys, "sync", "run", SYNC, "--defs", defs)
    assert status == 0, err
    (conflict,) = cli_json(capsys, "conflicts", "list", "--sync", SYNC)
    assert (conflict["field"], conflict["left_value"], conflict["right_value"]) == (
        "assigned_to",
        "GARCIA",
        "NGUYEN",
    )
    number = str(conflict["id"])

    status, out, _ = cli(capsys, "conflicts", "show", number)
    assert status == 0
    assert 'maximo BEDFORD/1003 has "GARCIA"' in out and '"NGUYEN"' in out
    assert f"conflicts resolve {number}" in out

    status, out, err = cli(
        capsys,
        "conflicts",
        "resolve",
        number,
        "--take",
        "right",
        "--by",
        "alice",
        "--note",
        "Nguyen holds the permit",
    )
    assert status == 0, err
    assert 'keep "NGUYEN"' in out and "next run" in out
    assert "no open conflicts" in cli(capsys, "conflicts", "list")[1]
    # Decided, not applied yet: the systems still differ.
    assert rig.maximo_rows()["1003"]["lead"] == "GARCIA"

    status, out, err = cli(capsys, "sync", "run", SYNC, "--defs", defs)
    assert status == 0, err
    assert rig.maximo_rows()["1003"]["lead"] == rig.sql_rows()["1003"]["assigned_to"] == "NGUYEN"
    shown = cli_json(capsys, "conflicts", "show", number)
    assert shown["status"] == "applied" and shown["resolved_by"] == "alice"
    # Settled: resolving it again is refused.
    status, _, err = cli(capsys, "conflicts", "resolve", number, "--take", "left", "--by", "bob")
    assert status == 1 and "nothing left to decide" in err

    # The record's history says who changed what, and why the conflict went the way it did.
    status, out, err = cli(
        capsys, "sync", "history", "--entity", "work_order", "--system", "maximo", "--id",
        "BEDFORD/1003",
    )  # fmt: skip
    assert status == 0, err
    assert 'assigned_to: "GARCIA" -> "NGUYEN"' in out and "by alice" in out
    assert "note: Nguyen holds the permit" in out
    history = cli_json(
        capsys, "sync", "history", "--entity", "work_order", "--system", "plant_db", "--id",
        str(_sql_id(rig, "1003")),
    )  # fmt: skip
    fields = [change["field"] for change in history["changes"]]
    assert "assigned_to" in fields and history["pending_conflicts"] == []

    runs = cli_json(capsys, "sync", "runs", "--sync", SYNC)
    assert [run["status"] for run in runs] == ["succeeded"] * 3
    assert all(run["triggered_by"].startswith("cli ") for run in runs)


@pytest.mark.postgres
def test_a_dry_run_prints_the_plan_and_writes_nothing(
    rig: SyncRig, capsys: pytest.CaptureFixture[str]
) -> None:
    defs = str(rig.defs_file)
    assert cli(capsys, "sync", "run", SYNC, "--defs", defs)[0] == 0
    rig.edit_maximo("1004", description="Compressor C-2 trips on high temperature")
    rig.edit_maximo("1005", lead="GARCIA")
    rig.edit_sql("1005", assigned_to="NGUYEN")
    before = (
        rig.sql_rows(),
        rig.maximo_rows(),
        rig.state_counts(),
        rig.lake.version(["audit", "sync_changes"]),
    )

    status, out, err = cli(capsys, "sync", "run", SYNC, "--defs", defs, "--dry-run")
    assert status == 0, err
    plan, conflicts = out.split("conflicts (")
    assert "planned changes (1 field writes; nothing was written)" in plan
    assert "Compressor C-2 trips on high temperature" in plan and "plant_db" in plan
    assert "assigned_to" in conflicts and "waits for a person" in conflicts
    after = (
        rig.sql_rows(),
        rig.maximo_rows(),
        rig.state_counts(),
        rig.lake.version(["audit", "sync_changes"]),
    )
    assert after == before


@pytest.mark.postgres
def test_an_unknown_sync_or_a_bad_declaration_is_named(
    rig: SyncRig, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = cli(capsys, "sync", "run", "nope", "--defs", str(rig.defs_file))
    assert status == 2 and f"declared: {SYNC}" in err
    text = rig.defs_file.read_text().replace("owner: maximo", "owner: maximoo")
    rig.defs_file.write_text(text)
    status, _, err = cli(capsys, "sync", "validate", str(rig.defs_file))
    assert status == 1
    assert f"{rig.defs_file}, line" in err and "syncs[0].policies.status.owner" in err


def _sql_id(rig: SyncRig, wonum: str) -> int:
    import sqlalchemy as sa

    with rig.sql.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT id FROM plant_work_orders WHERE wonum = :w"), {"w": wonum}
            ).scalar_one()
        )

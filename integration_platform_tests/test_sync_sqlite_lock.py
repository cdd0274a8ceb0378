"""Runs of one sync exclude each other on SQLite too: real concurrent runs (two threads, then
two processes) against a SQLite state database. The second run fails at once with
``SyncBusy`` naming the holder, as on PostgreSQL; a holder that dies releases the lock with
it, so the next run neither waits for a lease nor needs a person."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_platform.state import StateDatabase, dispose_engines
from integration_platform.sync import SideSpec, SyncBusy, SyncEngine, SyncSpec, list_runs
from integration_platform.sync.adapters.maximo import MaximoWorkOrderAdapter
from integration_platform.sync.adapters.memory import MemoryAdapter
from integration_platform.sync.locks import sync_lock_path
from integration_platform_tests.test_sync_maximo_sql import Systems

FIELDS = {"external_id": "number", "title": "title"}
BUSY = r"sync '{name}' is already running \(process {pid} on .+ since .+; lock file .+\.lock\)"


@pytest.fixture
def systems(tmp_path: Path, postgres_url: str) -> Iterator[Systems]:
    """Maximo (contract server) and the plant table on PostgreSQL; state on SQLite."""
    found = Systems(tmp_path, postgres_url, f"sqlite:///{tmp_path / 'state.db'}")
    yield found
    found.close()


@pytest.mark.postgres
def test_a_second_run_fails_fast_while_the_first_holds_the_lock(systems: Systems) -> None:
    reading, go_on = threading.Event(), threading.Event()

    class SlowMaximo(MaximoWorkOrderAdapter):
        """A long read: the first run holds the lock meanwhile."""

        def read(self, **kwargs: Any) -> pd.DataFrame:
            reading.set()
            assert go_on.wait(60)
            return super().read(**kwargs)

    first = systems.engine(
        maximo=SlowMaximo(systems.connector(), create_defaults={"siteid": "BEDFORD"})
    )
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(report=first.run()))
    thread.start()
    try:
        assert reading.wait(60)
        started = time.monotonic()
        with pytest.raises(SyncBusy, match=BUSY.format(name=first.spec.name, pid=os.getpid())):
            systems.engine().run()
        assert time.monotonic() - started < 5  # refused at once, not after waiting
        with pytest.raises(SyncBusy):
            systems.engine().run(dry_run=True)  # a dry run reads too: the same lock
    finally:
        go_on.set()
        thread.join(120)
    assert outcome["report"].status == "succeeded", outcome["report"].cause
    # The refused runs left nothing behind; once the first is done the next one runs.
    assert len(list_runs(systems.state)) == 1
    assert systems.engine().run().counts["applied"] == 0
    assert len(list_runs(systems.state)) == 2


def _spec() -> SyncSpec:
    return SyncSpec(
        name="requests_to_cmms",
        entity="work_order",
        left=SideSpec(system="requests", connection="requests", key_field="id", fields=FIELDS),
        right=SideSpec(system="cmms", connection="cmms", key_field="id", fields=FIELDS),
        fields=("title",),
        match_field="external_id",
    )


def _records(*titles: str) -> pd.DataFrame:
    rows = [{"id": f"R{n}", "number": f"W{n}", "title": t} for n, t in enumerate(titles, 1)]
    return pd.DataFrame(rows)


class _Stuck(MemoryAdapter):
    """A read that never ends (a hung system): the run holds the lock until killed."""

    def __init__(self, records: pd.DataFrame, ready: Path) -> None:
        super().__init__(records)
        self.ready = ready

    def read(self, **kwargs: Any) -> pd.DataFrame:
        self.ready.write_text(str(os.getpid()))
        while True:
            time.sleep(1)


def _run_stuck(state_url: str, ready: str) -> None:
    """In another process: a run of the sync whose read hangs."""
    state = StateDatabase(url=state_url)
    left = _Stuck(_records("Leaking valve V-3"), Path(ready))
    SyncEngine(_spec(), left, MemoryAdapter(_records()), state).run(triggered_by="child")


def test_a_run_in_another_process_is_refused_until_that_process_dies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    state = StateDatabase(url=url)
    state.ensure_schema()
    ready = tmp_path / "ready"
    child = multiprocessing.get_context("spawn").Process(target=_run_stuck, args=(url, ready))
    child.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child run never started reading"

        def engine() -> SyncEngine:
            left = MemoryAdapter(_records("Leaking valve V-3"))
            return SyncEngine(_spec(), left, MemoryAdapter(_records()), state)

        with pytest.raises(SyncBusy, match=BUSY.format(name="requests_to_cmms", pid=child.pid)):
            engine().run()
        assert sync_lock_path(tmp_path / "state.db", "requests_to_cmms").exists()

        # The holder dies without a chance to clean up: the lock goes with it.
        child.kill()  # SIGKILL
        child.join(30)
        report = engine().run()
        assert report.status == "succeeded", report.cause
        runs = list_runs(state, sync_name="requests_to_cmms")
        crashed = runs[runs["run_id"] != report.run_id].iloc[0]
        assert (
            crashed["status"] == "rolled_back" and "stopped before it finished" in crashed["cause"]
        )
    finally:
        if child.is_alive():
            child.kill()
            child.join(30)
        dispose_engines()

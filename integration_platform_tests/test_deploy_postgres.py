"""The production instance config (deploy/dagster.yaml) running for real on PostgreSQL.

Creates the schema (``dagster instance migrate``), then starts a code server, the webserver
and the daemon as separate processes — the layout of deploy/compose.yaml and deploy/systemd —
on a temporary DAGSTER_HOME holding a copy of deploy/dagster.yaml, launches
``maintenance_kpis_job`` through GraphQL, and checks that the QueuedRunCoordinator and the
daemon ran it, that PostgreSQL recorded it, and that the gold Delta tables were written.
Then webhook events go into the inbox (a second PostgreSQL database, as in production) and
the daemon's own sensor loop launches the processing runs: each event is processed once, no
run key is launched twice, and ticks after the inbox is drained launch nothing.
Every process started here is stopped here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from integration_platform.defs.webhooks.jobs import maintenance_events_job
from integration_platform.defs.webhooks.sensors import MINIMUM_INTERVAL_SECONDS
from integration_platform.settings import environment
from integration_platform.state import make_engine, upgrade
from integration_platform.webhooks.app import create_app
from integration_platform.webhooks.cli import send_test_event
from integration_platform.webhooks.sources import WebhookSources
from integration_platform.webhooks.testing import running_server
from integration_platform_tests.conftest import postgres_database

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
# The virtualenv's scripts sit next to its interpreter; no resolve(): that would follow the
# interpreter symlink out of the virtualenv.
BIN_DIR = Path(sys.executable).parent

LOCATION_NAME = "integration_platform"
JOB_NAME = "maintenance_kpis_job"

READY_TIMEOUT_S = 150.0
RUN_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    # dagster-graphql's client still passes variables the way gql 3.6 deprecated.
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
]

T = TypeVar("T")

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"deploy-test-webhook-secret-01").decode()
WEBHOOK_ENV = {"WEBHOOK_SOURCES": "maximo", "WEBHOOK_MAXIMO_SECRETS": WEBHOOK_SECRET}
WEBHOOK_RECORDS = 6

LOCATION_STATUS_QUERY = """
query LocationStatus {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name } }
          ... on PythonError { message }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it, so parallel tests don't clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Processes started by this test, each in its own process group with a log file.

    Own process groups let teardown stop a server together with the children it spawned
    (the code server's worker and the run workers), and nothing else.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        try:
            self.started[name] = subprocess.Popen(
                args,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor

    def check_alive(self) -> None:
        """Fail at once, with the logs, when a server exited instead of waiting for a timeout."""
        for name, proc in self.started.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited early with code {proc.returncode}\n{self.tails()}")

    def tails(self, lines: int = 40) -> str:
        parts = []
        for name in self.started:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
            parts.append(f"----- {name} (last {lines} lines) -----\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)

    def stop_all(self) -> None:
        """SIGTERM each process group (newest first), SIGKILL what is still alive afterwards."""
        for proc in reversed(list(self.started.values())):
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Children may outlive a leader that exited on SIGTERM: kill the group regardless.
            self._signal(proc, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The group id is the leader's pid (start_new_session); a group without members is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


@pytest.fixture
def processes(tmp_path: Path, postgres_url: str) -> Iterator[Processes]:
    """Stops the servers before ``postgres_url`` drops their database."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs = Processes(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_for(
    what: str, probe: Callable[[], T | None], procs: Processes, timeout: float = READY_TIMEOUT_S
) -> T:
    """Poll ``probe`` until it returns a value, failing with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            result = probe()
        except Exception as exc:  # a server that is still starting refuses or errors
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if result is not None:
                return result
        time.sleep(1.0)
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what} ({last_error})\n{procs.tails()}"
    )


def instance_env(postgres_url: str, dagster_home: Path, data_dir: Path) -> dict[str, str]:
    """The environment of every process: DAGSTER_PG_* taken apart from the fixture's URL."""
    url = sa.engine.make_url(postgres_url)
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(dagster_home),
        DAGSTER_PG_HOST=url.host or "127.0.0.1",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_USER=url.username or "postgres",
        DAGSTER_PG_PASSWORD=url.password or "",
        DAGSTER_PG_DB=url.database or "",
        INTEGRATION_PLATFORM_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    for name in ("INTEGRATION_PLATFORM_DB_URL", "INTEGRATION_PLATFORM_LAKE_URI"):
        env.pop(name, None)
    return env


def graphql(port: int, query: str) -> dict[str, Any]:
    """POST a query to the webserver's GraphQL endpoint and return its ``data``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


class LocationProbe:
    """Finds the location's repository name once the webserver has loaded it.

    A location that failed to load is reloaded every few seconds (the code server may still
    have been importing); an error that persists is a broken code location, reported at once
    instead of after the readiness timeout.
    """

    RELOAD_EVERY_S = 5.0
    GIVE_UP_AFTER_S = 45.0

    def __init__(self, client: DagsterGraphQLClient, port: int, procs: Processes) -> None:
        self.client, self.port, self.procs = client, port, procs
        self.first_error_at: float | None = None
        self.last_reload_at = 0.0

    def __call__(self) -> str | None:
        workspace = graphql(self.port, LOCATION_STATUS_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise RuntimeError(workspace.get("message", workspace["__typename"]))
        entry = next((e for e in workspace["locationEntries"] if e["name"] == LOCATION_NAME), None)
        if entry is None or entry["loadStatus"] != "LOADED":
            return None
        location = entry["locationOrLoadError"] or {}
        if location.get("__typename") == "RepositoryLocation":
            return location["repositories"][0]["name"]
        now = time.monotonic()
        self.first_error_at = self.first_error_at or now
        if now - self.first_error_at > self.GIVE_UP_AFTER_S:
            pytest.fail(
                f"code location {LOCATION_NAME} does not load: {location.get('message')}\n"
                f"{self.procs.tails()}"
            )
        if now - self.last_reload_at > self.RELOAD_EVERY_S:
            self.last_reload_at = now
            self.client.reload_repository_location(LOCATION_NAME)
        return None


def http_ok(url: str) -> bool | None:
    with urllib.request.urlopen(url, timeout=5) as response:
        return True if response.status == 200 else None


@pytest.fixture
def state_url() -> Iterator[str]:
    """The platform's state database: its own PostgreSQL database, beside Dagster's."""
    yield from postgres_database()


def test_deploy_instance_runs_job_on_postgres(
    tmp_path: Path, postgres_url: str, state_url: str, data_dir: Path, processes: Processes
) -> None:
    upgrade(state_url)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(DEPLOY_INSTANCE_YAML, dagster_home / "dagster.yaml")

    grpc_port, web_port = free_port(), free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - grpc_server:\n"
        "      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n"
        f"      location_name: {LOCATION_NAME}\n"
    )
    env = instance_env(postgres_url, dagster_home, data_dir)
    env.update(INTEGRATION_PLATFORM_DB_URL=state_url, **WEBHOOK_ENV)
    cwd = tmp_path  # nothing may depend on the checkout being the working directory

    started = time.monotonic()
    # Create the schema once, as the deployment's migrate step does: servers starting together
    # on an empty database race to create the same tables, and the loser exits
    # (psycopg2 DuplicateObject on a fresh database).
    migrate = subprocess.run(
        [str(BIN_DIR / "dagster"), "instance", "migrate"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT_S,
        check=False,
    )
    assert migrate.returncode == 0, (
        f"dagster instance migrate failed:\n{migrate.stdout}{migrate.stderr}"
    )
    processes.start(
        "code-server",
        [
            str(BIN_DIR / "dagster"),
            "code-server",
            "start",
            "-h",
            "127.0.0.1",
            "-p",
            str(grpc_port),
            "-m",
            "integration_platform.definitions",
            "--location-name",
            LOCATION_NAME,
        ],
        env,
        cwd,
    )
    processes.start(
        "webserver",
        [
            str(BIN_DIR / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(web_port),
            "-w",
            str(workspace),
        ],
        env,
        cwd,
    )
    wait_for(
        "the webserver", lambda: http_ok(f"http://127.0.0.1:{web_port}/server_info"), processes
    )
    client = DagsterGraphQLClient("127.0.0.1", port_number=web_port, timeout=60)
    repository_name = wait_for(
        f"code location {LOCATION_NAME}", LocationProbe(client, web_port, processes), processes
    )
    # The daemon loads the workspace once the code server answers, so its first load succeeds.
    processes.start(
        "daemon", [str(BIN_DIR / "dagster-daemon"), "run", "-w", str(workspace)], env, cwd
    )
    ready_s = time.monotonic() - started

    try:
        run_id = client.submit_job_execution(
            JOB_NAME,
            repository_location_name=LOCATION_NAME,
            repository_name=repository_name,
            tags={"integration_platform/sync": "test_deploy_postgres"},
        )
    except DagsterGraphQLClientError as exc:
        pytest.fail(f"submitting {JOB_NAME} failed: {exc}\n{processes.tails()}")

    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = client.get_run_status(run_id)
    while status not in (
        DagsterRunStatus.SUCCESS,
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.CANCELED,
    ):
        processes.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} still {status.value} after {RUN_TIMEOUT_S:.0f} s\n"
                f"{processes.tails()}"
            )
        time.sleep(1.0)
        status = client.get_run_status(run_id)
    assert status == DagsterRunStatus.SUCCESS, (
        f"run {run_id} ended {status.value}\n{processes.tails()}"
    )
    run_s = time.monotonic() - started - ready_s
    print(f"servers ready in {ready_s:.1f} s; run queued to success in {run_s:.1f} s")

    # Recorded by the PostgreSQL storages, and queued (not launched directly): the
    # QueuedRunCoordinator from deploy/dagster.yaml and the daemon did the launching.
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT pipeline_name, status FROM runs WHERE run_id = :run_id"),
                {"run_id": run_id},
            ).one_or_none()
            enqueued = conn.execute(
                sa.text(
                    "SELECT count(*) FROM event_logs"
                    " WHERE run_id = :run_id AND dagster_event_type = :event_type"
                ),
                {"run_id": run_id, "event_type": DagsterEventType.RUN_ENQUEUED.value},
            ).scalar_one()
            heartbeats = conn.execute(
                sa.text("SELECT count(*) FROM daemon_heartbeats")
            ).scalar_one()
    finally:
        engine.dispose()
    assert row is not None, f"run {run_id} is not in the runs table of {postgres_url}"
    assert tuple(row) == (JOB_NAME, DagsterRunStatus.SUCCESS.value)
    assert enqueued == 1, "the run did not go through the run queue"
    assert heartbeats > 0, "the daemon wrote no heartbeats to PostgreSQL"

    # A gold Delta table with at least one commit in its log.
    gold = data_dir / "lake" / "gold"
    committed = sorted(
        log.parent.relative_to(gold) for log in gold.rglob("_delta_log") if any(log.glob("*.json"))
    )
    assert committed, f"no committed gold Delta table under {gold}"

    check_daemon_processes_webhook_events_once(postgres_url, state_url, processes)


def check_daemon_processes_webhook_events_once(
    instance_url: str, state_url: str, procs: Processes
) -> None:
    """Events received -> the daemon's sensor ticks -> processing runs, each key launched once."""
    engine = make_engine(state_url)
    app = create_app(sources=WebhookSources.from_env(WEBHOOK_ENV), engine=engine)
    sent: list[str] = []
    # send_test_event reads the sources from the environment, as the CLI does.
    with running_server(app) as url, environment(WEBHOOK_ENV):
        for number in range(WEBHOOK_RECORDS):
            for event_type in ("work_order.created", "work_order.status_changed"):
                answer = send_test_event(
                    "maximo", url, event_type=event_type, entity_id=f"WO-D{number}"
                )
                assert answer.status == 202, answer.text
                sent.append(json.loads(answer.text)["event_id"])

    def processed() -> dict[str, int] | None:
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    sa.text(
                        "SELECT processing_status, count(*) FROM maintenance_event_hooks"
                        " GROUP BY processing_status"
                    )
                ).all()
            )
        return statuses if statuses == {"processed": len(sent)} else None

    wait_for("the daemon to process the webhook events", processed, procs, RUN_TIMEOUT_S)
    time.sleep(3 * MINIMUM_INTERVAL_SECONDS)  # ticks after the inbox is drained
    instance = sa.create_engine(instance_url)
    try:
        with instance.connect() as conn:
            keys = list(
                conn.execute(
                    sa.text(
                        "SELECT t.value FROM runs r JOIN run_tags t ON t.run_id = r.run_id"
                        " WHERE r.pipeline_name = :job AND t.key = 'dagster/run_key'"
                    ),
                    {"job": maintenance_events_job.name},
                ).scalars()
            )
        with engine.connect() as conn:
            retried = conn.execute(
                sa.text("SELECT count(*) FROM maintenance_event_hooks WHERE retry_count > 0")
            ).scalar_one()
    finally:
        instance.dispose()
        engine.dispose()
    assert keys, "the daemon launched no processing run"
    assert len(keys) == len(set(keys)), f"a run key was launched twice: {sorted(keys)}"
    assert len(keys) < len(sent), "events are grouped into runs, not one run per event"
    assert retried == 0, "every event was applied on its first attempt"

"""Webhook benchmark: acknowledged events per second, and receipt-to-silver latency.

Against PostgreSQL at 127.0.0.1:5432 (a scratch database created and dropped here), the real
receiver (``integration-platform webhooks serve``, one process) is loaded over loopback by a
separate process: keep-alive HTTP/1.1 connections, one per sender, each event uniquely signed
(Standard Webhooks, its own ``webhook-id``).

Phases:

1. ``ack``: 32 concurrent senders as fast as answers come: acknowledged events/s, p50/p99.
2. ``burst``: 100 concurrent senders: must answer every request 202.
3. ``e2e``: a steady stream (default 30 events/s = 1,800/min) of Maximo work-order changes
   over 200 work orders while processing runs the way production does: a sensor tick every
   5 s (``maintenance_events_pending_sensor`` evaluated with its cursor) and each requested run
   executed in-process (``maintenance_events_job``), writing a temporary Delta lake. e2e is
   ``processed_at - received_at`` per event; the empty-run floor (a tick plus a run with
   nothing to do) is measured first.

Checks: every event answered ``accepted`` is in the inbox (phases 1-2) and, for phase 3,
processed, in ``silver/maintenance_events`` exactly once, and each work order in silver shows
its last event's status.

Usage: ``python benchmarks/webhooks.py [--quick]``. The last line is
``ack_rps=<N> ack_p99_ms=<L> e2e_p95_s=<E> lost=<X> duplicated=<D>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-0123456789ab").decode()
PATH = "/api/v1/hooks/maintenance/events"
WORK_ORDERS = 200
STATUSES = ["WAPPR", "APPR", "INPRG", "WMATL", "INPRG", "COMP"]
TICK_SECONDS = 5.0
CANONICAL = {
    "WAPPR": "scheduled",
    "APPR": "scheduled",
    "INPRG": "in_progress",
    "WMATL": "on_hold",
    "COMP": "completed",
}
REPORT_DATE = "2026-11-01T08:00:00+00:00"


# ---- the load generator (runs in its own process) --------------------------------------------


def _body(source_kind: str, sequence: int, sender: int) -> tuple[bytes, str, str, str]:
    """A full Maximo work-order record; the status follows the sequence number."""
    number = (sequence * 7919 + sender) % WORK_ORDERS
    now = datetime.now(UTC)
    status = STATUSES[(sequence + sender) % len(STATUSES)]
    record: dict[str, Any] = {
        "wonum": f"B-{number}",
        "siteid": "BENCH",
        "assetnum": f"P-{number % 17}",
        "description": f"Bench work order {number}",
        "worktype": "CM",
        "wopriority": 1 + number % 4,
        "status": status,
        "reportdate": REPORT_DATE,
        "changedate": now.isoformat(timespec="microseconds"),
    }
    if status == "COMP":
        record["actfinish"] = record["changedate"]
    return json.dumps(record).encode(), f"B-{number}", record["changedate"], status


async def _sender(
    host: str,
    port: int,
    source: str,
    sender: int,
    deadline: float,
    interval: float,
    results: list[tuple[str, int, float, str, str, str, str]],
) -> None:
    from integration_platform.webhooks.signatures import decode_secret, sign_standard

    key = (decode_secret(SECRET),)
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sequence = 0
    next_at = time.perf_counter()
    try:
        while time.perf_counter() < deadline:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            body, record, changed, maximo_status = _body(source, sequence, sender)
            msg_id = f"msg_{uuid.uuid4().hex}"
            stamp = int(time.time())
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Webhook-Source: {source}\r\nwebhook-id: {msg_id}\r\n"
                f"webhook-timestamp: {stamp}\r\n"
                f"webhook-signature: {sign_standard(msg_id, stamp, body, key)}\r\n\r\n"
            )
            started = time.perf_counter()
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length) if length else b""
            elapsed = time.perf_counter() - started
            status = int(status_line.split()[1]) if status_line else 0
            outcome = ""
            if status == 202:
                outcome = json.loads(answer)["status"]
            results.append((msg_id, status, elapsed, outcome, record, changed, maximo_status))
            sequence += 1
    finally:
        writer.close()


def run_load(
    host: str, port: int, source: str, senders: int, seconds: float, rate: float | None
) -> dict[str, Any]:
    """``senders`` connections for ``seconds``; ``rate`` events/s in total, or as fast as can."""
    results: list[tuple[str, int, float, str, str, str, str]] = []
    interval = senders / rate if rate else 0.0

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(
            *(_sender(host, port, source, i, deadline, interval, results) for i in range(senders))
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    return {"elapsed": elapsed, "results": results}


def _load_in_process(queue: Any, *args: Any) -> None:
    queue.put(run_load(*args))


def spawn_load(*args: Any) -> tuple[Any, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load_in_process, args=(queue, *args), daemon=True)
    process.start()
    return process, queue


# ---- the orchestration (main process) ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarize(name: str, load: dict[str, Any]) -> dict[str, Any]:
    results = load["results"]
    ok = [r for r in results if r[1] == 202]
    latencies = [r[2] for r in ok]
    errors = len(results) - len(ok)
    rps = len(ok) / load["elapsed"]
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    print(
        f"{name:6}: {len(results)} requests in {load['elapsed']:.1f} s, {len(ok)} x 202, "
        f"{errors} errors, {rps:,.0f} acknowledged/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        flush=True,
    )
    return {"rps": rps, "p99_ms": p99, "errors": errors, "ok": ok, "elapsed": load["elapsed"]}


def start_receiver(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).with_name("integration-platform")),
        "webhooks",
        "serve",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the receiver did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute)")
    parser.add_argument("--rate", type=float, default=30.0, help="e2e events per second")
    args = parser.parse_args()
    ack_seconds, burst_seconds, e2e_seconds = (5, 3, 40) if args.quick else (20, 10, 120)

    import dagster as dg
    import sqlalchemy as sa

    from integration_platform.defs.webhooks.jobs import PROCESS_OP, maintenance_events_job
    from integration_platform.defs.webhooks.sensors import maintenance_events_pending_sensor
    from integration_platform.lake import DeltaLake
    from integration_platform.state import MaintenanceEventHook, StateDatabase, upgrade
    from integration_platform.state.engine import make_engine

    name = f"ip_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    receiver = None
    try:
        upgrade(url)
        engine = make_engine(url)
        env = {
            **os.environ,
            "INTEGRATION_PLATFORM_DB_URL": url,
            "INTEGRATION_PLATFORM_DATA_DIR": str(workdir),
            "WEBHOOK_SOURCES": "bench,benchack",
            "WEBHOOK_BENCH_SECRETS": SECRET,
            "WEBHOOK_BENCH_FORMAT": "maximo",
            "WEBHOOK_BENCH_RATE_LIMIT": "0",
            "WEBHOOK_BENCHACK_SECRETS": SECRET,
            "WEBHOOK_BENCHACK_FORMAT": "maximo",
            "WEBHOOK_BENCHACK_RATE_LIMIT": "0",
        }
        port = free_port()
        receiver = start_receiver(env, port)
        print(f"receiver: one process on 127.0.0.1:{port}, PostgreSQL database {name}", flush=True)
        table = MaintenanceEventHook.__table__

        process, queue = spawn_load("127.0.0.1", port, "benchack", 32, ack_seconds, None)
        ack = summarize("ack", queue.get())
        process.join()
        process, queue = spawn_load("127.0.0.1", port, "benchack", 100, burst_seconds, None)
        burst = summarize("burst", queue.get())
        process.join()
        with engine.connect() as connection:
            stored = set(
                connection.execute(
                    sa.select(table.c.event_id).where(table.c.cmms_system_id == "benchack")
                ).scalars()
            )
        acked = [r[0] for r in ack["ok"] + burst["ok"] if r[3] == "accepted"]
        lost_ack = len([event_id for event_id in acked if event_id not in stored])
        print(f"ack phases: {len(acked)} accepted, {lost_ack} not in the inbox", flush=True)
        with engine.begin() as connection:  # counted; not part of the processing phase
            connection.execute(sa.delete(table).where(table.c.cmms_system_id == "benchack"))

        lake = DeltaLake(uri=str(workdir / "lake"))
        resources = {"state": StateDatabase(url=url), "lake": lake}
        with dg.instance_for_test() as instance:
            cursor: str | None = None

            def tick() -> int:
                nonlocal cursor
                context = dg.build_sensor_context(
                    instance=instance, cursor=cursor, resources={"state": resources["state"]}
                )
                result = maintenance_events_pending_sensor(context)
                if isinstance(result, dg.SkipReason):
                    return 0
                cursor = result.cursor or cursor
                for request in result.run_requests:
                    maintenance_events_job.execute_in_process(
                        run_config=request.run_config,
                        resources=resources,
                        instance=instance,
                        tags=request.tags,
                    )
                return len(result.run_requests)

            floors = []
            for _ in range(3):
                started = time.perf_counter()
                tick()
                maintenance_events_job.execute_in_process(
                    run_config={
                        "ops": {
                            PROCESS_OP: {"config": {"source": "bench", "entity_type": "work_order"}}
                        }
                    },
                    resources=resources,
                    instance=instance,
                )
                floors.append(time.perf_counter() - started)
            floor = statistics.median(floors)
            print(f"empty-run floor (sensor tick + empty run): {floor:.2f} s", flush=True)

            process, queue = spawn_load("127.0.0.1", port, "bench", 8, e2e_seconds, args.rate)
            runs = 0
            load_done_by = time.monotonic() + e2e_seconds + 5
            settle_deadline = load_done_by + 120
            while True:
                started = time.monotonic()
                runs += tick()
                if time.monotonic() > load_done_by:
                    with engine.connect() as connection:
                        open_events = connection.execute(
                            sa.select(sa.func.count()).where(
                                table.c.cmms_system_id == "bench",
                                table.c.processing_status != "processed",
                            )
                        ).scalar()
                    if not open_events or time.monotonic() > settle_deadline:
                        break
                time.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - started)))
            e2e_load = summarize("e2e", queue.get())
            process.join()

        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    table.c.event_id,
                    table.c.processing_status,
                    table.c.received_at,
                    table.c.processed_at,
                ).where(table.c.cmms_system_id == "bench")
            ).all()
        by_id = {row.event_id: row for row in rows}
        accepted = [r for r in e2e_load["ok"] if r[3] == "accepted"]
        processed = [by_id[r[0]] for r in accepted if r[0] in by_id]
        latencies = [
            (row.processed_at - row.received_at).total_seconds()
            for row in processed
            if row.processing_status == "processed"
        ]
        events = lake.read(["silver", "maintenance_events"], columns=["event_id"])
        counts = events["event_id"].value_counts()
        in_silver = set(counts.index)
        lost = lost_ack + sum(
            1
            for r in accepted
            if r[0] not in by_id
            or by_id[r[0]].processing_status != "processed"
            or r[0] not in in_silver
        )
        duplicated = int((counts > 1).sum())
        # The effect: each work order shows the status of its newest event.
        newest: dict[str, tuple[str, str]] = {}
        for r in accepted:
            if r[4] not in newest or r[5] > newest[r[4]][0]:
                newest[r[4]] = (r[5], CANONICAL[r[6]])
        silver_rows = lake.read(["silver", "work_orders"])
        shown = dict(zip(silver_rows["external_id"], silver_rows["status"], strict=True))
        wrong = sum(1 for record, (_, status) in newest.items() if shown.get(record) != status)
        lost += wrong
        print(
            f"checks: {lost_ack} acknowledged but not stored, {len(accepted) - len(latencies)} "
            f"not processed, {wrong} work orders not at their newest event's status, "
            f"{duplicated} events in silver twice",
            flush=True,
        )
        e2e_p50, e2e_p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        minutes = e2e_load["elapsed"] / 60
        print(
            f"e2e   : {len(accepted)} events ({len(accepted) / minutes:,.0f}/min) in {runs} "
            f"runs; receipt -> processed p50 {e2e_p50:.2f} s, p95 {e2e_p95:.2f} s, max "
            f"{max(latencies, default=float('nan')):.2f} s; {len(silver_rows)} work orders in "
            f"silver; sensor tick every {TICK_SECONDS:.0f} s",
            flush=True,
        )
        print(
            f"ack_rps={ack['rps']:.0f} ack_p99_ms={ack['p99_ms']:.1f} e2e_p95_s={e2e_p95:.2f} "
            f"lost={lost} duplicated={duplicated}"
        )
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

"""Bronze extraction throughput: work orders from the Maximo contract server into Delta.

    python benchmarks/extract.py [--quick]

Runs the same code path as the ``bronze/<connection>/work_orders`` asset (``extract_to_lake``
over ``MaximoConnector.read_work_orders``, page size 1,000, one Delta commit per page) at
10,000 and 100,000 rows (``--quick``: 2,000 and 10,000; ``--sizes`` for others), each in a
fresh process so peak RSS is per size. The contract server runs in a process of its own,
which also seeds its SQLite file (streamed, one transaction), so the extracting process
holds neither the source data nor the server. Peak RSS (``ru_maxrss``) is taken when the
extraction returns, before the row count is checked. The contract server re-filters and
re-sorts its whole table for every page; here it keeps the sorted result of a query for the
following pages (same ``oslc.where``), so the figures measure the extractor rather than the
test double. Each size's line also gives the CPU seconds of the extracting process (all its
threads) and of the server process while it served, which the load of a shared machine
does not change as much as the wall-clock figures. Last line:
``extract_records_per_s=<N> peak_rss_mb=<R> pages=<P>`` for the largest size.
"""

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE_SIZE = 1000


def seed_bulk(db_path: Path, count: int) -> None:
    """``count`` work orders in one transaction; every 7 share a change second. Rows are
    generated as they are inserted, so seeding holds one row at a time."""
    import sqlite3
    from collections.abc import Iterator

    from integration_platform_tests.contract_servers.maximo import (
        FIRST_ROWSTAMP,
        MaximoStore,
        rest_id,
    )
    from integration_platform_tests.contract_servers.seed import maximo_date

    MaximoStore(db_path)
    start = datetime(2026, 1, 5, tzinfo=UTC)

    def rows() -> Iterator[tuple[str, str, int, str]]:
        for index in range(count):
            wonum, site = str(100000 + index), "BEDFORD" if index % 3 else "NASHUA"
            record = {
                "wonum": wonum,
                "siteid": site,
                "orgid": "EAGLENA",
                "description": f"Replace bearing on pump P-{index % 500}",
                "status": "APPR",
                "worktype": "CM",
                "wopriority": index % 4 + 1,
                "assetnum": str(11000 + index % 500),
                "lead": "JONES",
                "changedate": maximo_date(start + timedelta(seconds=index // 7)),
            }
            yield ("workorder", rest_id([wonum, site]), FIRST_ROWSTAMP + index, json.dumps(record))

    with sqlite3.connect(db_path) as db:
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows())


def cached_server(db_path: Path) -> Any:
    """The contract server, keeping each query's filtered and sorted records between pages."""
    from integration_platform_tests.contract_servers import maximo as contract

    cache: dict[tuple[str, str], list[dict[str, Any]]] = {}
    server = contract.MaximoContractServer(db_path=db_path)
    store_all = server.store.all
    order_records = contract.order_records

    loaded: dict[str, list[dict[str, Any]]] = {}

    def all_records(table: str) -> list[dict[str, Any]]:
        if table not in loaded:
            loaded[table] = store_all(table)
        return loaded[table]

    def cached_order(records: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
        key = (order, str(len(records)))
        if key not in cache:
            cache.clear()
            cache[key] = order_records(records, order)
        return cache[key]

    server.store.all = all_records  # type: ignore[method-assign]
    contract.order_records = cached_order
    return server


def serve(db_path: Path, count: int, urls: Any, stop: Any, cpu: Any) -> None:
    """Seed and serve in a process of their own, so the extractor's RSS is measured alone;
    ``cpu`` receives the CPU seconds spent serving (seeding excluded)."""
    seed_bulk(db_path, count)
    server = cached_server(db_path).start()
    started = time.process_time()
    urls.put(server.base_url)
    stop.wait()
    server.stop()
    cpu.put(time.process_time() - started)


def run_one(count: int) -> dict[str, Any]:
    import dagster as dg

    from integration_platform.connectors.cmms.maximo import MaximoConnector
    from integration_platform.connectors.extract import extract_to_lake
    from integration_platform.lake import DeltaLake

    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "maximo.db"
        spawn = multiprocessing.get_context("spawn")
        urls, stop, server_cpu = spawn.Queue(), spawn.Event(), spawn.Queue()
        server = spawn.Process(
            target=serve, args=(db_path, count, urls, stop, server_cpu), daemon=True
        )
        server.start()
        try:
            connector = MaximoConnector(
                base_url=urls.get(timeout=600),
                api_key="contract-api-key",
                requests_per_second=0,
                page_size=PAGE_SIZE,
            )
            lake = DeltaLake(uri=str(Path(folder) / "lake"))
            started, cpu_started = time.perf_counter(), time.process_time()
            result = extract_to_lake(
                lambda since: connector.read_work_orders(since=since, page_size=PAGE_SIZE),
                lake,
                ["bronze", "maximo", "work_orders"],
                run_id="benchmark",
            )
            seconds = time.perf_counter() - started
            extract_cpu = time.process_time() - cpu_started
            peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            stored = len(lake.read(["bronze", "maximo", "work_orders"], columns=["wonum"]))
            stop.set()
            serve_cpu = server_cpu.get(timeout=30)
        finally:
            stop.set()
            server.join(timeout=30)
    del dg
    assert stored == count == result.rows, (stored, count, result.rows)
    return {
        "rows": count,
        "seconds": round(seconds, 2),
        "records_per_s": int(count / seconds),
        "pages": result.pages,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "extract_cpu_s": round(extract_cpu, 2),
        "server_cpu_s": round(serve_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 and 10,000 rows")
    parser.add_argument(
        "--sizes", help="comma-separated row counts instead (e.g. 10000,100000,300000)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    else:
        sizes = [2_000, 10_000] if args.quick else [10_000, 100_000]
    last: dict[str, Any] = {}
    for size in sizes:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(size)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        last = json.loads(output.strip().splitlines()[-1])
        print(
            f"{size:>7} work orders: {last['seconds']:>6.2f} s, {last['records_per_s']:>7} "
            f"records/s, {last['pages']} pages, peak RSS {last['peak_rss_mb']} MB, CPU "
            f"{last['extract_cpu_s']:.2f} s extracting + {last['server_cpu_s']:.2f} s serving"
        )
    print(
        f"extract_records_per_s={last['records_per_s']} peak_rss_mb={last['peak_rss_mb']} "
        f"pages={last['pages']}"
    )


if __name__ == "__main__":
    main()

"""CLI lists: the first page and ``--all -o json`` of ``mno tenant list`` over 100,000
tenants on SQLite, against a raw sqlite3 floor measured in the same run.

Each command runs as its own subprocess under a small wrapper process, which reports the
wall time, the CPU time (user + system; steadier than wall time on a busy host) and the
peak RSS of the command (``resource.getrusage(RUSAGE_CHILDREN)``).

- first page (default limit, 100 rows, table off a terminal): goal <= 0.3 s of query and
  render, timed in process once imports are done (the subprocess figures include the
  start-up, shown apart as ``mno tenant list --help``);
- ``--all -o json``: goal <= 3 s and <= 150 MB peak RSS.

The floors: python with sqlite3 selecting the same columns (``ORDER BY key``, ``LIMIT 100``
for the page, every row for ``--all``) and writing them with ``json.dumps``.

Usage: python bench/cli_lists.py [--tenants 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.perf_counter() - start
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps([wall, use.ru_utime + use.ru_stime, use.ru_maxrss]))
"""

FLOOR = """
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
sql = "SELECT * FROM tenant WHERE key != 'system' ORDER BY key" + sys.argv[2]
cur = conn.execute(sql)
names = [d[0] for d in cur.description]
sys.stdout.write(json.dumps([dict(zip(names, row)) for row in cur]) + "\\n")
"""


def _measure(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float, float]:
    """(median wall seconds, median CPU seconds, max peak RSS in MB) of ``cmd``."""
    walls, cpus, peaks = [], [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", WRAPPER, *cmd], env=env, check=True, capture_output=True
        ).stdout
        wall, cpu, rss_kb = json.loads(out)
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(rss_kb / 1024)
    return statistics.median(walls), statistics.median(cpus), max(peaks)


def _in_process_page(url: str, runs: int) -> float:
    """Median seconds of the first page's query and render alone, in this process (the
    imports and the store's first connection done before timing)."""
    import io
    from contextlib import redirect_stdout

    from mno.cli import output
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    columns = ["key", "name", "tier", "status", "parent", "currency", "domains"]
    samples = []
    for _ in range(runs + 1):
        sink = io.StringIO()
        start = time.perf_counter()
        with session_scope(url, write=False) as s:
            page = tenants.page_tenants(s)
        with redirect_stdout(sink):
            output.render(page.rows, "table", columns=columns)
        samples.append(time.perf_counter() - start)
        assert sink.getvalue().count("\n") == 101
    return statistics.median(samples[1:])


def _seed(url: str, count: int) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    step = 10_000
    for first in range(0, count, step):
        items = [
            {"key": f"tenant-{i:06d}", "name": f"Tenant {i}"}
            for i in range(first, min(first + step, count))
        ]
        with session_scope(url) as s:
            tenants.create_many(s, items)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lists.db"
        url = f"sqlite:///{path}"
        start = time.perf_counter()
        _seed(url, args.tenants)
        print(
            f"seeded {args.tenants:,} tenants (tenants.create_many) in "
            f"{time.perf_counter() - start:.1f} s"
        )

        env = {k: v for k, v in os.environ.items() if not k.startswith("MNO_")}
        env |= {"MNO_HOME": tmp, "NO_COLOR": "1", "MNO_DB_URL": url}
        mno = [sys.executable, "-m", "mno", "tenant", "list"]
        py = sys.executable
        runs = args.runs

        help_s, help_cpu, _ = _measure([*mno, "--help"], env, runs)
        page_s, page_cpu, page_mb = _measure(mno, env, runs)
        floor_s, floor_cpu, floor_mb = _measure(
            [py, "-c", FLOOR, str(path), " LIMIT 100"], env, runs
        )
        work_s = _in_process_page(url, runs)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"start-up (mno tenant list --help)  {help_s:6.2f} s wall, {help_cpu:5.2f} s CPU")
        print(
            f"first page (mno tenant list)       {page_s:6.2f} s wall, {page_cpu:5.2f} s CPU, "
            f"peak {page_mb:6.1f} MB"
        )
        print(
            f"floor: sqlite3 LIMIT 100 + json    {floor_s:6.2f} s wall, {floor_cpu:5.2f} s CPU, "
            f"peak {floor_mb:6.1f} MB"
        )
        print(
            f"  ratio {page_s / floor_s:.2f} (wall), {page_cpu / floor_cpu:.2f} (CPU); "
            f"start-up is {help_cpu / page_cpu:.0%} of the CPU time"
        )
        print(
            f"  query+render of the first page, in process: {work_s * 1000:.1f} ms "
            f"(goal <= 0.3 s: {_verdict(work_s <= 0.3)})"
        )

        all_s, all_cpu, all_mb = _measure([*mno, "--all", "-o", "json"], env, max(3, runs // 2))
        fl_s, fl_cpu, fl_mb = _measure([py, "-c", FLOOR, str(path), ""], env, 3)
        print(
            f"--all -o json ({args.tenants:,} rows) {all_s:6.2f} s wall, {all_cpu:5.2f} s CPU, "
            f"peak {all_mb:6.1f} MB"
        )
        print(
            f"floor: sqlite3 all rows + json     {fl_s:6.2f} s wall, {fl_cpu:5.2f} s CPU, "
            f"peak {fl_mb:6.1f} MB"
        )
        print(
            f"  ratio {all_s / fl_s:.2f} (wall), {all_cpu / fl_cpu:.2f} (CPU), "
            f"{all_mb / fl_mb:.2f} (memory); goal <= 3 s: wall {_verdict(all_s <= 3.0)}, "
            f"CPU {_verdict(all_cpu <= 3.0)}; goal <= 150 MB: {_verdict(all_mb <= 150)}"
        )


if __name__ == "__main__":
    main()

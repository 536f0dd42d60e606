"""CLI latency: start-up, listing 10,000 tenants, and creating tenants per process.

Prints medians and ratios against baselines measured in the same run:

- ``mno --help`` against ``python -c "import typer"`` (goal: ratio <= 1.3);
- ``mno tenant list --all -o json`` over 10,000 tenants on SQLite (goal: <= 1.0 s);
- creating N tenants (default 1,000) with one ``mno`` process each, against the domain API
  creating the same number in one process.

Usage: python bench/cli_latency.py [--tenants 10000] [--creates 1000] [--runs 11]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(cmd: list[str], env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _seed(url: str, count: int) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    items = [{"key": f"tenant-{i:05d}", "name": f"Tenant {i}"} for i in range(count)]
    with session_scope(url) as s:
        if hasattr(tenants, "create_many"):
            tenants.create_many(s, items)
        else:  # pragma: no cover - older trees
            for item in items:
                tenants.create(s, item.pop("key"), **item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--creates", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MNO_")}
        env |= {"MNO_HOME": tmp, "NO_COLOR": "1", "MNO_ACTOR": "bench"}
        py = sys.executable

        help_s = _time([py, "-m", "mno", "--help"], env, args.runs)
        typer_s = _time([py, "-c", "import typer"], env, args.runs)
        print(f"mno --help               median {help_s * 1000:7.1f} ms")
        print(f"python -c 'import typer' median {typer_s * 1000:7.1f} ms")
        print(f"  ratio {help_s / typer_s:.2f} (goal <= 1.3)")

        url = f"sqlite:///{Path(tmp) / 'list.db'}"
        start = time.perf_counter()
        _seed(url, args.tenants)
        seed_s = time.perf_counter() - start
        list_env = env | {"MNO_DB_URL": url}
        list_s = _time([py, "-m", "mno", "tenant", "list", "--all", "-o", "json"], list_env, 5)
        print(f"seeded {args.tenants:,} tenants through the domain API in {seed_s:.2f} s")
        print(
            f"mno tenant list --all -o json over {args.tenants:,} tenants: median {list_s:.3f} s "
            f"(goal <= 1.0 s; {list_s / help_s:.1f}x mno --help)"
        )

        url2 = f"sqlite:///{Path(tmp) / 'create.db'}"
        create_env = env | {"MNO_DB_URL": url2}
        subprocess.run(
            [py, "-m", "mno", "tenant", "list"],
            env=create_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        start = time.perf_counter()
        for i in range(args.creates):
            subprocess.run(
                [py, "-m", "mno", "tenant", "create", f"proc-{i:05d}", "-o", "json"],
                env=create_env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        per_process_s = time.perf_counter() - start

        from mno.store.db import session_scope
        from mno.tenancy import tenants

        url3 = f"sqlite:///{Path(tmp) / 'api.db'}"
        with session_scope(url3) as s:
            tenants.ensure_system(s)
        start = time.perf_counter()
        for i in range(args.creates):
            with session_scope(url3) as s:
                tenants.create(s, f"api-{i:05d}")
        api_s = time.perf_counter() - start
        print(
            f"create {args.creates:,} tenants, one mno process each: {per_process_s:.2f} s "
            f"({per_process_s / args.creates * 1000:.1f} ms/tenant)"
        )
        print(
            f"create {args.creates:,} tenants, domain API, one transaction each: {api_s:.2f} s "
            f"({api_s / args.creates * 1000:.2f} ms/tenant)"
        )
        print(f"  ratio per-process / API {per_process_s / api_s:.1f}")


if __name__ == "__main__":
    main()

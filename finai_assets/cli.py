"""`finai run`: materialize the whole graph on the configured data and print a summary."""

import argparse
import os
import sys
import time

import dagster as dg


def _run(partitions: list[str]) -> int:
    from finai_assets.definitions import defs

    start = time.perf_counter()
    d = defs()
    graph = d.resolve_asset_graph()
    job = d.resolve_implicit_global_asset_job_def()
    keys = graph.materializable_asset_keys
    unpartitioned = [k for k in keys if not graph.get(k).is_partitioned]
    partitioned = [k for k in keys if graph.get(k).is_partitioned]
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    rows, failed = [], False
    for partition in [None, *partitions]:
        selection = unpartitioned if partition is None else partitioned
        t0 = time.perf_counter()
        result = job.execute_in_process(
            instance=instance, asset_selection=selection, partition_key=partition, raise_on_error=False
        )
        failed |= not result.success
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            count = mat.metadata.get("dagster/row_count")
            rows.append((mat.asset_key.to_user_string(), partition or "-", count.value if count else ""))
        for ev in result.get_asset_check_evaluations():
            rows.append((f"  check {ev.check_name}", partition or "-", "passed" if ev.passed else "FAILED"))
            failed |= not ev.passed
        print(f"[{partition or 'unpartitioned'}] {'ok' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f}s", flush=True)
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'asset':<{width}}{'partition':<11}rows / result")
    for name, part, value in rows:
        print(f"{name:<{width}}{part:<11}{value}")
    print(f"\nmake run: {'FAILED' if failed else 'success'}; wall time {time.perf_counter() - start:.1f}s")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finai")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every asset for every dataset partition")
    run.add_argument("--partitions", nargs="*", default=["v2", "v3", "v4"])
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args.partitions)
    return 2


if __name__ == "__main__":
    sys.exit(main())

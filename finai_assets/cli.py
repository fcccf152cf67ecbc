"""`finai run`: materialize the whole graph on the configured data and print a summary.
`finai audit verify`: check the audit log's HMAC chain, its anchor and optionally a mirrored head.
`finai drop-demo`: write the next demo production month into data/production/incoming/."""

import argparse
import os
import sys
import time
from pathlib import Path


def _run(partitions: list[str]) -> int:
    import dagster as dg

    from finai_assets.definitions import defs
    from finai_assets.defs.partitions import dataset_partitions

    start = time.perf_counter()
    d = defs()
    graph = d.resolve_asset_graph()
    job = d.resolve_implicit_global_asset_job_def()
    keys = graph.materializable_asset_keys
    by_dataset = {k for k in keys if graph.get(k).partitions_def == dataset_partitions}
    monthly = sorted(k.to_user_string() for k in keys if graph.get(k).is_partitioned and k not in by_dataset)
    after = {k for k in keys - by_dataset if graph.get(k).partitions_def is None and
             any(u in by_dataset for u in graph.get(k).parent_keys)}  # champion_model: after the promotion decisions
    phases = [(None, sorted(keys - by_dataset - after - {dg.AssetKey(m) for m in monthly}))]
    phases += [(p, sorted(by_dataset)) for p in partitions] + [(None, sorted(after))]
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    rows, failed = [], False
    for partition, selection in phases:
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
            warning = ev.severity == dg.AssetCheckSeverity.WARN
            rows.append((f"  check {ev.check_name}", partition or "-", "passed" if ev.passed else ("WARNING" if warning else "FAILED")))
            failed |= not ev.passed and not warning
        print(f"[{partition or 'unpartitioned'}] {'ok' if result.success else 'FAILED'} in {time.perf_counter() - t0:.1f}s", flush=True)
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'asset':<{width}}{'partition':<11}rows / result")
    for name, part, value in rows:
        print(f"{name:<{width}}{part:<11}{value}")
    print(f"\nmonthly production assets wait for drops ({', '.join(monthly)}): `make drop-demo`, then `make ui`")
    print(f"\nmake run: {'FAILED' if failed else 'success'}; wall time {time.perf_counter() - start:.1f}s")
    return 1 if failed else 0


def _audit_verify(log_path: Path, expected: tuple[int, str] | None) -> int:
    from finai_assets.lib.audit import AuditKeyError, AuditLog, audit_key

    try:
        log = AuditLog(log_path, audit_key())
    except AuditKeyError as err:
        print(f"finai audit verify: {err}", file=sys.stderr)
        return 2
    if not log_path.exists() and not log.anchor_path.exists():  # a lone anchor means the log was deleted
        print(f"no audit log at {log_path}: nothing has been audited yet (or pass --path)", file=sys.stderr)
        return 2
    result = log.verify(expected_head=expected)
    print(f"audit log {log_path}: {result.entries} entries, head seq {result.head_seq} hash {result.head_hash}")
    if expected:
        print(f"expected head: seq {expected[0]} hash {expected[1]}")
    for problem in result.problems:
        print(f"  problem: {problem}")
    print("ok: the chain verifies" if result.ok else f"FAILED: {len(result.problems)} problem(s)")
    return 0 if result.ok else 1


def _drop_demo(data_dir: Path, customers: int, seed: int, amount_scale: float) -> int:
    from finai_assets.lib.inbox import Folders, drop_demo

    folders = Folders(data_dir / "production")
    month, files = drop_demo(folders, customers, seed, amount_scale)
    print(f"demo production month {month:%Y-%m} written to {folders.incoming}:")
    for path in files:
        print(f"  {path.name}")
    print("the production_drop_sensor picks it up on its next tick (`make ui` runs the daemon)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finai")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every asset for every dataset partition")
    run.add_argument("--partitions", nargs="*", default=["v2", "v3", "v4"])
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="verify the HMAC chain, its anchor and optionally an expected head")
    default_path = Path(os.environ.get("FINAI_DATA_DIR") or "data") / "governance" / "audit_log.duckdb"
    verify.add_argument("--path", type=Path, default=default_path, help=f"the audit log (default {default_path})")
    verify.add_argument("--expected-seq", type=int, help="a head seq mirrored elsewhere (e.g. materialization metadata)")
    verify.add_argument("--expected-hash", help="the entry hash mirrored with --expected-seq")
    demo = sub.add_parser("drop-demo", help="write the next demo production month into <data>/production/incoming/")
    demo.add_argument("--customers", type=int, default=20_000, help="the embedded sample's customer count (default 20000)")
    demo.add_argument("--seed", type=int, default=2016, help="the embedded sample's seed (default 2016)")
    demo.add_argument("--amount-scale", type=float, default=1.0, help="scale card amounts (> 1 makes a drifting month)")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args.partitions)
    if args.command == "drop-demo":
        return _drop_demo(Path(os.environ.get("FINAI_DATA_DIR") or "data"), args.customers, args.seed, args.amount_scale)
    if (args.expected_seq is None) != (args.expected_hash is None):
        parser.error("--expected-seq and --expected-hash go together; pass both or neither")
    expected = None if args.expected_seq is None else (args.expected_seq, args.expected_hash)
    return _audit_verify(args.path, expected)


if __name__ == "__main__":
    sys.exit(main())

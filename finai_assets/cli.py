"""`finai run`: materialize the whole graph on the configured data, one line per finished step, and a summary.
`finai ui`: the Dagster UI and daemon with the thread rule of `finai run`.
`finai audit verify`: check the audit log's HMAC chain, its anchor and optionally a mirrored head.
`finai drop-demo`: write the next demo production month into data/production/incoming/."""

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path


# Light steps run one thread each; a training step in the `heavy` pool raises its own thread
# count to every core (the pool lets one such step run at a time), so concurrent runs overlap
# their light steps without oversubscribing the machine.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
KEY_METRICS = ("dagster/row_count", "val_composite", "mean_binary_test_auc", "decision", "champion_candidate", "checkpoint_sha256")


def _execute(job, selection: list[str], partition: str | None, run_id: str) -> bool:
    """One run of `job`: its events go to the instance (the run's log in the UI); the terminal
    shows what the parent reads back from there. Whether the run succeeded."""
    import dagster as dg

    return job.execute_in_process(
        instance=dg.DagsterInstance.get(), asset_selection=[dg.AssetKey(a) for a in selection], partition_key=partition,
        run_id=run_id, raise_on_error=False, tags={"finai/launched_by": "finai run"},
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
    ).success


def _execute_stages(stages: list[tuple[list[str], bool, str]], partition: str | None, heavy_lock) -> None:
    """A partition's runs in order, in a child process, stopping at the first that fails. A run of
    `heavy` steps holds `heavy_lock`, so runs of other partitions never wait inside Dagster for the
    pool (Dagster 1.13 polls a pool claim without sleeping: a waiting run burns a core)."""
    from finai_assets.definitions import defs

    job = defs().resolve_implicit_global_asset_job_def()
    for selection, heavy, run_id in stages:
        with heavy_lock if heavy else contextlib.nullcontext():
            if not _execute(job, selection, partition, run_id):
                return


def _stages(graph, keys: set) -> list[tuple[list[str], bool]]:
    """`keys` cut into runs at the heavy pool: a light asset below at most c heavy ones goes in
    stage 2c, a heavy one in stage 2c+1; (assets, heavy) per stage, in order."""
    heavy = {k: "heavy" in graph.get(k).pools for k in keys}
    above: dict = {}
    for key in (k for k in graph.toposorted_asset_keys if k in keys):
        above[key] = max((above[p] + heavy[p] for p in graph.get(key).parent_keys if p in keys), default=0)
    stages: dict[int, list[str]] = {}
    for key, count in above.items():
        stages.setdefault(2 * count + heavy[key], []).append(key.to_user_string())
    return [(sorted(stages[s]), s % 2 == 1) for s in sorted(stages)]


class _RunWatcher:
    """Follows runs through the instance's event log and prints one line per finished step,
    user log lines (training progress: one per epoch), and warnings and errors in full."""

    def __init__(self, instance, start: float):
        self.instance, self.start = instance, start
        self.cursors: dict[str, str | None] = {}
        self.labels: dict[str, str] = {}
        self.selections: dict[str, list[str]] = {}
        self.steps: dict[tuple[str, str], dict] = {}
        self.summary: list[tuple[str, str, str]] = []
        self.failed = False

    def watch(self, run_id: str, label: str, selection: list[str]) -> None:
        self.cursors[run_id], self.labels[run_id], self.selections[run_id] = None, label, selection

    def not_run(self, run_ids: list[str]) -> None:
        """A line for each planned run that never started (an earlier run of its partition failed)."""
        for run_id in run_ids:
            if self.instance.get_run_by_id(run_id) is None:
                self._print(f"skip            [{self.labels[run_id]}] {', '.join(self.selections[run_id])}: an earlier run failed")

    def poll(self) -> None:
        for run_id in list(self.cursors):
            while True:
                conn = self.instance.get_records_for_run(run_id, cursor=self.cursors[run_id], limit=500)
                for record in conn.records:
                    self._on(run_id, record.event_log_entry)
                self.cursors[run_id] = conn.cursor
                if not conn.has_more:
                    break

    def _print(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.0f}s] {text}", flush=True)

    def _on(self, run_id: str, entry) -> None:
        import logging

        import dagster as dg

        part = self.labels[run_id]
        event = entry.dagster_event
        if event is None:  # a user log line: the step's own progress
            if entry.level >= logging.INFO:
                self._print(f"{entry.step_key or '-'} [{part}] {entry.user_message}")
            return
        step = self.steps.setdefault((run_id, event.step_key or ""), {"mats": [], "checks": []})
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            step["t0"] = entry.timestamp
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            step["mats"].append(mat)
            value = next((mat.metadata[k].value for k in KEY_METRICS if k in mat.metadata), "")
            self.summary.append((mat.asset_key.to_user_string(), part, _short(value)))
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            warning = ev.severity == dg.AssetCheckSeverity.WARN
            verdict = "passed" if ev.passed else ("WARNING" if warning else "FAILED")
            step["checks"].append(f"{ev.check_name} {verdict}")
            self.summary.append((f"  check {ev.check_name}", part, verdict))
            self.failed |= not ev.passed and not warning
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            seconds = entry.timestamp - step.get("t0", entry.timestamp)
            values = [f"{m.asset_key.to_user_string()} {_short(next((m.metadata[k].value for k in KEY_METRICS if k in m.metadata), ''))}".strip()
                      for m in step["mats"]] or [event.step_key]
            status = "ok" if kind == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
            checks = f" | {', '.join(step['checks'])}" if step["checks"] else ""
            self._print(f"{status:6} {seconds:6.1f}s  [{part}] {'; '.join(values)}{checks}")
            if kind == dg.DagsterEventType.STEP_FAILURE:
                self.failed = True
                print(event.event_specific_data.error.to_string(), flush=True)
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            self._print(f"skip            [{part}] {event.step_key}: an upstream step failed or a blocking check did not pass")
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            self.failed = True
            self._print(f"run [{part}] FAILED: {entry.message}")
        elif entry.level >= logging.WARNING:
            self._print(f"{logging.getLevelName(entry.level)} [{part}] {entry.message}")


def _short(value) -> str:
    return f"{value:,}" if isinstance(value, int) else (f"{value:.4f}" if isinstance(value, float) else str(value)[:40])


def _run(partitions: list[str], parallel: int) -> int:
    import multiprocessing
    import uuid

    import dagster as dg

    from finai_assets.definitions import defs
    from finai_assets.defs.partitions import dataset_partitions

    if not os.environ.get("DAGSTER_HOME"):
        print("finai run: set DAGSTER_HOME to the instance folder (`make run` uses .dagster/ in the repository)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    graph = defs().resolve_asset_graph()
    keys = graph.materializable_asset_keys
    by_dataset = {k for k in keys if graph.get(k).partitions_def == dataset_partitions}
    monthly = {k for k in keys if graph.get(k).is_partitioned and k not in by_dataset}
    after = {k for k in keys - by_dataset if graph.get(k).partitions_def is None and
             any(u in by_dataset for u in graph.get(k).parent_keys)}  # champion_model: after the promotion decisions
    phases = [[(None, _stages(graph, keys - by_dataset - after - monthly))],
              [(p, _stages(graph, by_dataset)) for p in partitions], [(None, _stages(graph, after))]]
    instance = dg.DagsterInstance.get()
    watcher = _RunWatcher(instance, start)
    os.environ.update(ONE_THREAD_ENV)  # inherited by the child processes
    spawn = multiprocessing.get_context("spawn")
    heavy_lock = spawn.Lock()
    print(f"finai run: {len(partitions)} dataset partition(s), up to {parallel} at once; "
          "Dagster's own events are in each run's log (make ui)", flush=True)
    running: list = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for phase in phases:
            pending = list(phase)
            while pending or running:
                while pending and len(running) < parallel:
                    partition, stages = pending.pop(0)
                    planned = [(selection, heavy, str(uuid.uuid4())) for selection, heavy in stages]
                    for selection, _, run_id in planned:
                        watcher.watch(run_id, partition or "-", selection)
                    proc = spawn.Process(target=_execute_stages, args=(planned, partition, heavy_lock), daemon=True)
                    proc.start()
                    running.append((proc, planned))
                time.sleep(1.0)
                watcher.poll()
                for proc, planned in [r for r in running if not r[0].is_alive()]:
                    proc.join()
                    watcher.poll()
                    watcher.failed |= proc.exitcode != 0
                    watcher.not_run([run_id for _, _, run_id in planned])
                    running.remove((proc, planned))
            if watcher.failed:
                break  # later phases need this one's assets
    finally:
        for proc, _ in running:
            proc.terminate()
    rows = watcher.summary
    width = max(len(r[0]) for r in rows) + 2 if rows else 10
    print(f"\n{'asset':<{width}}{'partition':<11}rows / result")
    for name, part, value in rows:
        print(f"{name:<{width}}{part:<11}{value}")
    months = ", ".join(sorted(k.to_user_string() for k in monthly))
    print(f"\nmonthly production assets wait for drops ({months}): `make drop-demo`, then `make ui`")
    print(f"\nmake run: {'FAILED' if watcher.failed else 'success'}; wall time {time.perf_counter() - start:.1f}s")
    return 1 if watcher.failed else 0


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


def _ui(port: int) -> int:
    """`dagster dev` with the same thread rule as `finai run` (light steps one thread each)."""
    os.environ.update(ONE_THREAD_ENV)
    dagster = str(Path(sys.executable).with_name("dagster"))
    os.execv(dagster, [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finai")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every asset for every dataset partition")
    run.add_argument("--partitions", nargs="*", default=["v2", "v3", "v4"])
    run.add_argument("--parallel", type=int, default=3, help="dataset partitions materialized at once (default 3)")
    ui = sub.add_parser("ui", help="the Dagster UI and daemon (dagster dev) on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
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
        return _run(args.partitions, max(1, args.parallel))
    if args.command == "ui":
        return _ui(args.port)
    if args.command == "drop-demo":
        return _drop_demo(Path(os.environ.get("FINAI_DATA_DIR") or "data"), args.customers, args.seed, args.amount_scale)
    if (args.expected_seq is None) != (args.expected_hash is None):
        parser.error("--expected-seq and --expected-hash go together; pass both or neither")
    expected = None if args.expected_seq is None else (args.expected_seq, args.expected_hash)
    return _audit_verify(args.path, expected)


if __name__ == "__main__":
    sys.exit(main())

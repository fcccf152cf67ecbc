"""Plumbing shared by the benchmarks: /proc memory and CPU readings, staged timers, the guarded
child process, halve-and-retry, the v4 input build (run as `python benchmarks/benchlib.py
--build-step ...` children), the design matrix, the LightGBM-baselines child, and result writing
with the git SHA and machine description. See benchmarks/README.md."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VERSION = "v4"  # the recipe every built input uses
DISTURBED_CORES = 0.25  # other processes' mean CPU use during a measurement above which it is flagged


def _proc_kib(path: str, field: str) -> int | None:
    """A `Field:  N kB` line of a /proc file, in KiB."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    return _proc_kib(f"/proc/{pid}/status", field)


def rss_gib(pid: int | str = "self") -> float:
    return (_status_kib("VmRSS", pid) or 0) / 1024**2


def hwm_gib() -> float:
    """Resident high-water mark of this process (VmHWM), GiB."""
    return (_status_kib("VmHWM") or 0) / 1024**2


def peaks() -> dict:
    """This process's peak memory, as every child reports it."""
    return {
        "peak_rss_gib": round(hwm_gib(), 3),
        "ru_maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
    }


class Stages:
    """Times named stages; appends each start and end to a progress file, so that a child killed
    from outside still tells which stage it was in."""

    def __init__(self, progress: Path):
        self.progress = progress
        self.seconds: dict[str, dict] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        with open(self.progress, "a") as fh:
            fh.write(json.dumps({"stage": name, "event": "start", "rss_gib": round(rss_gib(), 3)}) + "\n")
        t = time.perf_counter()
        yield
        d = time.perf_counter() - t
        self.seconds[name] = {"seconds": round(d, 3), "rss_after_gib": round(rss_gib(), 3), "hwm_after_gib": round(hwm_gib(), 3)}
        with open(self.progress, "a") as fh:
            fh.write(json.dumps({"stage": name, "event": "end", "seconds": round(d, 3), "rss_gib": round(rss_gib(), 3)}) + "\n")


def logger(workdir: Path, kind: str, t0: float, marks: list):
    """A training loop's `log` callback: keeps (seconds since t0, message) and appends it to the
    child's progress file."""
    def log(msg: str) -> None:
        marks.append((time.perf_counter() - t0, msg))
        with open(workdir / f"{kind}_progress.jsonl", "a") as fh:
            fh.write(json.dumps({"stage": "log", "event": "log", "t": round(marks[-1][0], 2), "msg": msg}) + "\n")
    return log


def write_record(workdir: Path, kind: str, out: dict, default=list) -> None:
    """A child's result record, read back by `run_guarded`."""
    (workdir / f"{kind}.json").write_text(json.dumps(out, default=default))


def write_parquet(frame, path: Path) -> None:
    """Written under a staging name, renamed when whole: a child killed meanwhile leaves the last one."""
    staging = path.with_name("." + path.name)
    frame.write_parquet(staging)
    staging.replace(path)


def git_sha() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        return r.stdout.strip() or "uncommitted"
    except (subprocess.CalledProcessError, OSError):
        return "uncommitted"


def source_state() -> dict:
    """Which library code ran: the uncommitted changes under finai_assets/ (if any)."""
    try:
        r = subprocess.run(["git", "status", "--porcelain", "--", "finai_assets"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = [line[3:] for line in r.stdout.splitlines()]
    except (subprocess.CalledProcessError, OSError):
        dirty = None
    return {"root": str(ROOT), "finai_assets_dirty": dirty}


def lib_hash() -> str:
    """sha256 (16 hex) over finai_assets/lib's Python sources: every child of one result must have
    run the same code."""
    h = hashlib.sha256()
    for f in sorted((ROOT / "finai_assets" / "lib").rglob("*.py")):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _busy_ticks() -> int:
    """Busy clock ticks of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _last_stage(progress: Path | None) -> str | None:
    """The stage a killed child was in (started, never ended)."""
    if progress is None or not progress.exists():
        return None
    open_stages: dict[str, dict] = {}
    for line in progress.read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] == "start":
            open_stages[rec["stage"]] = rec
        else:
            open_stages.pop(rec["stage"], None)
    return next(iter(open_stages), None)


def run_guarded(cmd: list[str], result: Path, max_rss_gib: float, timeout_min: float, progress: Path | None = None) -> dict:
    """Run a child (a fresh interpreter writing its record to `result`), polling its resident
    memory and time from outside and killing it past either guard. On success its record plus
    the observed peak and CPU use (the child's and other processes', in cores: > ~0.2 others
    means the timing was disturbed); else `ok: False` with the reason, the stage it was in and
    its stderr tail."""
    result.unlink(missing_ok=True)
    if progress is not None:
        progress.unlink(missing_ok=True)
    start = time.monotonic()
    busy0 = _busy_ticks()
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    observed, reason, child_ticks = 0.0, None, 0
    while proc.poll() is None:
        rss = rss_gib(proc.pid)
        observed = max(observed, rss)
        child_ticks = _cpu_ticks(proc.pid) or child_ticks
        if rss > max_rss_gib:
            reason = f"resident memory {rss:.2f} GiB passed the --max-rss-gib guard of {max_rss_gib} GiB"
        elif time.monotonic() - start > timeout_min * 60:
            reason = f"ran past the --timeout-min limit of {timeout_min} min"
        if reason:
            proc.kill()  # the child this function started, by its own handle
            proc.wait()
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    hz = os.sysconf("SC_CLK_TCK")
    # the child's last poll is <= 0.2 s before its end; the parent's own polling is included
    other_cores = round(max(0.0, (_busy_ticks() - busy0 - child_ticks) / hz / max(elapsed, 1e-9)), 2)
    stderr = proc.stderr.read() if proc.stderr else ""
    if reason is None and proc.returncode != 0:
        reason = f"exit status {proc.returncode}" + (" (killed: SIGKILL, likely the kernel OOM killer)" if proc.returncode == -9 else "")
    if reason is None and not result.exists():
        reason = "no result file"
    if reason:
        return {"ok": False, "reason": reason, "stage": _last_stage(progress), "elapsed_s": round(elapsed, 1),
                "observed_peak_rss_gib": round(observed, 3), "stderr_tail": stderr[-2000:],
                "timed_out": reason.startswith("ran past"), "other_cpu_cores": other_cores}
    return {**json.loads(result.read_text()), "ok": True, "observed_peak_rss_gib": round(observed, 3),
            "child_cpu_cores": round(child_ticks / hz / max(elapsed, 1e-9), 2), "other_cpu_cores": other_cores}


def inputs_workdir(stack: contextlib.ExitStack, inputs_dir: Path | None, prefix: str) -> Path:
    """`--inputs-dir` (created, kept for a later run) or a temporary folder removed with `stack`."""
    if inputs_dir:
        inputs_dir.mkdir(parents=True, exist_ok=True)
        return inputs_dir.resolve()
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))


def least_disturbed(attempt, reruns: int, label: str, threshold: float = DISTURBED_CORES) -> dict:
    """`attempt()` (a `run_guarded` record), repeated up to `reruns` more times while other
    processes' CPU use passed `threshold` cores (a run that passed its time limit while disturbed
    is repeated too, not taken as too big). The least disturbed successful record is returned with
    every attempt summarised in its `attempts`; when none succeeded, the last one."""
    attempts = []
    for i in range(1 + max(0, reruns)):
        r = attempt()
        attempts.append(r)
        if r["other_cpu_cores"] <= threshold or not (r["ok"] or r.get("timed_out")):
            break
        if i < reruns:
            what = "disturbed" if r["ok"] else f"{r['reason']} while disturbed"
            print(f"  {what} (other processes {r['other_cpu_cores']:.2f} cores); measuring {label} again ...", flush=True)
    keys = ("ok", "reason", "elapsed_s", "wall_s", "train_s", "s_per_epoch", "other_cpu_cores", "child_cpu_cores",
            "waited_for_idle_s")
    ok = [a for a in attempts if a["ok"]]
    # files a child left on disk are the last attempt's: the seeded runs are deterministic
    best = min(ok, key=lambda a: a["other_cpu_cores"]) if ok else attempts[-1]
    return best | {"attempts": [{k: a[k] for k in keys if k in a} for a in attempts]}


def wait_idle(max_s: float, window_s: float = 5.0) -> float:
    """Wait (at most max_s) until other processes use < DISTURBED_CORES cores over a window;
    returns the seconds waited."""
    hz, t0 = os.sysconf("SC_CLK_TCK"), time.monotonic()
    while True:
        b0, s0 = _busy_ticks(), _cpu_ticks(os.getpid()) or 0
        time.sleep(window_s)
        load = (_busy_ticks() - b0 - ((_cpu_ticks(os.getpid()) or 0) - s0)) / hz / window_s
        waited = time.monotonic() - t0
        if load < DISTURBED_CORES or waited >= max_s:
            return round(waited, 1)


def run_child(script: Path, kind: str, workdir: Path, extra: list[str], max_rss_gib: float, timeout_min: float,
              wait_idle_min: float = 0.0, flag: str = "--child") -> dict:
    """`script flag kind --workdir workdir *extra` in a fresh interpreter, after waiting (at most
    wait_idle_min) for the machine to go quiet; memory and time guarded by `run_guarded`."""
    waited = wait_idle(wait_idle_min * 60) if wait_idle_min > 0 else 0.0
    cmd = [sys.executable, str(Path(script).resolve()), flag, kind, "--workdir", str(workdir), *extra]
    out = run_guarded(cmd, workdir / f"{kind}.json", max_rss_gib, timeout_min, workdir / f"{kind}_progress.jsonl")
    return out | {"kind": out.get("kind", kind), "waited_for_idle_s": waited}


def halve_until_ok(n: int, min_n: int, attempt) -> tuple[int, dict, list[dict]]:
    """`attempt(n)` (a `run_guarded` record), halving n after each failure (memory guard, time
    limit, crash) until one succeeds; stops below `min_n`. Returns the size measured, its record
    and the failed records."""
    failed = []
    while True:
        r = attempt(n)
        if r["ok"]:
            return n, r, failed
        failed.append(r)
        print(f"  failed: {r.get('kind')}: {r['reason']} (stage {r.get('stage')!r})", flush=True)
        if n // 2 < min_n:
            raise SystemExit(f"failed down to {n:,} customers: {r['reason']}\n{r.get('stderr_tail', '')}")
        n //= 2


def halving_note(requested: int, n: int, failed: list[dict]) -> str | None:
    """What the JSON and the printout say when the requested size did not complete."""
    if not failed:
        return None
    f0 = failed[0]
    return (f"{requested:,} customers did not complete ({f0.get('kind')}: {f0['reason']}, in stage {f0.get('stage')!r}); "
            f"measured at {n:,}, the largest size tried that did")


def join_notes(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def failed_attempts(failed: list[dict]) -> list[dict]:
    return [{k: v for k, v in a.items() if k != "stderr_tail"} for a in failed]


# ------------------------------------------------------------------ result writing


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_model(),
        "mem_total_gib": round((_proc_kib("/proc/meminfo", "MemTotal") or 0) / 1024**2, 1),
        "platform": platform.platform(),
    }


def versions(*modules: str) -> dict:
    return {"python": platform.python_version(), **{m: importlib.import_module(m).__version__ for m in modules}}


def result_head(benchmark: str, started) -> dict:
    """The fields every result JSON opens with."""
    return {"benchmark": benchmark, "git_sha": git_sha(), "started_utc": started.isoformat(timespec="seconds")}


def write_result(res: dict, output: Path, report_text) -> None:
    """The result JSON (with `machine`), then the printed report."""
    res["machine"] = machine_info()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(res, indent=2, default=list) + "\n")
    print()
    print(report_text(res))
    print(f"\nwrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


def fmt(v, width: int = 9, digits: int = 4) -> str:
    """A metric for a report column; '-' when missing or not finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return f"{'-':>{width}}"
    return f"{v:>{width}.{digits}f}"


# ------------------------------------------------------------------ the v4 inputs


BUILD_STEPS = ("build-generate", "build-labels", "build-features")


def calibrate_on_sample(n_cal: int, artifacts: Path):
    """Calibration on `n_cal` customers of the embedded sample, as the synthetic assets do; returns
    the calibration and the seconds of its two parts."""
    from finai_assets.lib.profiles import customer_profiles
    from finai_assets.lib.raw import normalise_snapshots, normalise_transactions
    from finai_assets.lib.sample import embedded_sample
    from finai_assets.lib.synthetic import calibrate

    t0 = time.perf_counter()
    snaps, txns = embedded_sample(n_cal)
    a, b = normalise_snapshots(snaps), normalise_transactions(txns)
    profiles = customer_profiles(a.table, b.table)
    t1 = time.perf_counter()
    cal = calibrate(profiles, a.table, b.table, artifacts)
    return cal, {"sample_and_profiles_s": round(t1 - t0, 3), "calibrate_s": round(time.perf_counter() - t1, 3)}


def child_build_generate(workdir: Path, n: int, n_cal: int) -> None:
    """Calibration and `generate` v4; writes snapshots, transactions, the ground truth and
    `protected.parquet` (the snapshot rows at the cutoff, the columns protected groups come from)."""
    import polars as pl

    from finai_assets.lib.protected import SNAPSHOT_COLUMNS as PROTECTED_SNAPSHOT_COLUMNS
    from finai_assets.lib.schema import DEFAULT_CUTOFF
    from finai_assets.lib.synthetic import RECIPES, VERSION_SEEDS, generate, load_synthesizer

    stage = Stages(workdir / "build-generate_progress.jsonl")
    with stage("calibration (embedded sample, profiles, calibrate)"):
        cal, _ = calibrate_on_sample(n_cal, workdir / "artifacts")
        synth = load_synthesizer(cal.synthesizer_path, cal.synthesizer_sha256)
    with stage(f"generate {VERSION}"):
        out = generate(cal.tables, synth, RECIPES[VERSION], n, VERSION_SEEDS[VERSION])
        del cal, synth
    with stage("write parquet (snapshots, transactions, ground truth, protected columns at the cutoff)"):
        for name, frame in (("snapshots", out.snapshots), ("transactions", out.transactions), ("ground_truth", out.ground_truth)):
            frame.write_parquet(workdir / f"{name}.parquet")
        protected = out.snapshots.filter(pl.col("fecha_dato") == DEFAULT_CUTOFF).select(PROTECTED_SNAPSHOT_COLUMNS)
        protected.write_parquet(workdir / "protected.parquet")
    info = {"snapshot_rows": out.snapshots.height, "transaction_rows": out.transactions.height,
            "ground_truth_columns": out.ground_truth.width - 1, "protected_rows": protected.height}
    write_record(workdir, "build-generate", {**info, "stages": stage.seconds, **peaks()})


def child_build_labels(workdir: Path) -> None:
    """`candidate_labels`, `split_assignments`, the task screen (kept tasks with their split) and
    `oracle_report`."""
    import polars as pl

    from finai_assets.lib import labels as lab
    from finai_assets.lib import leakage
    from finai_assets.lib import task_screen as screen

    stage = Stages(workdir / "build-labels_progress.jsonl")
    with stage("read snapshots + transactions"):
        snapshots = pl.read_parquet(workdir / "snapshots.parquet")
        transactions = pl.read_parquet(workdir / "transactions.parquet")
    with stage("candidate_labels"):
        labels = lab.candidate_labels(snapshots, transactions)
    with stage("split_assignments"):
        splits = lab.split_assignments(labels)
    with stage("task screen (pre_cutoff_sources, screen, next_mcc_vocabulary, task_labels)"):
        sources = lab.pre_cutoff_sources(snapshots, transactions)
        del snapshots, transactions
        decisions = screen.screen(labels, splits, sources)
        vocabulary = screen.next_mcc_vocabulary(labels, splits)
        tasks = screen.task_labels(labels, splits, decisions, vocabulary)
        del sources, labels
    with stage("oracle_report"):
        oracle = leakage.oracle_report(pl.read_parquet(workdir / "ground_truth.parquet"), tasks)
    for name, frame in (("splits", splits), ("tasks", tasks), ("oracle", oracle)):
        frame.write_parquet(workdir / f"{name}.parquet")
    kept = decisions.filter(pl.col("decision") == "kept")
    info = {
        "population_at_cutoff": tasks.height,
        "kept_tasks": kept["task"].to_list(),
        "kept_by_type": dict(kept.group_by("type").len().sort("type").iter_rows()),
        "split_shares": {k: round(v, 4) for k, v in splits["split"].value_counts(normalize=True).sort("split").iter_rows()},
    }
    write_record(workdir, "build-labels", {**info, "stages": stage.seconds, **peaks()})


def child_build_features(workdir: Path) -> None:
    """`fit_pipeline` on the train split, `transform` (the feature table) and `feature_schema`."""
    import polars as pl

    from finai_assets.lib import features as feat

    stage = Stages(workdir / "build-features_progress.jsonl")
    with stage("read snapshots + transactions"):
        snapshots = pl.read_parquet(workdir / "snapshots.parquet")
        transactions = pl.read_parquet(workdir / "transactions.parquet")
        splits = pl.read_parquet(workdir / "splits.parquet")
    with stage("fit_pipeline"):
        pipeline = feat.fit_pipeline(snapshots, transactions, splits)
    with stage("transform"):
        features = feat.transform(snapshots, transactions, pipeline)
        schema = feat.feature_schema(features.columns)
    features.write_parquet(workdir / "features.parquet")
    schema.write_parquet(workdir / "schema.parquet")
    info = {"features": features.width - 1, "feature_groups": schema["group"].n_unique()}
    write_record(workdir, "build-features", {**info, "stages": stage.seconds, **peaks()})


def build_inputs(workdir: Path, n: int, calibration_customers: int, max_rss_gib: float, timeout_min: float) -> dict:
    """The three build steps, each in its own child (own memory), passing parquet files; reused
    when `workdir` holds a build for the same size, resumed after the last finished step of a
    build that failed part-way. On success the combined summary (also build.json), else the
    failed child's record. Prints what it does and, on success, the build's wall, peak and shape."""
    print(f"build: {VERSION} inputs at {n:,} customers (not timed in any ratio) ...", flush=True)
    out = _build_inputs(workdir, n, calibration_customers, max_rss_gib, timeout_min)
    if out["ok"]:
        print(f"  {out['wall_s']:.1f} s, peak {out['peak_rss_gib']:.2f} GiB; "
              f"{out['features']} features x {len(out['kept_tasks'])} kept tasks", flush=True)
    return out


def _build_inputs(workdir: Path, n: int, calibration_customers: int, max_rss_gib: float, timeout_min: float) -> dict:
    cached = workdir / "build.json"
    if cached.exists() and json.loads(cached.read_text()).get("customers") == n:
        print(f"  reusing the inputs in {workdir}", flush=True)
        return json.loads(cached.read_text()) | {"reused": True}
    marker = workdir / "inputs.json"
    if not (marker.exists() and json.loads(marker.read_text()).get("customers") == n):
        for kind in BUILD_STEPS:
            (workdir / f"{kind}.json").unlink(missing_ok=True)
        marker.write_text(json.dumps({"customers": n}))
    steps = {}
    for kind in BUILD_STEPS:
        done = workdir / f"{kind}.json"
        if done.exists():
            print(f"  {kind}: reusing the earlier run's output", flush=True)
            steps[kind] = {"ok": True, "kind": kind, **json.loads(done.read_text())}
            continue
        print(f"  {kind} ...", flush=True)
        r = run_child(Path(__file__), kind, workdir, ["--customers", str(n), "--calibration-customers", str(calibration_customers)],
                      max_rss_gib, timeout_min, flag="--build-step")
        if not r["ok"]:
            return r | {"customers": n}
        steps[kind] = r
    for name in ("snapshots", "transactions"):
        (workdir / f"{name}.parquet").unlink(missing_ok=True)
    stages = {k: v for r in steps.values() for k, v in r["stages"].items()}
    out = {
        "ok": True, "kind": "build", "customers": n,
        **{k: v for r in steps.values() for k, v in r.items()
           if k not in ("stages", "kind", "ok", "customers", "peak_rss_gib", "ru_maxrss_gib", "observed_peak_rss_gib",
                        "waited_for_idle_s", "child_cpu_cores", "other_cpu_cores")},
        "stages": stages,
        "wall_s": round(sum(v["seconds"] for v in stages.values()), 3),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in steps.values()),
        "peak_rss_gib_by_step": {k: r["peak_rss_gib"] for k, r in steps.items()},
    }
    cached.write_text(json.dumps(out))
    return out


def task_specs_of(labels):
    """The kept tasks' specs from tasks.parquet (ncodpers, split, the kept tasks in decision order)."""
    import polars as pl

    from finai_assets.lib import teacher as tl

    kept = [c for c in labels.columns if c not in ("ncodpers", "split")]
    return tl.task_specs(pl.DataFrame({"task": kept, "decision": ["kept"] * len(kept)}))


def load_design(workdir: Path):
    """The design matrix and the kept tasks' specs, as the teacher assets build them."""
    import polars as pl

    from finai_assets.lib import teacher as tl

    labels = pl.read_parquet(workdir / "tasks.parquet")
    specs = task_specs_of(labels)
    return tl.design(pl.read_parquet(workdir / "features.parquet"), labels, specs), specs


def write_predictions(workdir: Path, kind: str, data, specs, preds_by_split: dict) -> None:
    """Predictions by split as `prediction_frame`s, to `pred_<kind>.parquet`."""
    import polars as pl

    from finai_assets.lib import teacher as tl

    frames = [tl.prediction_frame(data.ncodpers[data.split == split], preds, specs) for split, preds in preds_by_split.items()]
    write_parquet(pl.concat(frames), workdir / f"pred_{kind}.parquet")


def child_lightgbm(workdir: Path, threads: int, seed: int) -> None:
    """The per-task hard-label LightGBM of `baseline_models`: fit, test-split inference, val + test
    predictions."""
    import inspect

    from finai_assets.lib.ple.baselines import fit_lightgbm_baselines, predict_lightgbm

    stage = Stages(workdir / "lightgbm_progress.jsonl")
    data, specs = load_design(workdir)
    train, val = data.rows("train"), data.rows("val")
    X_test, _ = data.rows("test")
    defaults = inspect.signature(fit_lightgbm_baselines).parameters
    setup_rss = rss_gib()
    with stage("fit (all tasks)"):
        t = time.perf_counter()
        boosters = fit_lightgbm_baselines(*train, *val, specs, seed=seed, threads=threads)
        wall = time.perf_counter() - t
    with stage("inference on the test split"):
        t = time.perf_counter()
        test_preds = predict_lightgbm(boosters, X_test, specs)
        infer_s = time.perf_counter() - t
    write_predictions(workdir, "lightgbm", data, specs, {"val": predict_lightgbm(boosters, val[0], specs), "test": test_preds})
    write_record(workdir, "lightgbm", {
        "kind": "lightgbm",
        "setup_rss_gib": round(setup_rss, 3),
        "finai_assets_path": str(Path(fit_lightgbm_baselines.__code__.co_filename).resolve().parents[3]),
        "population": int(data.X.shape[0]),
        "train_rows": int(train[0].shape[0]),
        "wall_s": round(wall, 3),
        "threads": threads,
        # lgb.train keeps the trees up to the best iteration; early stopping ran past it unless the round cap came first
        "rounds": {t: {"best": int(b.best_iteration), "kept": int(b.current_iteration())} for t, b in boosters.items()},
        "max_rounds": defaults["max_rounds"].default,
        "early_stopping": defaults["early_stopping"].default,
        "infer_test_s": round(infer_s, 3),
        "infer_rows_per_s": round(X_test.shape[0] / infer_s, 1),
        "stages": stage.seconds,
        **peaks(),
    })


def main() -> None:
    """Entry point of the build children (`--build-step`)."""
    ap = argparse.ArgumentParser(description="one step of the benchmarks' v4 input build (run by build_inputs)")
    ap.add_argument("--build-step", choices=BUILD_STEPS, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--customers", type=int, required=True)
    ap.add_argument("--calibration-customers", type=int, required=True)
    args = ap.parse_args()
    if args.build_step == "build-generate":
        child_build_generate(args.workdir, args.customers, args.calibration_customers)
    elif args.build_step == "build-labels":
        child_build_labels(args.workdir)
    else:
        child_build_features(args.workdir)


if __name__ == "__main__":
    main()

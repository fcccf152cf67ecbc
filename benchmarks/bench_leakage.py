"""Benchmark: the leakage screen of the feature table on N synthetic customers (SPEC 3.4).

What is measured
    ours      "the full screen" of `finai_assets.lib.leakage` on the v4 feature table and kept
              task labels, as the `leakage_report` asset runs it:
                `single_feature_dependency(features, tasks)`  binned U(task | feature), all rows,
                                                               every feature x kept task;
                `group_probes(features, schema, tasks, oracle, LeakageThresholds())`
                                                               LightGBM per feature group x binary /
                                                               regression task on a sample of
                                                               LeakageThresholds.probe_rows
                                                               (200,000) rows (all rows when fewer),
                                                               train -> val + test;
                `label_reproduction(features, tasks, 0.999)`  |Spearman| of every feature x task;
                `lineage(features, ground_truth)`              names + |Pearson| of every feature x
                                                               numeric ground-truth column.
              Time isolation (the fifth check) is not re-run: its evidence is a second `transform`
              on perturbed data, produced and stored by the feature assets, and its cost is that of
              `transform` (timed in the build below). Nor is `proxy_probe` (excluded protected
              attributes), which the feature assets compute and the report only displays.
    baseline  the naive per-pair pandas / scikit-learn loop doing the same work, one pair at a
              time in Python on a pandas frame:
                dependency   per feature x task: `pd.qcut(.., 32, duplicates="drop")` binning of the
                             feature on the task's labelled rows (factorised when <= 32 levels) and
                             `sklearn.metrics.mutual_info_score(y, x) / H(y)` (the same uncertainty
                             coefficient; y binned once per task);
                probes       per feature group x binary / regression task:
                             `HistGradientBoostingClassifier/Regressor(max_iter=60, max_leaf_nodes=15,
                             learning_rate=0.1, min_samples_leaf=20, early_stopping=False)` fitted on
                             the train rows of the same-size sample, scored on val + test with
                             `roc_auc_score` / `r2_score`; one OpenMP thread
                             (`threadpool_limits(1)`), as the library runs LightGBM (`num_threads=1`);
                reproduction per feature x task: `Series.corr(method="spearman")` on labelled rows;
                lineage      per feature x ground-truth column: `Series.corr()` (Pearson).
              Pairs are visited in a seeded random order. A part that passes its time budget
              (`--baseline-budget-s`, per part) stops there and its time is extrapolated linearly
              to all its pairs (measured seconds x total pairs / pairs done); the JSON and the
              printout say which parts were extrapolated and from how many pairs.

The inputs are built once, in their own child process, timed separately and not in the ratio:
calibration on the embedded sample (`--calibration-customers`, as bench_synthetic), `generate`
(v4 recipe and seed), `candidate_labels`, `split_assignments`, the task screen (`screen`,
`next_mcc_vocabulary`, `task_labels`: the kept tasks with their split), `fit_pipeline` +
`transform` (the feature table) + `feature_schema`, and `oracle_report` on the ground truth; it also
keeps the snapshot rows at the cutoff with the protected-attribute columns (`protected.parquet`,
for bench_students' fairness report), as the snapshots themselves are deleted at its end. The
build runs in three children (generate | labels, screen, oracle | features) that pass parquet
files, so that each holds only what it needs; a temporary directory, or `--inputs-dir DIR`, which
is kept and reused by a later run for the same `--customers` (e.g. to rerun a disturbed timing;
a build that failed part-way resumes after its last finished step).
Each measured child only loads the inputs (before the clock starts; its resident size then is
`setup_rss_gib`).

Each measurement runs in its own fresh child process (`subprocess`, a new interpreter): peak
memory is VmHWM from /proc/self/status read inside the child, cross-checked by the parent
polling the child's VmRSS. Reported: wall seconds, customers screened per second (the population
at the cutoff, one row per customer), feature x task pairs per second, peak RSS, and the ratio
baseline / ours (the speed-up). As a cross-check that both do the same job, the uncertainty
coefficients of the pairs both computed are compared (max |difference|; the binnings differ
slightly: polars vs pandas quantiles). Timings are never asserted. Result:
`benchmarks/results/bench_leakage.json` with the git SHA (`git rev-parse HEAD`, or "uncommitted").

If the build or our screen at N runs out of the memory guard (`--max-rss-gib`) or the time
limit (`--timeout-min`), the size is halved and retried; the JSON and the printout state the
size measured and why, and the build stage that was running.

Run:  .venv/bin/python benchmarks/bench_leakage.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

from benchlib import _busy_ticks, _cpu_model, _cpu_ticks, _hwm_gib, _proc_kib, _rss_gib, git_sha, inputs_workdir, run_guarded

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "bench_leakage.json"
GIB = 1024**3
VERSION = "v4"
DISTURBED_CORES = 0.25  # other processes' mean CPU use during a measurement above which it is flagged


# ------------------------------------------------------------------ memory helpers


class _Stages:
    """Times named stages; appends each start and end to a progress file, so that a child killed
    from outside still tells which stage it was in."""

    def __init__(self, progress: Path):
        self.progress = progress
        self.seconds: dict[str, dict] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        with open(self.progress, "a") as fh:
            fh.write(json.dumps({"stage": name, "event": "start", "rss_gib": round(_rss_gib(), 3)}) + "\n")
        t = time.perf_counter()
        yield
        d = time.perf_counter() - t
        self.seconds[name] = {"seconds": round(d, 3), "rss_after_gib": round(_rss_gib(), 3), "hwm_after_gib": round(_hwm_gib(), 3)}
        with open(self.progress, "a") as fh:
            fh.write(json.dumps({"stage": name, "event": "end", "seconds": round(d, 3), "rss_gib": round(_rss_gib(), 3)}) + "\n")


def _peaks() -> dict:
    return {
        "peak_rss_gib": round(_hwm_gib(), 3),
        "ru_maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
    }


# ------------------------------------------------------------------ child: build the inputs


BUILD_STEPS = ("build-generate", "build-labels", "build-features")


def child_build_generate(workdir: Path, n: int, n_cal: int) -> None:
    """Calibration on the embedded sample and `generate`; writes snapshots, transactions, the
    ground truth and `protected.parquet` (the snapshot rows at the cutoff, only the columns the
    fairness report's protected groups are built from)."""
    import polars as pl

    from finai_assets.lib.fairness import SNAPSHOT_COLUMNS as PROTECTED_SNAPSHOT_COLUMNS
    from finai_assets.lib.profiles import customer_profiles
    from finai_assets.lib.raw import normalise_snapshots, normalise_transactions
    from finai_assets.lib.sample import embedded_sample
    from finai_assets.lib.schema import DEFAULT_CUTOFF
    from finai_assets.lib.synthetic import RECIPES, VERSION_SEEDS, calibrate, generate, load_synthesizer

    stage = _Stages(workdir / "build-generate_progress.jsonl")
    with stage("calibration (embedded sample, profiles, calibrate)"):
        snaps, txns = embedded_sample(n_cal)
        a, b = normalise_snapshots(snaps), normalise_transactions(txns)
        cal = calibrate(customer_profiles(a.table, b.table), a.table, b.table, workdir / "artifacts")
        synth = load_synthesizer(cal.synthesizer_path, cal.synthesizer_sha256)
        del snaps, txns, a, b
    with stage(f"generate {VERSION}"):
        out = generate(cal.tables, synth, RECIPES[VERSION], n, VERSION_SEEDS[VERSION])
        del cal, synth
    with stage("write parquet (snapshots, transactions, ground truth, protected columns at the cutoff)"):
        for name, frame in (("snapshots", out.snapshots), ("transactions", out.transactions), ("ground_truth", out.ground_truth)):
            frame.write_parquet(workdir / f"{name}.parquet")
        # what the fairness report reads from the snapshots (kept: the build deletes the snapshots)
        protected = out.snapshots.filter(pl.col("fecha_dato") == DEFAULT_CUTOFF).select(PROTECTED_SNAPSHOT_COLUMNS)
        protected.write_parquet(workdir / "protected.parquet")
    info = {"snapshot_rows": out.snapshots.height, "transaction_rows": out.transactions.height,
            "ground_truth_columns": out.ground_truth.width - 1, "protected_rows": protected.height}
    (workdir / "build-generate.json").write_text(json.dumps({**info, "stages": stage.seconds, **_peaks()}))


def child_build_labels(workdir: Path) -> None:
    """`candidate_labels`, `split_assignments`, the task screen (kept tasks with their split) and
    `oracle_report`."""
    import polars as pl

    from finai_assets.lib import labels as lab
    from finai_assets.lib import leakage
    from finai_assets.lib import task_screen as screen

    stage = _Stages(workdir / "build-labels_progress.jsonl")
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
    (workdir / "build-labels.json").write_text(json.dumps({**info, "stages": stage.seconds, **_peaks()}))


def child_build_features(workdir: Path) -> None:
    """`fit_pipeline` on the train split, `transform` (the feature table) and `feature_schema`."""
    import polars as pl

    from finai_assets.lib import features as feat

    stage = _Stages(workdir / "build-features_progress.jsonl")
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
    (workdir / "build-features.json").write_text(json.dumps({**info, "stages": stage.seconds, **_peaks()}))


def build_inputs(workdir: Path, n: int, args) -> dict:
    """The three build steps, each in its own child (own memory); on success the combined summary
    (also written to build.json), else the failed child's record."""
    cached = workdir / "build.json"
    if cached.exists() and json.loads(cached.read_text()).get("customers") == n:
        print(f"  reusing the inputs in {workdir}", flush=True)
        return json.loads(cached.read_text()) | {"reused": True}
    marker = workdir / "inputs.json"
    resumable = marker.exists() and json.loads(marker.read_text()).get("customers") == n
    if not resumable:
        for kind in BUILD_STEPS:
            (workdir / f"{kind}.json").unlink(missing_ok=True)
        marker.write_text(json.dumps({"customers": n}))
    steps = {}
    for kind in BUILD_STEPS:
        done = workdir / f"{kind}.json"
        if done.exists():  # a step finished by an earlier run for the same size: resume after it
            print(f"  {kind}: reusing the earlier run's output", flush=True)
            steps[kind] = {"ok": True, "kind": kind, **json.loads(done.read_text())}
            continue
        print(f"  {kind} ...", flush=True)
        r = run_child(kind, workdir, n, args)
        if not r["ok"]:
            return r
        steps[kind] = r
    for name in ("snapshots", "transactions"):
        (workdir / f"{name}.parquet").unlink(missing_ok=True)
    return combine_build(workdir, n, steps)


def combine_build(workdir: Path, n: int, steps: dict[str, dict]) -> dict:
    """One summary of the build steps' records (written to build.json for reuse)."""
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
    (workdir / "build.json").write_text(json.dumps(out))
    return out


# ------------------------------------------------------------------ child: ours


def child_ours(workdir: Path) -> None:
    import polars as pl

    from finai_assets.lib import leakage
    from finai_assets.lib.labels import CANDIDATES

    features = pl.read_parquet(workdir / "features.parquet")
    schema = pl.read_parquet(workdir / "schema.parquet")
    tasks = pl.read_parquet(workdir / "tasks.parquet")
    oracle = pl.read_parquet(workdir / "oracle.parquet")
    truth = pl.read_parquet(workdir / "ground_truth.parquet")
    th = leakage.LeakageThresholds()
    import lightgbm  # noqa: F401  imported inside group_probes; loaded here, before the clock, as the baseline's sklearn

    setup_rss = _rss_gib()
    stage = _Stages(workdir / "ours_progress.jsonl")
    t = time.perf_counter()
    with stage("single_feature_dependency"):
        dependency = leakage.single_feature_dependency(features, tasks)
    with stage("group_probes"):
        probes = leakage.group_probes(features, schema, tasks, oracle, th)
    with stage("label_reproduction"):
        copies = leakage.label_reproduction(features, tasks, th.reproduction)
    with stage("lineage (with ground truth)"):
        problems = leakage.lineage(features, truth)
    wall = time.perf_counter() - t
    dependency.write_parquet(workdir / "ours_dependency.parquet")
    probes.write_parquet(workdir / "ours_probes.parquet")
    task_names = [c for c in tasks.columns if c in CANDIDATES]
    out = {
        "kind": "ours",
        "setup_rss_gib": round(setup_rss, 3),
        "population": tasks.height,
        "features": features.width - 1,
        "tasks": len(task_names),
        "probe_sample_rows": min(th.probe_rows, tasks.join(features, on="ncodpers").height),
        "probe_rows_threshold": th.probe_rows,
        "pairs": {
            "dependency": dependency.height,
            "probes": probes.height,
            "reproduction": (features.width - 1) * sum(tasks[c].drop_nulls().n_unique() >= 2 for c in task_names),
            "lineage": (features.width - 1) * sum(1 for c in truth.columns if c != "ncodpers" and truth[c].dtype.is_numeric()),
        },
        "findings": {
            "dependency_flagged": int((dependency["u"] >= th.dependency).sum()),
            "max_u": float(dependency["u"].max()),
            "probes_flagged": int(probes["flagged"].sum()),
            "reproductions": copies.height,
            "lineage_problems": len(problems),
        },
        "stages": stage.seconds,
        "wall_s": round(wall, 3),
        **_peaks(),
    }
    (workdir / "ours.json").write_text(json.dumps(out))


# ------------------------------------------------------------------ child: naive baseline


MAX_BINS = 32  # as synthetic_checks.column_codes


def _codes(series):
    """Integer codes of a pandas Series: > 32 distinct numeric values in 32 quantile bins
    (`pd.qcut`, duplicate edges dropped), otherwise factorised; NaN is its own code."""
    import numpy as np
    import pandas as pd

    if series.nunique() > MAX_BINS:
        codes = pd.qcut(series, MAX_BINS, labels=False, duplicates="drop").to_numpy()
    else:
        codes = pd.factorize(series, sort=True)[0].astype(float)
        codes[codes < 0] = np.nan
    codes = np.where(np.isnan(codes), np.nanmax(codes, initial=-1) + 1, codes)
    return codes.astype(np.int64)


def _entropy(codes) -> float:
    import numpy as np

    p = np.bincount(codes) / codes.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


class _Budget:
    """Visits items in order until `budget_s` has passed (checked after each item)."""

    def __init__(self, budget_s: float | None):
        self.budget_s = budget_s

    def run(self, items, fn) -> dict:
        done, t = 0, time.perf_counter()
        for item in items:
            fn(item)
            done += 1
            if self.budget_s is not None and time.perf_counter() - t > self.budget_s:
                break
        measured = time.perf_counter() - t
        total = len(items)
        return {
            "pairs_total": total,
            "pairs_done": done,
            "measured_s": round(measured, 3),
            "extrapolated": done < total,
            "wall_s": round(measured * total / max(done, 1), 3),
        }


def child_baseline(workdir: Path, budget_s: float | None, seed: int) -> None:
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import mutual_info_score, r2_score, roc_auc_score
    from threadpoolctl import threadpool_limits

    from finai_assets.lib.labels import CANDIDATES, PRODUCT_LABELS
    from finai_assets.lib.leakage import GROUND_TRUTH_COLUMNS, GROUND_TRUTH_PREFIXES, LeakageThresholds

    warnings.filterwarnings("ignore")  # constant inputs: NaN correlations, as polars gives null
    features = pd.read_parquet(workdir / "features.parquet")
    schema = pd.read_parquet(workdir / "schema.parquet")
    tasks = pd.read_parquet(workdir / "tasks.parquet")
    truth = pd.read_parquet(workdir / "ground_truth.parquet")
    th = LeakageThresholds()
    setup_rss = _rss_gib()
    rng = np.random.default_rng(seed)
    names = [c for c in features.columns if c != "ncodpers"]
    task_names = [c for c in tasks.columns if c in CANDIDATES]
    parts: dict[str, dict] = {}
    budget = _Budget(budget_s)
    t0 = time.perf_counter()

    # 1. single-feature dependency: per pair, bin the feature on the task's labelled rows.
    df = tasks.merge(features, on="ncodpers")
    y_codes: dict[str, np.ndarray] = {}
    dependency: list[tuple[str, str, float]] = []
    usable = [t for t in task_names if df[t].dropna().nunique() >= 2]
    pairs = [(f, t) for t in usable for f in names]
    order = [pairs[i] for i in rng.permutation(len(pairs))]

    def dependency_pair(pair):
        f, t = pair
        known = df[t].notna()
        if t not in y_codes:
            y_codes[t] = _codes(df.loc[known, t])
        y = y_codes[t]
        x = _codes(df.loc[known, f])
        dependency.append((f, t, mutual_info_score(y, x) / _entropy(y)))

    parts["dependency"] = budget.run(order, dependency_pair)

    # 2. group probes on a sample of probe_rows rows.
    sample = df.sample(n=min(th.probe_rows, len(df)), random_state=seed) if len(df) > th.probe_rows else df
    is_train = (sample["split"] == "train").to_numpy()
    evaluate = sample["split"].isin(["val", "test"]).to_numpy()
    groups = schema.groupby("group", sort=False)["column"].apply(list)
    probe_tasks = [t for t in task_names if CANDIDATES[t].type != "multiclass"]
    fits = [(g, t) for t in probe_tasks for g in groups.index]
    probes: list[tuple[str, str, float]] = []

    def probe(pair):
        g, t = pair
        known = sample[t].notna().to_numpy()
        x, y = sample[groups[g]].to_numpy(), sample[t].to_numpy(dtype=float)
        fit, score = is_train & known, evaluate & known
        params = dict(max_iter=60, max_leaf_nodes=15, learning_rate=0.1, min_samples_leaf=20, early_stopping=False, random_state=seed)
        if CANDIDATES[t].type == "binary":
            model = HistGradientBoostingClassifier(**params).fit(x[fit], y[fit])
            value = roc_auc_score(y[score], model.predict_proba(x[score])[:, 1])
        else:
            model = HistGradientBoostingRegressor(**params).fit(x[fit], y[fit])
            value = r2_score(y[score], model.predict(x[score]))
        probes.append((g, t, float(value)))

    with threadpool_limits(limits=1):  # as the library's LightGBM probes (num_threads=1)
        parts["probes"] = budget.run([fits[i] for i in rng.permutation(len(fits))], probe)

    # 3. label reproduction: |Spearman| per pair on labelled rows.
    copies: list[tuple[str, str, float]] = []

    def reproduction_pair(pair):
        f, t = pair
        known = df[df[t].notna()]
        r = abs(known[f].corr(known[t], method="spearman"))
        if r >= th.reproduction:
            copies.append((f, t, r))

    parts["reproduction"] = budget.run(order, reproduction_pair)
    del df

    # 4. lineage: names, then |Pearson| per feature x numeric ground-truth column.
    forbidden = set(CANDIDATES) | set(PRODUCT_LABELS) | set(GROUND_TRUTH_COLUMNS) | {"split", "present_next"}
    problems = [c for c in features.columns if c in forbidden or c.startswith(GROUND_TRUTH_PREFIXES)]
    joined = features.merge(truth, on="ncodpers", how="inner", suffixes=("", "__truth"))
    numeric_truth = [c for c in truth.columns if c != "ncodpers" and pd.api.types.is_numeric_dtype(truth[c])
                     and not pd.api.types.is_bool_dtype(truth[c])]  # as polars' is_numeric()
    lineage_pairs = [(f, c) for c in numeric_truth for f in names]

    def lineage_pair(pair):
        f, c = pair
        r = abs(joined[f].corr(joined[c if c not in features.columns else c + "__truth"]))
        if r >= 0.999:
            problems.append(f"{f}: reproduces ground truth {c}")

    parts["lineage"] = budget.run([lineage_pairs[i] for i in rng.permutation(len(lineage_pairs))], lineage_pair)
    measured = time.perf_counter() - t0

    pd.DataFrame(dependency, columns=["feature", "task", "u"]).to_parquet(workdir / "baseline_dependency.parquet")
    pd.DataFrame(probes, columns=["group", "task", "value"]).to_parquet(workdir / "baseline_probes.parquet")
    in_parts = sum(p["measured_s"] for p in parts.values())
    out = {
        "kind": "baseline",
        "setup_rss_gib": round(setup_rss, 3),
        "population": len(tasks),
        "probe_sample_rows": len(sample),
        "parts": parts,
        "measured_s": round(measured, 3),
        # Glue outside the pair loops (merges, the sample) is measured once and added as is.
        "glue_s": round(measured - in_parts, 3),
        "wall_s": round(measured - in_parts + sum(p["wall_s"] for p in parts.values()), 3),
        "extrapolated": any(p["extrapolated"] for p in parts.values()),
        "findings": {
            "dependency_flagged_in_done_pairs": sum(u >= th.dependency for _, _, u in dependency),
            "reproductions_in_done_pairs": len(copies),
            "lineage_problems_in_done_pairs": len(problems),
        },
        **_peaks(),
    }
    (workdir / "baseline.json").write_text(json.dumps(out))


# ------------------------------------------------------------------ parent side


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


def run_child(kind: str, workdir: Path, n: int, args) -> dict:
    """Run one child in a fresh interpreter; guard memory and time from outside."""
    waited = wait_idle(args.wait_idle_min * 60) if kind in ("ours", "baseline") and args.wait_idle_min > 0 else 0.0
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--workdir", str(workdir),
           "--customers", str(n), "--calibration-customers", str(args.calibration_customers), "--seed", str(args.seed)]
    if args.baseline_budget_s is not None:
        cmd += ["--baseline-budget-s", str(args.baseline_budget_s)]
    out = run_guarded(cmd, workdir / f"{kind}.json", args.max_rss_gib, args.timeout_min, workdir / f"{kind}_progress.jsonl")
    return out | {"kind": out.get("kind", kind), "customers": n, "waited_for_idle_s": waited}


def _agreement(workdir: Path) -> dict:
    """Max |difference| between our and the baseline's values on the pairs both computed."""
    import polars as pl

    out = {}
    for part, key, value in (("dependency", ["feature", "task"], "u"), ("probes", ["group", "task"], "value")):
        ours = pl.read_parquet(workdir / f"ours_{part}.parquet").select(*key, pl.col(value).alias("ours"))
        base = pl.read_parquet(workdir / f"baseline_{part}.parquet").select(*key, pl.col(value).alias("baseline"))
        both = ours.join(base, on=key).with_columns(d=(pl.col("ours") - pl.col("baseline")).abs())
        out[part] = {"pairs_compared": both.height, "max_abs_diff": round(float(both["d"].max() or 0.0), 4),
                     "mean_abs_diff": round(float(both["d"].mean() or 0.0), 5)}
    return out


def _rates(m: dict, pairs: int) -> dict:
    m["customers_per_s"] = round(m["population"] / m["wall_s"], 1)
    m["pairs_per_s"] = round(pairs / m["wall_s"], 2)
    return m


def report_text(res: dict) -> str:
    b, o, bd = res["baseline"], res["ours"], res["build"]
    lines = [
        f"bench_leakage  version={res['version']}  customers={res['customers_measured']:,} (requested "
        f"{res['customers_requested']:,}; {o['population']:,} at the cutoff)  git={res['git_sha'][:12]}",
        f"machine: {res['machine']['cpu_count']} cores, {res['machine']['mem_total_gib']} GiB RAM",
        f"inputs: {o['features']} features in {bd['feature_groups']} groups x {o['tasks']} kept tasks = "
        f"{res['feature_task_pairs']:,} feature x task pairs; {o['pairs']['probes']} group probes on a sample of "
        f"{o['probe_sample_rows']:,} rows (probe_rows={o['probe_rows_threshold']:,}); "
        f"{o['pairs']['lineage']:,} feature x ground-truth pairs",
        f"build (not in ratio): {bd['wall_s']:.1f} s, peak {bd['peak_rss_gib']:.2f} GiB "
        f"(by step: {', '.join(f'{k[6:]} {v:.2f}' for k, v in bd['peak_rss_gib_by_step'].items())}); "
        f"{bd['snapshot_rows']:,} snapshots, {bd['transaction_rows']:,} transactions",
    ]
    if res.get("note"):
        lines.append("NOTE: " + res["note"])
    hdr = f"{'':38}{'wall s':>10}{'cust/s':>11}{'pairs/s':>10}{'peak GiB':>10}{'cpu cores':>11}{'other':>7}"
    lines += ["", hdr]
    base_label = "baseline pandas/sklearn loop" + (" (extrap.)" if b["extrapolated"] else "")
    for label, m in ((base_label, b), ("ours leakage screen", o)):
        lines.append(f"{label:38}{m['wall_s']:>10.1f}{m['customers_per_s']:>11,.0f}{m['pairs_per_s']:>10,.1f}"
                     f"{m['peak_rss_gib']:>10.2f}{m['child_cpu_cores']:>11.2f}{m['other_cpu_cores']:>7.2f}")
    lines.append("(cpu cores: the child's mean CPU use; other: other processes' mean CPU use meanwhile, in cores)")
    disturbed = [k for k in ("ours", "baseline") if res[k]["other_cpu_cores"] > DISTURBED_CORES]
    if disturbed:
        lines.append(f"WARNING: other processes used > {DISTURBED_CORES} cores during {', '.join(disturbed)}: timing disturbed, rerun")
    lines += ["", f"speed-up baseline/ours: x{res['ratio']['speedup_wall_baseline_over_ours']:.1f} wall; "
                  f"peak RSS ours/baseline x{res['ratio']['peak_rss_ours_over_baseline']:.2f}"]
    lines += ["", "by part (ours stage | baseline part: measured s over pairs done / total -> full s):"]
    stage_of = {"dependency": "single_feature_dependency", "probes": "group_probes", "reproduction": "label_reproduction",
                "lineage": "lineage (with ground truth)"}
    for part, p in b["parts"].items():
        s = o["stages"][stage_of[part]]
        ext = " extrapolated" if p["extrapolated"] else ""
        lines.append(f"  {part:13} ours {s['seconds']:>8.1f} s | baseline {p['measured_s']:>8.1f} s over "
                     f"{p['pairs_done']:,}/{p['pairs_total']:,} -> {p['wall_s']:>9.1f} s{ext}  (x{p['wall_s'] / max(s['seconds'], 1e-9):.1f})")
    lines.append(f"  {'glue':13} baseline merges + sample {b['glue_s']:.1f} s (measured, added as is)")
    ag = res["agreement"]
    lines += ["", f"agreement on pairs both did: U max |diff| {ag['dependency']['max_abs_diff']} over "
                  f"{ag['dependency']['pairs_compared']:,} pairs; probe AUC/R2 (LightGBM vs sklearn HGB) max |diff| "
                  f"{ag['probes']['max_abs_diff']} over {ag['probes']['pairs_compared']} fits",
              f"findings (ours): {o['findings']}"]
    if res.get("failed_attempts"):
        lines += ["", "failed attempts:"] + [
            f"  {a['kind']} at {a['customers']:,}: {a['reason']} in stage {a.get('stage')!r} after {a['elapsed_s']} s"
            for a in res["failed_attempts"]
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--calibration-customers", type=int, default=20_000)
    ap.add_argument("--baseline-budget-s", type=float, default=300.0,
                    help="time budget per baseline part; beyond it the part is extrapolated (<= 0: no budget)")
    ap.add_argument("--seed", type=int, default=0, help="pair order and probe sample of the baseline")
    ap.add_argument("--max-rss-gib", type=float, default=20.0, help="memory guard per child (machine: 24 GiB)")
    ap.add_argument("--timeout-min", type=float, default=45.0, help="time limit per child")
    ap.add_argument("--wait-idle-min", type=float, default=10.0,
                    help="before each measured child, wait up to this long for other processes to go quiet")
    ap.add_argument("--min-customers", type=int, default=10_000, help="stop halving below this size")
    ap.add_argument("--note", help="free text recorded in the JSON and the printout (e.g. how reused inputs were built)")
    ap.add_argument("--output", type=Path, default=RESULT)
    ap.add_argument("--child", choices=(*BUILD_STEPS, "ours", "baseline"), help=argparse.SUPPRESS)
    ap.add_argument("--inputs-dir", type=Path,
                    help="build the inputs into this folder and keep them; reused when built for the same --customers")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_budget_s is not None and args.baseline_budget_s <= 0:
        args.baseline_budget_s = None
    if args.child == "build-generate":
        return child_build_generate(args.workdir, args.customers, args.calibration_customers)
    if args.child == "build-labels":
        return child_build_labels(args.workdir)
    if args.child == "build-features":
        return child_build_features(args.workdir)
    if args.child == "ours":
        return child_ours(args.workdir)
    if args.child == "baseline":
        return child_baseline(args.workdir, args.baseline_budget_s, args.seed)

    import lightgbm
    import numpy
    import pandas
    import polars
    import sklearn

    started = dt.datetime.now(dt.timezone.utc)
    with contextlib.ExitStack() as stack:
        workdir = inputs_workdir(stack, args.inputs_dir, "bench_leakage_")
        n, failed = args.customers, []
        while True:
            print(f"build: {VERSION} inputs at {n:,} customers (not in the ratio) ...", flush=True)
            build = build_inputs(workdir, n, args)
            ours = None
            if build["ok"]:
                print(f"  {build['wall_s']:.1f} s, peak {build['peak_rss_gib']:.2f} GiB; "
                      f"{build['features']} features x {len(build['kept_tasks'])} kept tasks", flush=True)
                print(f"ours: the full leakage screen at {n:,} customers ...", flush=True)
                ours = run_child("ours", workdir, n, args)
                if ours["ok"]:
                    break
            failure = ours if ours is not None else build
            failed.append(failure)
            print(f"  failed: {failure['kind']}: {failure['reason']} (stage {failure.get('stage')!r})", flush=True)
            if n // 2 < args.min_customers:
                raise SystemExit(f"failed down to {n:,} customers: {failure['reason']}\n{failure['stderr_tail']}")
            n //= 2
        note = None
        if failed:
            f0 = failed[0]
            note = (f"{args.customers:,} customers did not complete ({f0['kind']}: {f0['reason']}, in stage "
                    f"{f0.get('stage')!r}); measured at {n:,}, the largest size tried that did")
        budget = "no budget" if args.baseline_budget_s is None else f"budget {args.baseline_budget_s:.0f} s per part"
        print(f"baseline: naive per-pair pandas/sklearn loop at {n:,} customers ({budget}) ...", flush=True)
        baseline = run_child("baseline", workdir, n, args)
        if not baseline["ok"]:
            raise SystemExit(f"baseline failed at {n:,}: {baseline['reason']}\n{baseline['stderr_tail']}")
        agreement = _agreement(workdir)
    pairs = ours["features"] * ours["tasks"]
    ours, baseline = _rates(ours, pairs), _rates(baseline, pairs)
    m = {"ours": ours, "baseline": baseline}
    if args.note:
        note = f"{args.note}; {note}" if note else args.note
    if baseline["extrapolated"]:
        parts = [k for k, p in baseline["parts"].items() if p["extrapolated"]]
        extra = (f"baseline parts {', '.join(parts)} passed the {args.baseline_budget_s:.0f} s budget and are extrapolated "
                 f"linearly from a seeded random subset of their pairs (all rows each)")
        note = f"{note}; {extra}" if note else extra
    res = {
        "benchmark": "bench_leakage",
        "git_sha": git_sha(),
        "started_utc": started.isoformat(timespec="seconds"),
        "version": VERSION,
        "customers_requested": args.customers,
        "customers_measured": n,
        "population_at_cutoff": ours["population"],
        "feature_task_pairs": pairs,
        "probe_sample_rows": ours["probe_sample_rows"],
        "note": note,
        "ours_definition": "finai_assets.lib.leakage: single_feature_dependency (all rows) + group_probes (LightGBM num_threads=1, "
                           "60 rounds, per group x binary/regression task, sample of LeakageThresholds.probe_rows rows) + "
                           "label_reproduction + lineage(features, ground_truth); time isolation not re-run (a second "
                           "transform, stored by the feature assets)",
        "baseline_definition": "naive per-pair loop in pandas + scikit-learn on the same inputs: pd.qcut(32) binning + "
                               "sklearn mutual_info_score / H(y) per feature x task; HistGradientBoosting(max_iter=60, "
                               "max_leaf_nodes=15, one thread as the library's LightGBM) probe per group x binary/regression task on a "
                               "same-size sample; "
                               "Series.corr(spearman) per feature x task; Series.corr(pearson) per feature x ground-truth "
                               "column. Parts past the time budget are extrapolated linearly by pair count.",
        "baseline_budget_s_per_part": args.baseline_budget_s,
        "rates": "customers_per_s = population at the cutoff (rows screened) / wall; pairs_per_s = feature x kept task pairs / wall",
        "peak_memory": "VmHWM of the child process (own interpreter), GiB; setup_rss_gib = resident size after imports and "
                       "loading the parquet inputs, before the clock starts",
        "build": build,
        "ours": ours,
        "baseline": baseline,
        "ratio": {
            "speedup_wall_baseline_over_ours": round(baseline["wall_s"] / ours["wall_s"], 2),
            "peak_rss_ours_over_baseline": round(ours["peak_rss_gib"] / baseline["peak_rss_gib"], 3),
            "per_part_baseline_over_ours": {
                part: round(p["wall_s"] / ours["stages"][stage]["seconds"], 2)
                for part, stage in (("dependency", "single_feature_dependency"), ("probes", "group_probes"),
                                    ("reproduction", "label_reproduction"), ("lineage", "lineage (with ground truth)"))
                for p in [baseline["parts"][part]]
            },
        },
        "agreement": agreement,
        "disturbed": [k for k in ("ours", "baseline") if m[k]["other_cpu_cores"] > DISTURBED_CORES],
        "failed_attempts": [{k: v for k, v in a.items() if k != "stderr_tail"} for a in failed],
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu": _cpu_model(),
            "mem_total_gib": round((_proc_kib("/proc/meminfo", "MemTotal") or 0) / 1024**2, 1),
            "platform": platform.platform(),
        },
        "versions": {"python": platform.python_version(), "polars": polars.__version__, "numpy": numpy.__version__,
                     "pandas": pandas.__version__, "sklearn": sklearn.__version__, "lightgbm": lightgbm.__version__},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2) + "\n")
    print()
    print(report_text(res))
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")


if __name__ == "__main__":
    main()

"""Benchmark: the leakage screen of `finai_assets.lib.leakage` (single-feature dependency, group
probes, label reproduction, lineage) on N synthetic v4 customers.

Baseline: the naive per-pair pandas / scikit-learn loop doing the same work, one feature x task
pair at a time (`pd.qcut` + `mutual_info_score`, `HistGradientBoosting` probes, `Series.corr`);
parts past `--baseline-budget-s` are extrapolated by pair count. Details and latest figures:
benchmarks/README.md.

Run:  .venv/bin/python benchmarks/bench_leakage.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import time
from pathlib import Path

import benchlib as bl
from benchlib import DISTURBED_CORES, VERSION, Stages, peaks, rss_gib, write_record

RESULT = bl.RESULTS / "bench_leakage.json"


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

    setup_rss = rss_gib()
    stage = Stages(workdir / "ours_progress.jsonl")
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
        **peaks(),
    }
    write_record(workdir, "ours", out)


# ------------------------------------------------------------------ child: naive baseline


MAX_BINS = 32  # as stats.column_codes


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
    setup_rss = rss_gib()
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
        **peaks(),
    }
    write_record(workdir, "baseline", out)


# ------------------------------------------------------------------ parent side


def run_child(kind: str, workdir: Path, n: int, args) -> dict:
    """A measured child (`ours` or `baseline`), after waiting for the machine to go quiet."""
    extra = ["--customers", str(n), "--seed", str(args.seed)]
    if args.baseline_budget_s is not None:
        extra += ["--baseline-budget-s", str(args.baseline_budget_s)]
    return bl.run_child(Path(__file__), kind, workdir, extra, args.max_rss_gib, args.timeout_min, args.wait_idle_min) | {"customers": n}


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
    ap.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    ap.add_argument("--inputs-dir", type=Path,
                    help="build the inputs into this folder and keep them; reused when built for the same --customers")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_budget_s is not None and args.baseline_budget_s <= 0:
        args.baseline_budget_s = None
    if args.child == "ours":
        return child_ours(args.workdir)
    if args.child == "baseline":
        return child_baseline(args.workdir, args.baseline_budget_s, args.seed)

    started = dt.datetime.now(dt.timezone.utc)
    with contextlib.ExitStack() as stack:
        workdir = bl.inputs_workdir(stack, args.inputs_dir, "bench_leakage_")
        built = {}

        def attempt(n: int) -> dict:
            built["build"] = build = bl.build_inputs(workdir, n, args.calibration_customers, args.max_rss_gib, args.timeout_min)
            if not build["ok"]:
                return build
            print(f"ours: the full leakage screen at {n:,} customers ...", flush=True)
            return run_child("ours", workdir, n, args)

        n, ours, failed = bl.halve_until_ok(args.customers, args.min_customers, attempt)
        build = built["build"]
        budget = "no budget" if args.baseline_budget_s is None else f"budget {args.baseline_budget_s:.0f} s per part"
        print(f"baseline: naive per-pair pandas/sklearn loop at {n:,} customers ({budget}) ...", flush=True)
        baseline = run_child("baseline", workdir, n, args)
        if not baseline["ok"]:
            raise SystemExit(f"baseline failed at {n:,}: {baseline['reason']}\n{baseline['stderr_tail']}")
        agreement = _agreement(workdir)
    pairs = ours["features"] * ours["tasks"]
    ours, baseline = _rates(ours, pairs), _rates(baseline, pairs)
    m = {"ours": ours, "baseline": baseline}
    extra = None
    if baseline["extrapolated"]:
        parts = [k for k, p in baseline["parts"].items() if p["extrapolated"]]
        extra = (f"baseline parts {', '.join(parts)} passed the {args.baseline_budget_s:.0f} s budget and are extrapolated "
                 f"linearly from a seeded random subset of their pairs (all rows each)")
    note = bl.join_notes(args.note, bl.halving_note(args.customers, n, failed), extra)
    res = {
        **bl.result_head("bench_leakage", started),
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
        "failed_attempts": bl.failed_attempts(failed),
        "versions": bl.versions("polars", "numpy", "pandas", "sklearn", "lightgbm"),
    }
    bl.write_result(res, args.output, report_text)


if __name__ == "__main__":
    main()

"""Benchmark: distilled students vs. the PLE teacher on N synthetic v4 customers: CPU inference
speed, model sizes, per-task student - teacher gaps, and the fairness report's wall time.

Baselines: for inference, the PLE teacher as `teacher_predictions` serves it (one forward pass for
every task) on the same test rows and threads; for fairness, a naive loop of one fairlearn
`MetricFrame` per bootstrap resample x task x decision x attribute set, extrapolated from a
measured subset. Details and latest figures: benchmarks/README.md.

Run:  .venv/bin/python benchmarks/bench_students.py [--customers 200000] [--epochs 2] [--inputs-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import time
from pathlib import Path

import benchlib as bl
from benchlib import DISTURBED_CORES, VERSION, Stages, fmt, load_design, peaks, rss_gib, task_specs_of, write_parquet, write_record

RESULT = bl.RESULTS / "bench_students.json"
TRAINED = ("teacher", "lightgbm", "students")  # context children, reusable with --reuse-models
MEASURED = ("infer_teacher", "infer_students", "fairness", "fairness_naive")
WARMUP_ROWS = 1024


# ------------------------------------------------------------------ child side


def child_teacher(workdir: Path, epochs: int, threads: int, seed: int) -> None:
    """The teacher as `ple_teacher` trains and saves it; its predictions for every customer, as
    `teacher_predictions` stores them."""
    import polars as pl
    import torch

    from finai_assets.lib import teacher as tl
    from finai_assets.lib.ple.config import PLEConfig, TrainConfig
    from finai_assets.lib.ple.train import predict

    stage = Stages(workdir / "teacher_progress.jsonl")
    data, specs = load_design(workdir)
    routing = tl.routing_schema(pl.read_parquet(workdir / "schema.parquet"))
    model_config = PLEConfig()
    config = TrainConfig(epochs=epochs, patience=epochs, threads=threads, seed=seed)
    import torch._dynamo  # noqa: F401  the optimiser's first construction imports it: an import, not training
    setup_rss = rss_gib()
    marks: list = []
    with stage("train"):
        result = tl.train_model("ple", data, specs, routing, model_config, config, bl.logger(workdir, "teacher", time.perf_counter(), marks))
    folder = workdir / "teacher"
    shutil.rmtree(folder, ignore_errors=True)
    with stage("save_model (checkpoint)"):
        path, sha = tl.save_model(result, specs, data.columns, folder,
                                  {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(config), "routing": routing})
    with stage("predict every customer"):
        t = time.perf_counter()
        preds = predict(result.model, data.X, specs, result.target_scaling)
        predict_all_s = time.perf_counter() - t
    write_parquet(tl.prediction_frame(data.ncodpers, preds, specs), workdir / "pred_teacher.parquet")
    state = result.model.state_dict()
    ends = [t for t, m in marks if m.startswith("epoch ")]
    out = {
        "kind": "teacher",
        "setup_rss_gib": round(setup_rss, 3),
        "population": int(data.X.shape[0]),
        "features": len(data.columns),
        "tasks": len(specs),
        "rows": {s: int((data.split == s).sum()) for s in ("train", "val", "calib", "test")},
        "train_rows": result.train_rows,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "epoch_s": [round(b - a, 3) for a, b in zip([0.0, *ends[:-1]], ends)],
        "train_s": round(result.seconds, 3),
        "predict_all_s": round(predict_all_s, 3),
        "predict_all_rows_per_s": round(data.X.shape[0] / predict_all_s, 1),
        "checkpoint": str(path.relative_to(workdir)),
        "sha256": sha,
        "checkpoint_bytes": path.stat().st_size,
        "state_dict_bytes": int(sum(v.numel() * v.element_size() for v in state.values())),
        "parameters": int(sum(p.numel() for p in result.model.parameters())),
        "device": result.device,
        "threads": result.threads,
        "torch_threads_seen": torch.get_num_threads(),
        "finai_assets_path": str(Path(tl.__file__).resolve().parents[2]),
        "config": {"train": dataclasses.asdict(config), "model": dataclasses.asdict(model_config)},
        "log": [{"t": round(t, 2), "msg": m} for t, m in marks],
        "stages": stage.seconds,
        **peaks(),
    }
    write_record(workdir, "teacher", out)


def child_students(workdir: Path, threads: int, seed: int, reason_rows: int) -> None:
    """The students as `distilled_students` trains, saves and serves them."""
    import numpy as np
    import polars as pl

    from finai_assets.lib import student_tables as dl
    from finai_assets.lib import student_model as st

    stage = Stages(workdir / "students_progress.jsonl")
    data, specs = load_design(workdir)
    routing = pl.read_parquet(workdir / "routing.parquet")
    route_of = dl.routes(routing, specs)
    soft = dl.aligned(pl.read_parquet(workdir / "pred_teacher.parquet"), data.ncodpers, specs, "teacher predictions")
    config = st.StudentConfig(threads=threads, seed=seed)
    import lightgbm  # noqa: F401  imported inside fit_student: an import, not training
    setup_rss = rss_gib()
    marks: list = []
    t0 = time.perf_counter()
    with stage("train_students"):
        students = dl.train_students(data, soft, route_of, specs, config, bl.logger(workdir, "students", t0, marks))
    train_s = time.perf_counter() - t0
    folder = workdir / "students"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    with stage("save_students"):
        manifest = dl.save_students(students, folder, workdir, routing, "in_sample")
    write_parquet(manifest, workdir / "students_manifest.parquet")
    with stage("predict every customer (student_frame)"):
        t = time.perf_counter()
        frame = dl.student_frame(students, data, specs)
        predict_all_s = time.perf_counter() - t
    write_parquet(frame, workdir / "pred_student.parquet")
    # reason codes (pred_contrib) cost far more per row than predictions: timed on a seeded sample
    # of customers, one `reason_codes` call per model task (the asset's one call loops over them)
    rows = np.sort(np.random.default_rng(seed).choice(len(data.X), min(reason_rows or len(data.X), len(data.X)), replace=False))
    sample = dataclasses.replace(data, X=data.X[rows], targets={t: y[rows] for t, y in data.targets.items()},
                                 split=data.split[rows], ncodpers=data.ncodpers[rows])
    reasons_task_s, parts = {}, []
    with stage(f"reason codes, {len(rows):,} customers (reason_codes per model task)"):
        for task, student in students.items():
            if student.model is not None:
                t = time.perf_counter()
                parts.append(dl.reason_codes({task: student}, sample, config.reason_codes))
                reasons_task_s[task] = time.perf_counter() - t
    reasons = pl.concat(parts)
    reasons_s = sum(reasons_task_s.values())
    ends = [t for t, _ in marks]
    task_s = dict(zip([s.name for s in specs], (b - a for a, b in zip([0.0, *ends[:-1]], ends))))
    train = data.split == "train"
    size = dict(manifest.select("task", "model_bytes").iter_rows())
    per_task = {s.name: {"type": s.type, "classes": s.classes, "route": students[s.name].route, "rounds": students[s.name].rounds,
                         "seconds": round(task_s[s.name], 3), "train_rows": int((train & ~np.isnan(data.targets[s.name])).sum()),
                         "model_bytes": int(size[s.name]), "platt": students[s.name].platt, "rule": students[s.name].rule}
                for s in specs}
    model_tasks = [t for t, s in students.items() if s.model is not None]
    out = {
        "kind": "students",
        "setup_rss_gib": round(setup_rss, 3),
        "population": int(data.X.shape[0]),
        "train_s": round(train_s, 3),
        "per_task": per_task,
        "rounds_total": int(sum(s.rounds for s in students.values())),
        "model_bytes_total": int(manifest["model_bytes"].sum()),
        "model_files": len(model_tasks),
        "config": dataclasses.asdict(config),
        "predict_all_s": round(predict_all_s, 3),
        "predict_all_rows_per_s": round(data.X.shape[0] / predict_all_s, 1),
        "reason_codes_customers": len(rows),
        "reason_codes_sampled": len(rows) < len(data.X),
        "reason_codes_s": round(reasons_s, 3),
        "reason_codes_task_s": {t: round(v, 3) for t, v in reasons_task_s.items()},
        "reason_code_rows": reasons.height,
        "reason_code_tasks": model_tasks,
        "reason_codes_customers_per_s": round(len(rows) / reasons_s, 1),
        "reason_code_rows_per_s": round(reasons.height / reasons_s, 1),
        "reason_codes_every_customer_s_extrapolated": round(reasons_s * len(data.X) / len(rows), 1),
        "reason_codes_example": reasons.head(3).to_dicts(),
        "finai_assets_path": str(Path(dl.__file__).resolve().parents[2]),
        "log": [{"t": round(t, 2), "msg": m} for t, m in marks],
        "stages": stage.seconds,
        **peaks(),
    }
    write_record(workdir, "students", out)


def child_infer(workdir: Path, who: str, threads: int, reps: int, latency_rows: int) -> None:
    """Inference of every kept task on the test split, in a fresh interpreter: `who` = teacher or
    students, loaded (verified) from the files the training children wrote."""
    import numpy as np
    import polars as pl

    from finai_assets.lib import teacher as tl

    kind = f"infer_{who}"
    stage = Stages(workdir / f"{kind}_progress.jsonl")
    # only the test rows are read (predicate pushed into the parquet scan), so that the child's
    # peak memory is the model's and the scoring's, not the whole feature table's
    labels = pl.read_parquet(workdir / "tasks.parquet").filter(pl.col("split") == "test")
    specs = task_specs_of(labels)
    features = pl.scan_parquet(workdir / "features.parquet").filter(pl.col("ncodpers").is_in(labels["ncodpers"].implode())).collect()
    data = tl.design(features, labels, specs)
    X_test = np.ascontiguousarray(data.X)
    ids, columns = data.ncodpers, data.columns
    del data, features, labels
    inputs_rss = rss_gib()
    with stage("load (verified)"):
        if who == "teacher":
            import torch

            from finai_assets.lib.ple.train import predict

            torch.set_num_threads(threads)
            rec = json.loads((workdir / "teacher.json").read_text())
            model, scaling, _ = tl.load_model(workdir / rec["checkpoint"], rec["sha256"], columns, specs)
            run = lambda X: predict(model, X, specs, scaling)  # noqa: E731
            threads_seen = {"torch": torch.get_num_threads()}
        else:
            from finai_assets.lib import student_tables as dl

            students = dl.load_students(pl.read_parquet(workdir / "students_manifest.parquet"), workdir)
            run = lambda X: dl.predict_students(students, X, specs)  # noqa: E731
            threads_seen = {}
    threads_seen["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    setup_rss = rss_gib()
    with stage("warm-up"):
        t = time.perf_counter()
        run(X_test[:WARMUP_ROWS])
        warmup_s = time.perf_counter() - t
    walls = []
    with stage(f"{reps} passes over the test split"):
        for _ in range(reps):
            t = time.perf_counter()
            preds = run(X_test)
            walls.append(time.perf_counter() - t)
    task_s = {}
    if who == "students":  # one booster per task: where the students' time goes (the teacher is one forward pass)
        with stage("one pass per task"):
            for s_ in specs:
                t = time.perf_counter()
                students[s_.name].predict(X_test)
                task_s[s_.name] = round(time.perf_counter() - t, 4)
    latency = []
    with stage(f"batch 1 x {latency_rows} rows"):
        for i in range(min(latency_rows, len(X_test))):
            t = time.perf_counter()
            run(X_test[i:i + 1])
            latency.append(time.perf_counter() - t)
    # the same numbers as the training child stored (a load or threading bug would show here)
    stored = tl.frame_predictions(pl.DataFrame({"ncodpers": ids}).join(
        pl.read_parquet(workdir / f"pred_{'teacher' if who == 'teacher' else 'student'}.parquet"), on="ncodpers",
        how="left", maintain_order="left"), specs)
    max_diff = max(float(np.max(np.abs(np.asarray(preds[s.name], dtype=np.float64) - stored[s.name]))) for s in specs)
    lat = np.asarray(latency) * 1e3
    best, median = min(walls), float(np.median(walls))
    out = {
        "kind": kind,
        "setup_rss_gib": round(setup_rss, 3),
        "inputs_rss_gib": round(inputs_rss, 3),  # after reading the test rows, before loading the model
        "test_rows": int(len(X_test)),
        "per_task_pass_s": task_s,
        "tasks": len(specs),
        "threads": threads,
        "threads_seen": threads_seen,
        "warmup_rows": WARMUP_ROWS,
        "warmup_s": round(warmup_s, 4),
        "pass_s": [round(w, 4) for w in walls],
        "rows_per_s": round(len(X_test) / best, 1),
        "rows_per_s_median": round(len(X_test) / median, 1),
        "latency_rows": len(latency),
        "latency_ms_median": round(float(np.median(lat)), 4),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 4),
        "latency_ms_mean": round(float(lat.mean()), 4),
        "batch1_rows_per_s": round(len(latency) / sum(latency), 1),
        "max_abs_diff_vs_stored_predictions": max_diff,
        "stages": stage.seconds,
        **peaks(),
    }
    write_record(workdir, kind, out)


def _fairness_inputs(workdir: Path):
    """The fairness asset's inputs: binary specs, the test labels, the test customers' protected
    groups (income edges fitted on train), the score frames; and the preparation's seconds."""
    import polars as pl

    from finai_assets.lib import fairness as fair

    labels = pl.read_parquet(workdir / "tasks.parquet")
    specs = [s for s in task_specs_of(labels) if s.type == "binary"]
    snapshot = pl.read_parquet(workdir / "protected.parquet")
    columns = ["ncodpers", *[f"p_{s.name}" for s in specs]]
    scores = {"student": pl.read_parquet(workdir / "pred_student.parquet").select(columns),
              "teacher": pl.read_parquet(workdir / "pred_teacher.parquet").select(columns)}
    t = time.perf_counter()
    test, test_groups, edges = fair.test_split_groups(snapshot, labels, [s.name for s in specs])
    prep_s = time.perf_counter() - t
    return specs, test, test_groups, scores, edges, prep_s


def child_fairness(workdir: Path, seed: int) -> None:
    import polars as pl

    import fairlearn.metrics  # noqa: F401  imported lazily by the library: an import, not the report
    from finai_assets.lib import fairness as fair
    from finai_assets.lib import plots
    from finai_assets.lib import protected

    stage = Stages(workdir / "fairness_progress.jsonl")
    specs, test, test_groups, scores, edges, prep_s = _fairness_inputs(workdir)
    cfg = fair.FairnessConfig(seed=seed)
    setup_rss = rss_gib()
    with stage("fairness_report"):
        t = time.perf_counter()
        tables = fair.fairness_report(test_groups, test, scores, cfg)
        wall = time.perf_counter() - t
    with stage("figures (plots.fairness_figure per task; asset extra, not in the ratio)"):
        t = time.perf_counter()
        for s in specs:
            plots.fairness_figure(tables["groups"], s.name, s.name, operating_point=cfg.check_operating_point)
        figures_s = time.perf_counter() - t
    summary = pl.concat([tables["summary"], tables["intersection_summary"]])
    write_parquet(summary, workdir / "fairness_summary.parquet")
    labelled = {s.name: int(test[s.name].drop_nulls().len()) for s in specs}
    out = {
        "kind": "fairness",
        "setup_rss_gib": round(setup_rss, 3),
        "test_rows": test.height,
        "binary_tasks": [s.name for s in specs],
        "labelled_test_rows": labelled,
        "config": dataclasses.asdict(cfg),
        "attribute_sets": len(protected.DECLARED_GROUPS) + len(protected.ATTRIBUTE_PAIRS),
        "decisions_per_task": 1 + 2 * len(fair.OPERATING_POINTS),  # the labels + 2 models x 2 operating points
        "income_edges": edges,
        "prepare_s": round(prep_s, 3),
        "wall_s": round(wall, 3),
        "rows_per_s": round(test.height / wall, 1),
        "figures_s": round(figures_s, 3),
        "group_rows": tables["groups"].height + tables["intersections"].height,
        "summary_rows": summary.height,
        "checks": tables["checks"].to_dicts(),
        "stages": stage.seconds,
        **peaks(),
    }
    write_record(workdir, "fairness", out, default=str)


def _naive_stats(by_group, min_group_size: int) -> tuple[float, float, float]:
    """DI (min/max, 0 when the max is 0), SPD and EOD over the groups of at least min_group_size
    (EOD: those with positives) from one MetricFrame's by_group table."""
    big = by_group[by_group["count"] >= min_group_size]
    if len(big) < 2:
        return math.nan, math.nan, math.nan
    sel = big["selection_rate"]
    hi, lo = sel.max(), sel.min()
    di = lo / hi if hi > 0 else 0.0
    tpr = big.loc[big["positives"] > 0, "tpr"]
    eod = tpr.max() - tpr.min() if len(tpr) >= 2 else math.nan
    return float(di), float(hi - lo), float(eod)


def child_fairness_naive(workdir: Path, seed: int, resamples: int, pair_resamples: int) -> None:
    """The per-resample MetricFrame loop (see the module docstring); measured passes only."""
    import functools

    import numpy as np
    import polars as pl
    from fairlearn.metrics import MetricFrame, count, selection_rate, true_positive_rate

    from finai_assets.lib import fairness as fair
    from finai_assets.lib import protected

    stage = Stages(workdir / "fairness_naive_progress.jsonl")
    specs, test, test_groups, scores, _, prep_s = _fairness_inputs(workdir)
    cfg = fair.FairnessConfig(seed=seed)
    frame = test.join(test_groups, on="ncodpers")
    for model, s in scores.items():
        frame = frame.join(s.rename({c: f"{model}/{c}" for c in s.columns if c != "ncodpers"}), on="ncodpers")
    frame = frame.sort("ncodpers").to_pandas()
    metrics = {"count": count, "positives": lambda y_true, y_pred: int(np.sum(y_true)),
               "selection_rate": selection_rate, "tpr": functools.partial(true_positive_rate, pos_label=1)}
    singles = [(a,) for a in protected.DECLARED_GROUPS]
    kinds = {"single": (singles, resamples), "pairs": (list(protected.ATTRIBUTE_PAIRS), pair_resamples)}
    setup_rss = rss_gib()
    # per task: labelled rows, labels, the 5 decisions, index matrix (only the rows measured)
    per_task = {}
    for s in specs:
        rows = frame[frame[s.name].notna()].reset_index(drop=True)
        y = rows[s.name].to_numpy().astype(np.int64)
        decisions = {("labels", "labels"): y.astype(bool)}
        for model in scores:
            p = rows[f"{model}/p_{s.name}"].to_numpy()
            decisions[(model, "threshold")] = p >= cfg.threshold
            decisions[(model, "top_k")] = fair.top_k_selection(p, rows["ncodpers"].to_numpy(), cfg.top_k_percent)
        per_task[s.name] = (rows, y, decisions)
    point, draws, seconds, units = {}, {}, {}, {}
    for kind, (sets, n_resamples) in kinds.items():
        with stage(f"{kind}: point pass + {n_resamples} resamples"):
            t = time.perf_counter()
            for b in range(n_resamples + 1):  # b = 0: the point estimate (all rows)
                if b == 1:
                    seconds[(kind, "point")] = time.perf_counter() - t
                    t = time.perf_counter()
                for s in specs:
                    rows, y, decisions = per_task[s.name]
                    idx = np.arange(len(y)) if b == 0 else fair.resample_indices(len(y), cfg, s.name)[b - 1]
                    for attrs in sets:
                        sf = rows.loc[idx, attrs[0]].to_numpy() if len(attrs) == 1 else rows.loc[idx, list(attrs)].reset_index(drop=True)
                        for decision, d in decisions.items():
                            mf = MetricFrame(metrics=metrics, y_true=y[idx], y_pred=d[idx], sensitive_features=sf)
                            key = (s.name, *decision, " & ".join(attrs))
                            stats = _naive_stats(mf.by_group, cfg.min_group_size)
                            if b == 0:
                                point[key] = stats
                            else:
                                draws.setdefault(key, []).append(stats)
                            units[kind] = units.get(kind, 0) + 1
            elapsed = time.perf_counter() - t
            if n_resamples:
                seconds[(kind, "resamples")] = elapsed
            else:  # the point pass only
                seconds[(kind, "point")], seconds[(kind, "resamples")] = elapsed, 0.0
    cis = {k: np.nanpercentile(np.asarray(v), [2.5, 97.5], axis=0).tolist() for k, v in draws.items()}  # noqa: F841  the baseline's CIs
    rows_out = [(k[0], k[1], k[2], k[3], *v) for k, v in point.items()]
    pl.DataFrame(rows_out, schema=["task", "model", "operating_point", "attribute", "di", "spd", "eod"], orient="row").write_parquet(
        workdir / "fairness_naive_point.parquet")
    parts = {}
    for kind, (sets, n_resamples) in kinds.items():
        p_s, r_s = seconds[(kind, "point")], seconds[(kind, "resamples")]
        full = p_s + (r_s / n_resamples * cfg.resamples if n_resamples else p_s * cfg.resamples)
        parts[kind] = {"attribute_sets": len(sets), "resamples_measured": n_resamples, "point_pass_s": round(p_s, 3),
                       "resamples_s": round(r_s, 3), "metricframes": units[kind],
                       "metricframes_full": (cfg.resamples + 1) * len(specs) * len(per_task[specs[0].name][2]) * len(sets),
                       "s_per_metricframe": round((p_s + r_s) / units[kind], 5),
                       "extrapolated_s": round(full, 1)}
    measured = sum(p["point_pass_s"] + p["resamples_s"] for p in parts.values())
    wall = sum(p["extrapolated_s"] for p in parts.values())
    out = {
        "kind": "fairness_naive",
        "setup_rss_gib": round(setup_rss, 3),
        "test_rows": test.height,
        "prepare_s": round(prep_s, 3),
        "parts": parts,
        "measured_s": round(measured, 3),
        "wall_s": round(wall, 1),  # extrapolated to the full report (200 resamples, all attribute sets)
        "rows_per_s": round(test.height / wall, 3),
        "extrapolated": True,
        "stages": stage.seconds,
        **peaks(),
    }
    write_record(workdir, "fairness_naive", out)


# ------------------------------------------------------------------ parent side


def measure(kind: str, workdir: Path, args) -> dict:
    """A child, after waiting for the machine to go quiet (every child runs T threads, and an
    oversubscribed OpenMP pool is many times slower); the measured ones are rerun while disturbed.
    The library's hash before and after shows whether every child ran the same code."""
    extra = ["--customers", str(args.customers), "--epochs", str(args.epochs), "--threads", str(args.threads),
             "--seed", str(args.seed), "--reps", str(args.reps), "--reason-rows", str(args.reason_rows),
             "--latency-rows", str(args.latency_rows), "--naive-resamples", str(args.naive_resamples),
             "--naive-pair-resamples", str(args.naive_pair_resamples)]

    def attempt() -> dict:
        lib = bl.lib_hash()
        out = bl.run_child(Path(__file__), kind, workdir, extra, args.max_rss_gib, args.timeout_min, args.wait_idle_min)
        return out | {"lib_hash": lib, "lib_hash_after": bl.lib_hash()}

    r = bl.least_disturbed(attempt, args.rerun_disturbed if kind in MEASURED else 0, kind)
    if not r["ok"]:
        raise SystemExit(f"{kind} failed: {r['reason']} (stage {r.get('stage')!r})\n{r.get('stderr_tail', '')}")
    return r


def trained(kind: str, workdir: Path, args) -> dict:
    """A context child, or with --reuse-models its record from an earlier run with the same
    size, epochs, threads and seed (then the later children are reused only if they were too)."""
    stamp_file = workdir / "models.json"
    params = {"customers": args.customers, "epochs": args.epochs, "threads": args.threads, "seed": args.seed,
              "reason_rows": args.reason_rows}
    stamp = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}
    if stamp.get("params") != params:
        stamp = {"params": params, "done": {}}
    if args.reuse_models and kind in stamp["done"]:
        print("  reusing the earlier run's record", flush=True)
        return stamp["done"][kind] | {"reused": True}
    r = measure(kind, workdir, args)
    later = TRAINED[TRAINED.index(kind) + 1:]
    stamp["done"] = {k: v for k, v in stamp["done"].items() if k not in later} | {kind: r}
    stamp_file.write_text(json.dumps(stamp, default=list))
    return r


def routing(workdir: Path):
    """`teacher_evaluation`'s routing: teacher and hard-label LightGBM validation metrics."""
    import polars as pl

    from finai_assets.lib import teacher as tl

    labels = pl.read_parquet(workdir / "tasks.parquet")
    specs = task_specs_of(labels)
    preds = {"teacher": pl.read_parquet(workdir / "pred_teacher.parquet"), "lightgbm": pl.read_parquet(workdir / "pred_lightgbm.parquet")}
    table = tl.routing_decisions(tl.evaluate_models(labels, preds, specs, "val"), specs)
    write_parquet(table, workdir / "routing.parquet")
    return table


def quality(workdir: Path) -> dict:
    """Test split: fidelity tables as `fidelity_report` computes them, and every task's metrics
    for student, teacher and hard-label LightGBM (`evaluate_models` + `comparison`)."""
    import numpy as np
    import polars as pl

    from finai_assets.lib import student_tables as dl
    from finai_assets.lib import fidelity as fid
    from finai_assets.lib import teacher as tl

    labels = pl.read_parquet(workdir / "tasks.parquet")
    specs = task_specs_of(labels)
    route_of = dl.routes(pl.read_parquet(workdir / "routing.parquet"), specs)
    preds = {m: pl.read_parquet(workdir / f"pred_{f}.parquet") for m, f in
             (("student", "student"), ("teacher", "teacher"), ("lightgbm", "lightgbm"))}
    test = labels.filter(pl.col("split") == "test")
    ncodpers = test["ncodpers"].to_numpy()
    y = {s.name: test[s.name].cast(pl.Float64).fill_null(float("nan")).to_numpy() for s in specs}
    student = dl.aligned(preds["student"], ncodpers, specs, "student predictions")
    teacher = dl.aligned(preds["teacher"], ncodpers, specs, "teacher predictions")
    tables = fid.fidelity_tables(specs, route_of, y, student, teacher)
    metrics = tl.evaluate_models(labels, preds, specs, "test")
    table = tl.comparison(metrics, specs)
    rows = []
    for r in table.iter_rows(named=True):
        s_, t_ = r.get("student"), r.get("teacher")
        rows.append({"task": r["task"], "type": r["type"], "metric": r["metric"], "primary": r["metric"] == tl.PRIMARY[r["type"]],
                     "route": route_of[r["task"]], "student": s_, "teacher": t_, "lightgbm": r.get("lightgbm"),
                     "student_minus_teacher": None if s_ is None or t_ is None else s_ - t_,
                     "student_minus_lightgbm": None if s_ is None or r.get("lightgbm") is None else s_ - r["lightgbm"]})
    auc = metrics.filter(pl.col("metric") == "auc")
    return {
        "test_rows": test.height,
        "rows": rows,
        "mean_binary_auc": dict(auc.group_by("model").agg(pl.col("value").mean()).sort("model").iter_rows()),
        "fidelity": {k: v.to_dicts() for k, v in tables.items()},
        "distilled_tasks": [t for t, r in route_of.items() if r == "distil"],
        "fidelity_passing": int((tables["summary"]["verdict"] == "pass").sum()),
        "fidelity_failing": tables["summary"].filter(pl.col("verdict") == "fail")["task"].to_list(),
        "test_labelled": {s.name: int((~np.isnan(y[s.name])).sum()) for s in specs},
    }


def fairness_agreement(workdir: Path) -> dict:
    """Max |naive - ours| of the point DI, SPD, EOD over the keys both computed."""
    import polars as pl

    key = ["task", "model", "operating_point", "attribute"]
    ours = pl.read_parquet(workdir / "fairness_summary.parquet").select(*key, "di", "spd", "eod")
    naive = pl.read_parquet(workdir / "fairness_naive_point.parquet")
    both = ours.join(naive, on=key, suffix="_naive")
    out = {"keys_compared": both.height, "keys_ours": ours.height}
    for m in ("di", "spd", "eod"):
        d = both.select((pl.col(m) - pl.col(f"{m}_naive")).abs().alias("d"),
                        (pl.col(m).is_null() != pl.col(f"{m}_naive").fill_nan(None).is_null()).alias("defined_differs"))
        out[f"{m}_max_abs_diff"] = float(d["d"].fill_nan(None).max() or 0.0)
        out[f"{m}_defined_differs"] = int(d["defined_differs"].sum())
    return out


def _kib(b: float) -> str:
    return f"{b / 1024:,.1f} KiB" if b < 2**20 else f"{b / 2**20:,.2f} MiB"


def report_text(res: dict) -> str:
    te, lg, st_, it, is_, fo, fn, q, bd = (res[k] for k in ("teacher", "lightgbm", "students", "infer_teacher", "infer_students",
                                                            "fairness", "fairness_naive", "quality", "build"))
    r = res["ratio"]
    src = res["source"]
    dirty = sorted(set(src["finai_assets_dirty"] or []) | set(src["finai_assets_dirty_at_end"] or []))
    lines = [
        f"bench_students  version={res['version']}  customers={res['customers']:,} ({te['population']:,} at the cutoff)  "
        f"epochs={res['config']['epochs']}  threads={res['config']['threads']}  git={res['git_sha'][:12]}",
        f"machine: {res['machine']['cpu_count']} cores ({res['machine']['cpu']}), {res['machine']['mem_total_gib']} GiB RAM; "
        f"torch {res['versions']['torch']} on {te['device']}, lightgbm {res['versions']['lightgbm']}, fairlearn {res['versions']['fairlearn']}",
        "source: " + ("uncommitted changes under finai_assets/: " + ", ".join(dirty) if dirty else "finai_assets/ clean at HEAD")
        + ("; every child ran the same finai_assets/lib (sha256 " + next(iter(next(iter(src["lib_hash_by_child"].values())))) + ")"
           if src["every_child_ran_the_same_lib"] else "; WARNING: finai_assets/lib changed between or during children: "
           + ", ".join(f"{k} {'/'.join(v)}" for k, v in src["lib_hash_by_child"].items())),
        f"inputs: {te['features']} features, {te['tasks']} kept tasks; rows " + ", ".join(f"{k} {v:,}" for k, v in te["rows"].items()),
        f"build (not in any ratio): {bd['wall_s']:.1f} s, peak {bd['peak_rss_gib']:.2f} GiB" + (" (reused inputs)" if bd.get("reused") else ""),
    ]
    if res.get("note"):
        lines.append("NOTE: " + res["note"])
    lines += [
        "",
        "context (timed, in no ratio):",
        f"  PLE teacher: {te['epochs_run']} epochs, train {te['train_s']:.1f} s (epochs " + ", ".join(f"{e:.1f}" for e in te["epoch_s"])
        + f" s), predict every customer {te['predict_all_s']:.1f} s, peak {te['peak_rss_gib']:.2f} GiB" + (" [reused]" if te.get("reused") else ""),
        f"  hard-label LightGBM baselines (for the routing): {lg['wall_s']:.1f} s, peak {lg['peak_rss_gib']:.2f} GiB" + (" [reused]" if lg.get("reused") else ""),
        f"  students: train_students {st_['train_s']:.1f} s for {len(st_['per_task'])} tasks ({st_['rounds_total']:,} boosting rounds), "
        f"predict every customer {st_['predict_all_s']:.1f} s, peak {st_['peak_rss_gib']:.2f} GiB" + (" [reused]" if st_.get("reused") else ""),
        f"  reason codes (top {st_['config']['reason_codes']}, pred_contrib) for {st_['reason_codes_customers']:,} customers"
        + (" (a seeded sample)" if st_["reason_codes_sampled"] else "") + f" x {len(st_['reason_code_tasks'])} model tasks: "
        f"{st_['reason_codes_s']:.1f} s = {st_['reason_codes_customers_per_s']:,.0f} customers/s ({st_['reason_code_rows_per_s']:,.0f} "
        f"customer-task rows/s); every customer: {st_['reason_codes_every_customer_s_extrapolated']:,.0f} s"
        + (" (extrapolated)" if st_["reason_codes_sampled"] else ""),
        "",
        f"{'student':26}{'type':>11}{'classes':>8}{'route':>11}{'rounds':>7}{'train rows':>11}{'fit s':>8}{'model':>12}"
        f"{'reasons ms/cust':>16}",
    ]
    for t, p in st_["per_task"].items():
        rc = st_["reason_codes_task_s"].get(t)
        rc = "-" if rc is None else f"{rc * 1e3 / st_['reason_codes_customers']:.2f}"
        lines.append(f"{t:26}{p['type']:>11}{p['classes']:>8}{p['route']:>11}{p['rounds']:>7}{p['train_rows']:>11,}{p['seconds']:>8.1f}"
                     f"{(_kib(p['model_bytes']) if p['model_bytes'] else 'rule'):>12}"
                     f"{rc:>16}")
    lines += [
        "",
        f"model size: students {_kib(st_['model_bytes_total'])} in {st_['model_files']} LightGBM text files; teacher checkpoint "
        f"{_kib(te['checkpoint_bytes'])} (state_dict tensors {_kib(te['state_dict_bytes'])}, {te['parameters']:,} parameters): "
        f"teacher / students x{r['checkpoint_bytes_teacher_over_students']:.2f}",
        "",
        f"INFERENCE on the test split ({it['test_rows']:,} rows, all {it['tasks']} tasks, CPU, {res['config']['threads']} threads each; "
        f"best of {res['config']['reps']} passes after a warm-up; batch 1 over {it['latency_rows']} rows):",
        f"{'':34}{'rows/s':>11}{'median':>11}{'b1 ms med':>10}{'b1 p95':>8}{'b1 rows/s':>10}{'warm-up s':>10}{'peak GiB':>9}{'cpu':>6}{'other':>7}",
    ]
    for label, m in (("teacher PLE predict (batch 8192)", it), ("students predict_students", is_)):
        lines.append(f"{label:34}{m['rows_per_s']:>11,.0f}{m['rows_per_s_median']:>11,.0f}{m['latency_ms_median']:>10.2f}"
                     f"{m['latency_ms_p95']:>8.2f}{m['batch1_rows_per_s']:>10,.0f}{m['warmup_s']:>10.2f}{m['peak_rss_gib']:>9.2f}"
                     f"{m['child_cpu_cores']:>6.2f}{m['other_cpu_cores']:>7.2f}")
    lines.append(f"(resident before the model is loaded: teacher child {it['inputs_rss_gib']:.2f} GiB, students child "
                 f"{is_['inputs_rss_gib']:.2f} GiB; after loading it: {it['setup_rss_gib']:.2f} / {is_['setup_rss_gib']:.2f} GiB)")
    if is_.get("per_task_pass_s"):
        total = sum(is_["per_task_pass_s"].values())
        lines.append("students, one pass per task (s, share): " + ", ".join(
            f"{t} {v:.2f} ({v / total:.0%})" for t, v in sorted(is_["per_task_pass_s"].items(), key=lambda kv: -kv[1])))
    lines += [
        f"STUDENTS / TEACHER: x{r['infer_rows_per_s_students_over_teacher']:.2f} rows/s (median passes x{r['infer_rows_per_s_median_students_over_teacher']:.2f}); "
        f"batch-1 latency teacher / students x{r['batch1_latency_teacher_over_students']:.2f}; inference peak RSS teacher / students "
        f"x{r['infer_peak_rss_teacher_over_students']:.2f}",
        f"(check: predictions equal those the training children stored, max |diff| teacher {it['max_abs_diff_vs_stored_predictions']:.2e}, "
        f"students {is_['max_abs_diff_vs_stored_predictions']:.2e}; Student.predict leaves LightGBM's num_threads at its default, "
        f"pinned here by OMP_NUM_THREADS={is_['threads_seen']['OMP_NUM_THREADS']})",
        "",
        f"per-task quality on the TEST split ({q['test_rows']:,} customers; student vs teacher vs hard-label LightGBM):",
        f"{'task':26}{'type':>11}{'route':>11}{'metric':>9}{'student':>9}{'teacher':>9}{'LightGBM':>9}{'stu-tea':>9}{'stu-LGBM':>9}",
    ]
    for row in q["rows"]:
        lines.append(f"{row['task']:26}{row['type']:>11}{row['route']:>11}{row['metric']:>9}{fmt(row['student'])}{fmt(row['teacher'])}"
                     f"{fmt(row['lightgbm'])}{fmt(row['student_minus_teacher'])}{fmt(row['student_minus_lightgbm'])}")
    m = q["mean_binary_auc"]
    lines.append("mean binary AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
    lines += ["", f"fidelity tier 1 (distilled tasks: {len(q['distilled_tasks'])}; one-sided, a student may beat its teacher):",
              f"{'task':26}{'criterion':>20}{'teacher':>9}{'student':>9}{'gap':>9}{'limit':>8}{'pass':>6}"]
    for row in q["fidelity"]["tier1"]:
        lines.append(f"{row['task']:26}{row['criterion']:>20}{fmt(row['teacher'])}{fmt(row['student'])}{fmt(row['gap'])}"
                     f"{fmt(row['limit'], 8, 3)}{'yes' if row['passed'] else 'NO':>6}")
    lines.append("tier 2: " + "; ".join(f"{x['task']} agree {x['agreement']:.3f} rho {x['rank_correlation']:.3f} jsd {x['jsd']:.4f}"
                                        for x in q["fidelity"]["tier2"]))
    guard_failed = [g["task"] for g in q["fidelity"]["guard"] if not g["passed"]]
    lines.append(f"constant-student guard: {'all pass' if not guard_failed else 'FAILS ' + ', '.join(guard_failed)}; "
                 f"verdicts: {q['fidelity_passing']} of {len(q['distilled_tasks'])} distilled tasks pass"
                 + (f", FAILING: {', '.join(q['fidelity_failing'])}" if q["fidelity_failing"] else ""))
    fa, np_ = res["fairness_agreement"], fn["parts"]
    lines += [
        "",
        f"FAIRNESS on the test split ({fo['test_rows']:,} customers; {len(fo['binary_tasks'])} binary tasks x {fo['decisions_per_task']} "
        f"decisions (labels; student, teacher x threshold, top-{fo['config']['top_k_percent']:g} %) x {fo['attribute_sets']} attribute sets "
        f"(5 + 10 intersections), {fo['config']['resamples']} bootstrap resamples):",
        f"  ours fairness_report: {fo['wall_s']:.2f} s = {fo['rows_per_s']:,.0f} rows/s, peak {fo['peak_rss_gib']:.2f} GiB "
        f"(cpu {fo['child_cpu_cores']:.2f}, other {fo['other_cpu_cores']:.2f}); preparing the groups {fo['prepare_s']:.2f} s, "
        f"the asset's {len(fo['binary_tasks'])} bar charts {fo['figures_s']:.1f} s (neither in the ratio)",
        f"  naive MetricFrame per resample (EXTRAPOLATED): {fn['wall_s']:,.0f} s = {fn['rows_per_s']:.2f} rows/s, peak {fn['peak_rss_gib']:.2f} GiB "
        f"(cpu {fn['child_cpu_cores']:.2f}, other {fn['other_cpu_cores']:.2f}); measured {fn['measured_s']:.1f} s:",
    ]
    for kind, p in np_.items():
        lines.append(f"    {kind:7} {p['attribute_sets']:>2} attribute sets: point pass {p['point_pass_s']:.1f} s + {p['resamples_measured']} resamples "
                     f"{p['resamples_s']:.1f} s ({p['metricframes']:,} MetricFrames, {p['s_per_metricframe'] * 1e3:.0f} ms each) "
                     f"-> {p['extrapolated_s']:,.0f} s for 200 resamples ({p['metricframes_full']:,} MetricFrames)")
    lines += [
        f"NAIVE / OURS: x{r['fairness_wall_naive_over_ours']:,.0f} wall (extrapolated naive); peak RSS ours / naive x{r['fairness_peak_rss_ours_over_naive']:.2f}",
        f"  agreement of the point estimates over {fa['keys_compared']:,} (task, model, operating point, attribute set) rows: max |diff| "
        f"DI {fa['di_max_abs_diff']:.2e}, SPD {fa['spd_max_abs_diff']:.2e}, EOD {fa['eod_max_abs_diff']:.2e}; defined in one only: "
        f"DI {fa['di_defined_differs']}, SPD {fa['spd_defined_differs']}, EOD {fa['eod_defined_differs']}",
        "  checks (student, top-k: DI lower bound >= 0.80 x the labels' DI on every binary task):",
    ]
    lines += [f"    {c['attribute']:12} {'pass' if c['passed'] else 'FAIL'}: {c['reason']}" for c in fo["checks"]]
    attempts = {k: res[k]["attempts"] for k in MEASURED if len(res[k].get("attempts", [])) > 1}
    for k, a in attempts.items():
        lines.append(f"{k} measured {len(a)} times (others' CPU " + ", ".join(f"{x['other_cpu_cores']:.2f}" for x in a)
                     + " cores); the least disturbed is reported")
    if res["disturbed"]:
        lines.append(f"WARNING: other processes used > {DISTURBED_CORES} cores during {', '.join(res['disturbed'])}: timing disturbed")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and LightGBM threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3, help="inference passes over the test split (the fastest is reported)")
    ap.add_argument("--reason-rows", type=int, default=20_000,
                    help="customers (a seeded sample) the reason codes are timed on; 0: every customer")
    ap.add_argument("--latency-rows", type=int, default=300, help="rows scored one at a time for the batch-1 latency")
    ap.add_argument("--naive-resamples", type=int, default=3, help="resamples the naive fairness loop measures on the 5 attributes")
    ap.add_argument("--naive-pair-resamples", type=int, default=1, help="resamples it measures on the 10 intersections")
    ap.add_argument("--calibration-customers", type=int, default=20_000)
    ap.add_argument("--max-rss-gib", type=float, default=20.0, help="memory guard per child (machine: 24 GiB)")
    ap.add_argument("--timeout-min", type=float, default=90.0, help="time limit per child")
    ap.add_argument("--wait-idle-min", type=float, default=10.0,
                    help="before each measured child, wait up to this long for other processes to go quiet")
    ap.add_argument("--rerun-disturbed", type=int, default=2,
                    help="measure an inference or fairness child again (at most this many times) when others disturbed it")
    ap.add_argument("--note", help="free text recorded in the JSON and the printout")
    ap.add_argument("--output", type=Path, default=RESULT)
    ap.add_argument("--child", choices=(*TRAINED, *MEASURED), help=argparse.SUPPRESS)
    ap.add_argument("--inputs-dir", type=Path,
                    help="build the inputs into this folder and keep them; reused when built for the same --customers")
    ap.add_argument("--reuse-models", action="store_true",
                    help="reuse the teacher, baselines and students an earlier run trained in --inputs-dir (same size, epochs, threads, seed)")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch / lightgbm load their OpenMP runtimes
        if args.child == "teacher":
            return child_teacher(args.workdir, args.epochs, args.threads, args.seed)
        if args.child == "lightgbm":
            return bl.child_lightgbm(args.workdir, args.threads, args.seed)
        if args.child == "students":
            return child_students(args.workdir, args.threads, args.seed, args.reason_rows)
        if args.child in ("infer_teacher", "infer_students"):
            return child_infer(args.workdir, args.child.removeprefix("infer_"), args.threads, args.reps, args.latency_rows)
        if args.child == "fairness":
            return child_fairness(args.workdir, args.seed)
        return child_fairness_naive(args.workdir, args.seed, args.naive_resamples, args.naive_pair_resamples)

    started = dt.datetime.now(dt.timezone.utc)
    source = bl.source_state()
    n = args.customers
    with contextlib.ExitStack() as stack:
        workdir = bl.inputs_workdir(stack, args.inputs_dir, "bench_students_")
        build = bl.build_inputs(workdir, n, args.calibration_customers, args.max_rss_gib, args.timeout_min)
        if not build["ok"]:
            raise SystemExit(f"build failed at {n:,}: {build['reason']} (stage {build.get('stage')!r})\n{build.get('stderr_tail', '')}")
        if not (workdir / "protected.parquet").exists():
            raise SystemExit(f"{workdir} holds inputs built before the build kept protected.parquet (the fairness report needs it); "
                             "pass a fresh --inputs-dir")
        print(f"teacher: PLE, {args.epochs} epochs, {args.threads} threads (context) ...", flush=True)
        te = trained("teacher", workdir, args)
        print(f"  train {te['train_s']:.1f} s, checkpoint {_kib(te['checkpoint_bytes'])}, peak {te['peak_rss_gib']:.2f} GiB", flush=True)
        print("hard-label LightGBM baselines (routing needs their val metrics; context) ...", flush=True)
        lg = trained("lightgbm", workdir, args)
        print(f"  {lg['wall_s']:.1f} s, peak {lg['peak_rss_gib']:.2f} GiB", flush=True)
        route_table = routing(workdir)
        print("routing (val): " + ", ".join(f"{t} {r}" for t, r in route_table.select("task", "route").iter_rows()), flush=True)
        print("students: train_students, save, predict and reason codes for every customer ...", flush=True)
        st_ = trained("students", workdir, args)
        print(f"  train {st_['train_s']:.1f} s, {_kib(st_['model_bytes_total'])} of model files, reason codes {st_['reason_codes_s']:.1f} s, "
              f"peak {st_['peak_rss_gib']:.2f} GiB", flush=True)
        res_m = {}
        for kind, label in (("infer_teacher", "teacher inference on the test split"), ("infer_students", "students inference on the test split"),
                            ("fairness", "fairness_report (ours)"), ("fairness_naive", "naive MetricFrame fairness loop (measured subset)")):
            print(f"{label} ...", flush=True)
            res_m[kind] = measure(kind, workdir, args)
            m = res_m[kind]
            if kind.startswith("infer"):
                print(f"  {m['rows_per_s']:,.0f} rows/s, batch-1 {m['latency_ms_median']:.2f} ms, peak {m['peak_rss_gib']:.2f} GiB, "
                      f"other CPU {m['other_cpu_cores']:.2f}", flush=True)
            else:
                print(f"  {m['wall_s']:,.1f} s{' (extrapolated)' if m.get('extrapolated') else ''}, peak {m['peak_rss_gib']:.2f} GiB, "
                      f"other CPU {m['other_cpu_cores']:.2f}", flush=True)
        print("quality on the test split (fidelity_tables, evaluate_models, comparison) ...", flush=True)
        q = quality(workdir)
        agreement = fairness_agreement(workdir)
    it, is_, fo, fn = (res_m[k] for k in MEASURED)
    all_children = {"teacher": te, "lightgbm": lg, "students": st_, **res_m}
    lib_hashes = {k: sorted({c.get("lib_hash"), c.get("lib_hash_after")} - {None}) for k, c in all_children.items()}
    same_code = len({h for v in lib_hashes.values() for h in v}) == 1
    res = {
        **bl.result_head("bench_students", started),
        "source": {**source, "finai_assets_dirty_at_end": bl.source_state()["finai_assets_dirty"],
                   "lib_hash_by_child": lib_hashes, "every_child_ran_the_same_lib": same_code,
                   "finai_assets_imported_from": sorted({c["finai_assets_path"] for c in (te, st_)})},
        "version": VERSION,
        "customers": n,
        "population_at_cutoff": te["population"],
        "note": args.note,
        "config": {"epochs": args.epochs, "patience": args.epochs, "threads": args.threads, "seed": args.seed, "reps": args.reps,
                   "latency_rows": args.latency_rows, "reason_rows": args.reason_rows, "naive_resamples": args.naive_resamples,
                   "naive_pair_resamples": args.naive_pair_resamples, "calibration_customers": args.calibration_customers,
                   "max_rss_gib": args.max_rss_gib, "timeout_min": args.timeout_min, "wait_idle_min": args.wait_idle_min,
                   "rerun_disturbed": args.rerun_disturbed, "reuse_models": args.reuse_models},
        "ours_definition": {
            "inference": "distillation.load_students(manifest) (sha256-verified) then predict_students(students, X_test, specs): one "
                         "LightGBM booster per kept task (+ Platt / softmax; a rule serves its prior), all tasks, test split, "
                         "OMP_NUM_THREADS=T (Student.predict passes no num_threads)",
            "fairness": "fairness.fairness_report(test_groups, test_labels, {student, teacher}, FairnessConfig()): 7 binary tasks x "
                        "(labels + 2 models x 2 operating points) x (5 attributes + 10 intersections), 200 vectorised resamples",
        },
        "baseline_definition": {
            "inference": "teacher.load_model(checkpoint, sha256) then ple.train.predict(model, X_test, specs, scaling), batch 8192, "
                         "torch.set_num_threads(T), CPU, same rows and tasks, same run",
            "fairness": "naive loop: per resample (same index matrices) and the point pass, per task x decision x attribute set one "
                        "fairlearn MetricFrame(count, positives, selection_rate, TPR) on the resampled rows, then DI/SPD/EOD; measured "
                        "on the point pass + naive_resamples (5 attributes) / naive_pair_resamples (10 intersections) resamples and "
                        "extrapolated linearly per kind to 200 resamples",
        },
        "rates": "inference rows_per_s = test rows / fastest of `reps` passes (rows_per_s_median: median pass); batch1 = one call per "
                 "row; fairness rows_per_s = test customers / wall",
        "peak_memory": "VmHWM of each child process (own interpreter), GiB; setup_rss_gib = resident size after loading the inputs "
                       "(and, for inference, the verified model), before the clock starts",
        "build": build,
        "teacher": te,
        "lightgbm": lg,
        "students": st_,
        "routing": route_table.select("task", "type", "metric", "teacher_val", "lightgbm_val", "route").to_dicts(),
        "infer_teacher": it,
        "infer_students": is_,
        "fairness": fo,
        "fairness_naive": fn,
        "fairness_agreement": agreement,
        "quality": q,
        "ratio": {
            "infer_rows_per_s_students_over_teacher": round(is_["rows_per_s"] / it["rows_per_s"], 3),
            "infer_rows_per_s_median_students_over_teacher": round(is_["rows_per_s_median"] / it["rows_per_s_median"], 3),
            "batch1_latency_teacher_over_students": round(it["latency_ms_median"] / is_["latency_ms_median"], 3),
            "infer_peak_rss_teacher_over_students": round(it["peak_rss_gib"] / is_["peak_rss_gib"], 3),
            "checkpoint_bytes_teacher_over_students": round(te["checkpoint_bytes"] / st_["model_bytes_total"], 3),
            "state_dict_bytes_teacher_over_students": round(te["state_dict_bytes"] / st_["model_bytes_total"], 3),
            "fairness_wall_naive_over_ours": round(fn["wall_s"] / fo["wall_s"], 1),
            "fairness_peak_rss_ours_over_naive": round(fo["peak_rss_gib"] / fn["peak_rss_gib"], 3),
            "train_s_students_over_teacher": round(st_["train_s"] / te["train_s"], 3),
        },
        "disturbed": [k for k in MEASURED if all_children[k]["other_cpu_cores"] > DISTURBED_CORES],
        "disturbed_context": [k for k in TRAINED if all_children[k].get("other_cpu_cores", 0) > DISTURBED_CORES],
        "disturbed_cores_threshold": DISTURBED_CORES,
        "versions": bl.versions("torch", "lightgbm", "polars", "numpy", "fairlearn"),
    }
    bl.write_result(res, args.output, report_text)


if __name__ == "__main__":
    main()

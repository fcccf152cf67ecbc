"""Benchmark: the PLE teacher on N synthetic v4 customers, its training speed and its test quality.

Baseline: the shared-bottom MLP of `baseline_models`, trained by the same loop with the same
TrainConfig in the same run (per-task LightGBM is timed beside it, outside the ratio). Details and
latest figures: benchmarks/README.md.

Run:  .venv/bin/python benchmarks/bench_teacher.py [--customers 200000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import time
from pathlib import Path

import benchlib as bl
from benchlib import DISTURBED_CORES, VERSION, Stages, fmt, load_design, peaks, rss_gib, write_predictions, write_record

RESULT = bl.RESULTS / "bench_teacher.json"
NETS = ("ple", "shared_bottom")
MODEL_OF = {"ple": "teacher", "shared_bottom": "shared_bottom", "lightgbm": "lightgbm"}  # the asset's model names


# ------------------------------------------------------------------ child side


def child_net(workdir: Path, kind: str, epochs: int, threads: int, seed: int) -> None:
    import polars as pl
    import torch

    from finai_assets.lib import teacher as tl
    from finai_assets.lib.ple.model import PLE, PLEConfig
    from finai_assets.lib.ple.train import Split, TrainConfig, evaluate, predict

    stage = Stages(workdir / f"{kind}_progress.jsonl")
    data, specs = load_design(workdir)
    routing = tl.routing_schema(pl.read_parquet(workdir / "schema.parquet")) if kind == "ple" else None
    model_config = PLEConfig() if kind == "ple" else None
    config = TrainConfig(epochs=epochs, patience=epochs, threads=threads, seed=seed)
    X_test, _ = data.rows("test")
    val = Split(*data.rows("val"))
    import torch._dynamo  # noqa: F401  the optimiser's first construction imports it (~1 s): an import, not training
    setup_rss = rss_gib()

    marks: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    with stage("train"):
        result = tl.train_model(kind, data, specs, routing, model_config, config, bl.logger(workdir, kind, t0, marks))
    train_wall = time.perf_counter() - t0
    ends = [t for t, m in marks if m.startswith("epoch ")]
    epoch_s = [b - a for a, b in zip([0.0, *ends[:-1]], ends)]
    model = result.model
    with stage("validation scoring (one pass, as after each epoch)"):
        t = time.perf_counter()
        evaluate(model, val, specs, result.target_scaling)
        val_scoring_s = time.perf_counter() - t
    with stage("inference on the test split"):
        t = time.perf_counter()
        test_preds = predict(model, X_test, specs, result.target_scaling)
        infer_s = time.perf_counter() - t
    val_preds = predict(model, val.X, specs, result.target_scaling)
    write_predictions(workdir, kind, data, specs, {"val": val_preds, "test": test_preds})
    epochs_run = len(result.history)
    steps_s = sum(max(e - val_scoring_s, 1e-9) for e in epoch_s)
    out = {
        "kind": kind,
        "setup_rss_gib": round(setup_rss, 3),
        "population": int(data.X.shape[0]),
        "features": len(data.columns),
        "tasks": len(specs),
        "rows": {s: int((data.split == s).sum()) for s in ("train", "val", "calib", "test")},
        "train_rows": result.train_rows,
        "epochs_run": epochs_run,
        "epoch_s": [round(e, 3) for e in epoch_s],
        "s_per_epoch": round(sum(epoch_s) / max(len(epoch_s), 1), 3),
        "train_s": round(result.seconds, 3),
        "train_wall_s": round(train_wall, 3),
        "samples_per_s": round(result.train_rows * epochs_run / result.seconds, 1),
        "val_scoring_s": round(val_scoring_s, 3),
        "samples_per_s_steps_only": round(result.train_rows * epochs_run / steps_s, 1),
        "infer_test_s": round(infer_s, 3),
        "infer_rows_per_s": round(X_test.shape[0] / infer_s, 1),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "parameters_per_expert": model.parameters_per_expert() if isinstance(model, PLE) else None,
        "experts": list(model.routing) if isinstance(model, PLE) else None,
        "best_epoch": result.best_epoch,
        "history": result.history,
        "log": [{"t": round(t, 2), "msg": m} for t, m in marks],
        "device": result.device,
        "threads": result.threads,
        "finai_assets_path": str(Path(tl.__file__).resolve().parents[2]),
        "torch_threads_seen": torch.get_num_threads(),
        "config": {"train": {k: getattr(config, k) for k in config.__dataclass_fields__},
                   "model": None if model_config is None else {k: getattr(model_config, k) for k in model_config.__dataclass_fields__}},
        "stages": stage.seconds,
        **peaks(),
    }
    write_record(workdir, kind, out)


# ------------------------------------------------------------------ parent side


def measure(kind: str, workdir: Path, n: int, args) -> dict:
    """A measured child, rerun (at most --rerun-disturbed times) while other processes disturbed
    it: threads = all cores, so any other load stalls the thread pools many times over."""
    extra = ["--customers", str(n), "--epochs", str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed)]
    return bl.least_disturbed(
        lambda: bl.run_child(Path(__file__), kind, workdir, extra, args.max_rss_gib, args.timeout_min, args.wait_idle_min),
        args.rerun_disturbed, kind) | {"customers": n}


HIGHER_BETTER = {"auc": True, "f1_macro": True, "ndcg@3": True, "r2": True, "mae": False}
PRIMARY = {"binary": "auc", "multiclass": "f1_macro", "regression": "r2"}


def quality(workdir: Path) -> dict:
    """The asset's evaluation of the three models' predictions on the test split (+ val routing)."""
    import polars as pl

    from finai_assets.lib import teacher as tl

    labels = pl.read_parquet(workdir / "tasks.parquet")
    specs = bl.task_specs_of(labels)
    preds = {MODEL_OF[k]: pl.read_parquet(workdir / f"pred_{k}.parquet") for k in ("ple", "lightgbm", "shared_bottom")}
    oracle = pl.read_parquet(workdir / "oracle.parquet")
    test = tl.with_oracle(tl.evaluate_models(labels, preds, specs, "test"), oracle)
    val = tl.evaluate_models(labels, preds, specs, "val")
    routing = tl.routing_decisions(val, specs)
    sanity = tl.sanity(test, routing, specs)
    table = tl.comparison(test, specs)
    value = {(t, m, k): v for t, m, k, v in test.select("task", "model", "metric", "value").iter_rows()}
    rows = []
    for r in table.iter_rows(named=True):
        task, metric = r["task"], r["metric"]
        models = {m: r.get(m) for m in ("teacher", "lightgbm", "shared_bottom")}
        finite = {m: v for m, v in models.items() if v is not None and math.isfinite(v)}
        best = (max if HIGHER_BETTER[metric] else min)(finite, key=finite.get) if finite else None
        gap = None if models["teacher"] is None or models["lightgbm"] is None else models["teacher"] - models["lightgbm"]
        ci = None
        if metric == "auc":
            se_t, se_l = value.get((task, "teacher", "auc_se")), value.get((task, "lightgbm", "auc_se"))
            if se_t is not None and se_l is not None:
                ci = 1.96 * math.sqrt(se_t**2 + se_l**2)
        rows.append({"task": task, "type": r["type"], "metric": metric, "primary": metric == PRIMARY[r["type"]],
                     "ple": models["teacher"], "lightgbm": models["lightgbm"], "shared_bottom": models["shared_bottom"],
                     "oracle": r.get("oracle"), "best": best, "ple_minus_lightgbm": gap, "gap_ci95": ci,
                     "test_rows": int(value.get((task, "teacher", "rows"), 0))})
    auc = test.filter(pl.col("metric") == "auc")
    mean_auc = dict(auc.group_by("model").agg(pl.col("value").mean()).sort("model").iter_rows())
    ceiling = dict(oracle.select("task", "is_ceiling").iter_rows())
    for row in rows:
        row["oracle_is_ceiling"] = None if row["oracle"] is None else bool(ceiling.get(row["task"]))
    oracle_tasks = [t for t in auc.filter(pl.col("model") == "oracle")["task"].to_list() if ceiling.get(t)]
    mean_auc_oracle_tasks = dict(auc.filter(pl.col("task").is_in(oracle_tasks)).group_by("model")
                                 .agg(pl.col("value").mean()).sort("model").iter_rows())
    return {
        "rows": rows,
        "mean_binary_auc": {MODEL_NAME.get(k, k): v for k, v in mean_auc.items()},
        "binary_tasks": auc.filter(pl.col("model") == "teacher").height,
        "oracle_tasks": oracle_tasks,  # binary tasks whose oracle is a ceiling (oracle_report.is_ceiling)
        "oracle_not_ceiling": [r["task"] for r in rows if r["oracle_is_ceiling"] is False],
        "losses": {sp.name: sp.loss_name if hasattr(sp, "loss_name") else "default" for sp in specs},
        "mean_binary_auc_on_oracle_tasks": {MODEL_NAME.get(k, k): v for k, v in mean_auc_oracle_tasks.items()},
        "routing": routing.select("task", "metric", "teacher_val", "lightgbm_val", "route").to_dicts(),
        "sanity": sanity.select("task", "metric", "value", "upper_bound", "chance", "passed", "reason").to_dicts(),
    }


MODEL_NAME = {"teacher": "ple"}


def report_text(res: dict) -> str:
    p, s, g, bd, q = res["ple"], res["shared_bottom"], res["lightgbm"], res["build"], res["quality"]
    types_ = {}
    for r in q["rows"]:
        if r["primary"]:
            types_[r["type"]] = types_.get(r["type"], 0) + 1
    lines = [
        f"bench_teacher  version={res['version']}  customers={res['customers_measured']:,} (requested "
        f"{res['customers_requested']:,}; {p['population']:,} at the cutoff)  epochs={res['config']['epochs']}  git={res['git_sha'][:12]}",
        f"machine: {res['machine']['cpu_count']} cores ({res['machine']['cpu']}), {res['machine']['mem_total_gib']} GiB RAM; "
        f"torch {res['versions']['torch']} on {p['device']}, {res['config']['threads']} threads for torch and LightGBM "
        f"({'all cores' if res['config']['threads'] == res['machine']['cpu_count'] else 'set by --threads'}; "
        f"the assets' default is cores // 2 concurrent runs)",
        f"inputs: {p['features']} features, {p['tasks']} kept tasks ({', '.join(f'{v} {k}' for k, v in sorted(types_.items()))}); rows "
        + ", ".join(f"{k} {v:,}" for k, v in p["rows"].items()),
        f"build (not timed in any ratio): {bd['wall_s']:.1f} s, peak {bd['peak_rss_gib']:.2f} GiB"
        + (" (reused inputs)" if bd.get("reused") else ""),
        f"config: TrainConfig(epochs={res['config']['epochs']}, patience={res['config']['epochs']}, batch_size="
        f"{p['config']['train']['batch_size']}, lr={p['config']['train']['lr']}, loss_weighting="
        f"{p['config']['train']['loss_weighting']}, seed={res['config']['seed']}); PLEConfig defaults (expert_dim "
        f"{p['config']['model']['expert_dim']}, {p['config']['model']['extraction_layers']} extraction layers, "
        f"{p['config']['model']['gate']} gates); experts built: {', '.join(p['experts'])}",
        "task losses (registry): " + "; ".join(f"{v}: {', '.join(t for t, l in q['losses'].items() if l == v)}"
                                               for v in dict.fromkeys(q["losses"].values())),
    ]
    src = res["source"]
    dirty = sorted(set(src["finai_assets_dirty"] or []) | set(src["finai_assets_dirty_at_end"] or []))
    lines.append(f"source: finai_assets from {', '.join(src['finai_assets_imported_from'])}; "
                 + ("uncommitted changes under finai_assets/: " + ", ".join(dirty) if dirty else "finai_assets/ clean at HEAD"))
    if res.get("note"):
        lines.append("NOTE: " + res["note"])
    hdr = (f"{'':22}{'params':>10}{'epochs':>7}{'s/epoch':>9}{'train s':>9}{'samples/s':>11}{'steps-only':>11}"
           f"{'infer rows/s':>13}{'peak GiB':>9}{'cpu':>6}{'other':>7}")
    lines += ["", hdr]
    for label, m in (("PLE teacher", p), ("shared-bottom MLP", s)):
        lines.append(f"{label:22}{m['parameters']:>10,}{m['epochs_run']:>7}{m['s_per_epoch']:>9.1f}{m['train_s']:>9.1f}"
                     f"{m['samples_per_s']:>11,.0f}{m['samples_per_s_steps_only']:>11,.0f}{m['infer_rows_per_s']:>13,.0f}"
                     f"{m['peak_rss_gib']:>9.2f}{m['child_cpu_cores']:>6.2f}{m['other_cpu_cores']:>7.2f}")
    rounds = sum(r["best"] for r in g["rounds"].values())
    capped = [t for t, r in g["rounds"].items() if r["best"] > g["max_rounds"] - g["early_stopping"]]
    lines.append(f"{'LightGBM per task':22}{'':>10}{'':>7}{'':>9}{g['wall_s']:>9.1f}{'':>11}{'':>11}"
                 f"{g['infer_rows_per_s']:>13,.0f}{g['peak_rss_gib']:>9.2f}{g['child_cpu_cores']:>6.2f}{g['other_cpu_cores']:>7.2f}")
    lines += [
        "(s/epoch: wall per epoch incl. its validation scoring; train s: the whole fit; samples/s = train rows x epochs / "
        "train s; steps-only: without validation scoring; cpu: the child's mean CPU use in cores; other: other "
        "processes' meanwhile)",
        f"LightGBM: {len(g['rounds'])} boosters, {rounds:,} boosting rounds kept in all (best iterations "
        + ", ".join(f"{t} {r['best']}" for t, r in g["rounds"].items()) + ")"
        + (f"; stopped by the round cap (max_rounds {g['max_rounds']}) while still improving on val (best iteration within "
           f"the last {g['early_stopping']} rounds): " + ", ".join(capped) if capped else ""),
        "PLE epochs: " + ", ".join(f"{i + 1}: {e:.1f} s (val composite {h['val_composite']:.4f})"
                                    for i, (e, h) in enumerate(zip(p["epoch_s"], p["history"])))
        + f"; one validation scoring pass {p['val_scoring_s']:.1f} s",
        "shared-bottom epochs: " + ", ".join(f"{i + 1}: {e:.1f} s (val composite {h['val_composite']:.4f})"
                                              for i, (e, h) in enumerate(zip(s["epoch_s"], s["history"])))
        + f"; one validation scoring pass {s['val_scoring_s']:.1f} s",
    ]
    reruns = {k: res[k]["attempts"] for k in ("ple", "shared_bottom", "lightgbm") if len(res[k].get("attempts", [])) > 1}
    for k, a in reruns.items():
        lines.append(f"{k} measured {len(a)} times (others' CPU " + ", ".join(f"{x['other_cpu_cores']:.2f}" for x in a if x["ok"])
                     + " cores); the least disturbed is reported")
    disturbed = res["disturbed"]
    if disturbed:
        lines.append(f"WARNING: other processes used > {DISTURBED_CORES} cores during {', '.join(disturbed)}: timing disturbed")
    r = res["ratio"]
    lines += ["", f"PLE / shared-bottom: x{r['s_per_epoch_ple_over_shared_bottom']:.1f} seconds per epoch, "
                  f"x{r['samples_per_s_ple_over_shared_bottom']:.3f} samples/s (steps only x{r['steps_only_samples_per_s_ple_over_shared_bottom']:.3f}), "
                  f"x{r['parameters_ple_over_shared_bottom']:.1f} parameters, x{r['peak_rss_ple_over_shared_bottom']:.2f} peak RSS; "
                  f"PLE train s / LightGBM wall x{r['train_s_ple_over_lightgbm']:.2f}"]
    lines += ["", "quality on the TEST split (per-task rows in the last column; best of PLE / LightGBM / shared-bottom; "
                  "gap = PLE - LightGBM, AUC gap +- 1.96 unpaired SE):",
              f"{'task':26}{'type':>11}{'metric':>9}{'PLE':>9}{'LightGBM':>9}{'shared-b':>9}{'oracle':>9}"
              f"{'best':>10}{'PLE-LGBM':>10}{'+-':>8}{'rows':>9}"]
    for row in q["rows"]:
        best = {"teacher": "PLE", "lightgbm": "LightGBM", "shared_bottom": "shared-b", None: "-"}[row["best"]]
        lines.append(f"{row['task']:26}{row['type']:>11}{row['metric']:>9}{fmt(row['ple'])}{fmt(row['lightgbm'])}"
                     f"{fmt(row['shared_bottom'])}{fmt(row['oracle'])}{'*' if row.get('oracle_is_ceiling') is False else ' '}{best:>9}{fmt(row['ple_minus_lightgbm'], 10)}"
                     f"{fmt(row['gap_ci95'], 8, 4)}{row['test_rows']:>9,}")
    m = q["mean_binary_auc"]
    lines.append(f"mean binary AUC over {q['binary_tasks']} tasks: PLE {m.get('ple', math.nan):.4f}, LightGBM "
                 f"{m.get('lightgbm', math.nan):.4f}, shared-bottom {m.get('shared_bottom', math.nan):.4f}")
    if q["oracle_not_ceiling"]:
        lines.append(f"  * oracle_report.is_ceiling false ({', '.join(q['oracle_not_ceiling'])}): the oracle score is only the event "
                     "probability, no ceiling (with_oracle shows it all the same)")
    if q["oracle_tasks"]:
        mo = q["mean_binary_auc_on_oracle_tasks"]
        lines.append(f"  on the {len(q['oracle_tasks'])} tasks whose oracle is a ceiling ({', '.join(q['oracle_tasks'])}): oracle "
                     f"{mo.get('oracle', math.nan):.4f}, PLE {mo.get('ple', math.nan):.4f}, LightGBM {mo.get('lightgbm', math.nan):.4f}, "
                     f"shared-bottom {mo.get('shared_bottom', math.nan):.4f}")
    w = res["wins"]
    lines.append(f"primary metrics: PLE best on {w['ple']}, LightGBM on {w['lightgbm']}, shared-bottom on {w['shared_bottom']} "
                 f"of {w['tasks']} tasks; PLE vs LightGBM: PLE ahead on {w['ple_ahead_of_lightgbm']}, behind on "
                 f"{w['ple_behind_lightgbm']}")
    if w["lightgbm_ahead"]:
        lines.append("  LightGBM ahead of PLE (primary metric, gap): " + ", ".join(
            f"{t} {g:+.4f}" for t, g in w["lightgbm_ahead"]))
    lines.append("routing from validation: " + ", ".join(f"{r['task']} {r['route']}" for r in q["routing"]))
    failed = [x for x in q["sanity"] if not x["passed"]]
    lines.append("teacher sanity (test): " + ("all tasks pass" if not failed else
                 "FAILS " + "; ".join(f"{x['task']}: {x['reason']}" for x in failed)))
    if res.get("failed_attempts"):
        lines += ["", "failed attempts:"] + [
            f"  {a['kind']} at {a['customers']:,}: {a['reason']} in stage {a.get('stage')!r} after {a['elapsed_s']} s"
            for a in res["failed_attempts"]
        ]
    return "\n".join(lines)


def _wins(q: dict) -> dict:
    primary = [r for r in q["rows"] if r["primary"]]
    ahead = [(r["task"], -r["ple_minus_lightgbm"]) for r in primary
             if r["ple_minus_lightgbm"] is not None and r["ple_minus_lightgbm"] < 0]
    return {
        "tasks": len(primary),
        "ple": sum(r["best"] == "teacher" for r in primary),
        "lightgbm": sum(r["best"] == "lightgbm" for r in primary),
        "shared_bottom": sum(r["best"] == "shared_bottom" for r in primary),
        "ple_ahead_of_lightgbm": sum((r["ple_minus_lightgbm"] or 0) > 0 for r in primary),
        "ple_behind_lightgbm": len(ahead),
        "lightgbm_ahead": ahead,  # (task, LightGBM - PLE) on the primary metric
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and LightGBM threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibration-customers", type=int, default=20_000)
    ap.add_argument("--max-rss-gib", type=float, default=20.0, help="memory guard per child (machine: 24 GiB)")
    ap.add_argument("--timeout-min", type=float, default=90.0, help="time limit per child")
    ap.add_argument("--wait-idle-min", type=float, default=10.0,
                    help="before each measured child, wait up to this long for other processes to go quiet")
    ap.add_argument("--rerun-disturbed", type=int, default=2,
                    help="measure a child again (at most this many times) when other processes disturbed it")
    ap.add_argument("--min-customers", type=int, default=10_000, help="stop halving below this size")
    ap.add_argument("--note", help="free text recorded in the JSON and the printout")
    ap.add_argument("--output", type=Path, default=RESULT)
    ap.add_argument("--child", choices=(*NETS, "lightgbm"), help=argparse.SUPPRESS)
    ap.add_argument("--inputs-dir", type=Path,
                    help="build the inputs into this folder and keep them; reused when built for the same --customers")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child in NETS:
        return child_net(args.workdir, args.child, args.epochs, args.threads, args.seed)
    if args.child == "lightgbm":
        return bl.child_lightgbm(args.workdir, args.threads, args.seed)

    started = dt.datetime.now(dt.timezone.utc)
    source = bl.source_state()
    with contextlib.ExitStack() as stack:
        workdir = bl.inputs_workdir(stack, args.inputs_dir, "bench_teacher_")
        built = {}

        def attempt(n: int) -> dict:
            built["build"] = build = bl.build_inputs(workdir, n, args.calibration_customers, args.max_rss_gib, args.timeout_min)
            if not build["ok"]:
                return build
            print(f"PLE teacher: {args.epochs} epochs at {n:,} customers, {args.threads} threads ...", flush=True)
            return measure("ple", workdir, n, args)

        n, ple, failed = bl.halve_until_ok(args.customers, args.min_customers, attempt)
        build = built["build"]
        print(f"  {ple['s_per_epoch']:.1f} s/epoch, {ple['samples_per_s']:,.0f} samples/s, peak {ple['peak_rss_gib']:.2f} GiB", flush=True)
        print(f"shared-bottom MLP: {args.epochs} epochs at {n:,} customers ...", flush=True)
        sb = measure("shared_bottom", workdir, n, args)
        if not sb["ok"]:
            raise SystemExit(f"shared-bottom failed at {n:,}: {sb['reason']}\n{sb['stderr_tail']}")
        print(f"  {sb['s_per_epoch']:.1f} s/epoch, {sb['samples_per_s']:,.0f} samples/s, peak {sb['peak_rss_gib']:.2f} GiB", flush=True)
        print(f"LightGBM per task at {n:,} customers ...", flush=True)
        lgb = measure("lightgbm", workdir, n, args)
        if not lgb["ok"]:
            raise SystemExit(f"LightGBM failed at {n:,}: {lgb['reason']}\n{lgb['stderr_tail']}")
        print(f"  {lgb['wall_s']:.1f} s, peak {lgb['peak_rss_gib']:.2f} GiB", flush=True)
        print("quality on the test split (the asset's evaluate_models / with_oracle / comparison) ...", flush=True)
        q = quality(workdir)
    note = bl.join_notes(args.note, bl.halving_note(args.customers, n, failed))
    m = {"ple": ple, "shared_bottom": sb, "lightgbm": lgb}
    res = {
        **bl.result_head("bench_teacher", started),
        "source": {**source, "finai_assets_imported_from": sorted({m[k]["finai_assets_path"] for k in m}),
                   "finai_assets_dirty_at_end": bl.source_state()["finai_assets_dirty"]},
        "version": VERSION,
        "customers_requested": args.customers,
        "customers_measured": n,
        "population_at_cutoff": ple["population"],
        "note": note,
        "config": {"epochs": args.epochs, "patience": args.epochs, "threads": args.threads, "seed": args.seed,
                   "calibration_customers": args.calibration_customers, "max_rss_gib": args.max_rss_gib,
                   "timeout_min": args.timeout_min, "wait_idle_min": args.wait_idle_min, "rerun_disturbed": args.rerun_disturbed},
        "ours_definition": "PLE teacher: finai_assets.lib.teacher.train_model('ple', design, specs, routing_schema(schema), "
                           "PLEConfig(), TrainConfig(epochs=E, patience=E, threads=T, seed)) - the ple_teacher asset's loop "
                           "on the train rows, validation scored every epoch",
        "baseline_definition": "shared-bottom MLP: train_model('shared_bottom', ...) with the same TrainConfig, same run; "
                               "per-task LightGBM: fit_lightgbm_baselines(train, val, specs, seed, threads=T) (wall only)",
        "rates": "s_per_epoch = mean wall between end-of-epoch log lines (incl. validation scoring; epoch 1 incl. tensor "
                 "setup); samples_per_s = train rows x epochs / TrainResult.seconds (the whole fit); "
                 "samples_per_s_steps_only = train rows x epochs / sum(epoch wall - one validation scoring pass); "
                 "infer_rows_per_s = test rows / predict() wall",
        "peak_memory": "VmHWM of the child process (own interpreter), GiB; setup_rss_gib = resident size after imports, "
                       "loading the parquet inputs and building the design matrix, before the clock starts",
        "quality_definition": "test split; finai_assets.lib.teacher.evaluate_models + with_oracle + comparison on "
                              "prediction_frame frames (model 'teacher' = PLE); best over PLE / LightGBM / shared-bottom "
                              "(MAE lower is better); gap_ci95 = 1.96 sqrt(se_ple^2 + se_lgbm^2) (Hanley-McNeil, unpaired)",
        "build": build,
        "ple": ple,
        "shared_bottom": sb,
        "lightgbm": lgb,
        "ratio": {
            "s_per_epoch_ple_over_shared_bottom": round(ple["s_per_epoch"] / sb["s_per_epoch"], 3),
            "samples_per_s_ple_over_shared_bottom": round(ple["samples_per_s"] / sb["samples_per_s"], 4),
            "steps_only_samples_per_s_ple_over_shared_bottom": round(ple["samples_per_s_steps_only"] / sb["samples_per_s_steps_only"], 4),
            "train_s_ple_over_shared_bottom": round(ple["train_s"] / sb["train_s"], 3),
            "infer_rows_per_s_ple_over_shared_bottom": round(ple["infer_rows_per_s"] / sb["infer_rows_per_s"], 4),
            "parameters_ple_over_shared_bottom": round(ple["parameters"] / sb["parameters"], 2),
            "peak_rss_ple_over_shared_bottom": round(ple["peak_rss_gib"] / sb["peak_rss_gib"], 3),
            "train_s_ple_over_lightgbm": round(ple["train_s"] / lgb["wall_s"], 3),
        },
        "quality": q,
        "wins": _wins(q),
        "disturbed": [k for k in m if m[k]["other_cpu_cores"] > DISTURBED_CORES],
        "disturbed_cores_threshold": DISTURBED_CORES,
        "failed_attempts": bl.failed_attempts(failed),
        "versions": bl.versions("torch", "lightgbm", "polars", "numpy", "sklearn"),
    }
    bl.write_result(res, args.output, report_text)


if __name__ == "__main__":
    main()

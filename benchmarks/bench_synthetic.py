"""Benchmark: generate N synthetic customers (17 monthly snapshots + card transactions) with
`finai_assets.lib.synthetic.generate`.

Baseline: `sample(num_rows=N)` of the same fitted SDV GaussianCopula synthesizer alone (N profile
rows, no personas, months or transactions), the chain's first step and the floor it cannot beat.
Details and latest figures: benchmarks/README.md.

Run:  .venv/bin/python benchmarks/bench_synthetic.py [--customers 1000000] [--version v4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import pickle
import tempfile
import time
from pathlib import Path

import benchlib as bl
from benchlib import peaks, rss_gib, write_record

RESULT = bl.RESULTS / "bench_synthetic.json"
GIB = 1024**3


# ------------------------------------------------------------------ child side


def _load(workdir: Path):
    from finai_assets.lib.synthetic import load_synthesizer

    with open(workdir / "calibration.pkl", "rb") as fh:
        cal = pickle.load(fh)
    synth = load_synthesizer(Path(cal["synthesizer_path"]), cal["synthesizer_sha256"])
    return cal["tables"], synth


def _instrument(synth) -> dict[str, dict]:
    """Wrap the chain's stages (module globals looked up at call time) with timers; returns the
    accumulator. Overhead: a few dozen calls in total."""
    import finai_assets.lib.simulate as sim
    import finai_assets.lib.synthetic as syn

    acc: dict[str, dict] = {}

    def wrap(name, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                d = acc.setdefault(name, {"seconds": 0.0, "calls": 0, "max_rss_after_gib": 0.0})
                d["seconds"] += time.perf_counter() - t
                d["calls"] += 1
                d["max_rss_after_gib"] = max(d["max_rss_after_gib"], round(rss_gib(), 3))

        return timed

    synth.sample = wrap("  sdv_sample", synth.sample)
    syn.sample_profiles = wrap("sample_profiles (incl. sdv_sample)", syn.sample_profiles)
    syn.world_for = wrap("world_for", syn.world_for)
    syn.simulate = wrap("simulate (total)", syn.simulate)
    syn.normalised_snapshots = wrap("normalised_snapshots", syn.normalised_snapshots)
    syn._gmm_posterior_draw = wrap("  persona posterior draw", syn._gmm_posterior_draw)
    sim._Panel.__init__ = wrap("  simulate: panel init", sim._Panel.__init__)
    sim._Panel.enter = wrap("  simulate: enter", sim._Panel.enter)
    sim._Panel.organic_month = wrap("  simulate: organic_month", sim._Panel.organic_month)
    sim._post_cutoff_events = wrap("  simulate: post_cutoff_events", sim._post_cutoff_events)
    sim._apply_post_cutoff = wrap("  simulate: apply_post_cutoff", sim._apply_post_cutoff)
    sim._snapshot_frame = wrap("  simulate: snapshot_frame", sim._snapshot_frame)
    sim._transactions_for_month = wrap("  simulate: transactions_for_month", sim._transactions_for_month)
    return acc


BREAKDOWN_ORDER = (
    "sample_profiles (incl. sdv_sample)", "  sdv_sample", "  persona posterior draw", "  profiles: other post-processing",
    "world_for", "simulate (total)", "  simulate: panel init", "  simulate: enter", "  simulate: organic_month",
    "  simulate: post_cutoff_events", "  simulate: apply_post_cutoff", "  simulate: snapshot_frame",
    "  simulate: transactions_for_month", "  simulate: other (concat, ground truth)", "normalised_snapshots",
)


def child(kind: str, workdir: Path, n: int, version: str, breakdown: bool) -> None:
    from finai_assets.lib.synthetic import RECIPES, VERSION_SEEDS, generate

    tables, synth = _load(workdir)
    seed = VERSION_SEEDS[version]
    setup_rss = rss_gib()
    out: dict = {"kind": kind, "customers": n, "setup_rss_gib": round(setup_rss, 3)}
    if kind == "baseline":
        synth._set_random_state(seed)  # as sample_profiles does
        t = time.perf_counter()
        frame = synth.sample(num_rows=n)["profiles"]
        wall = time.perf_counter() - t
        out.update(profile_rows=len(frame), output_gib=round(frame.memory_usage(deep=True).sum() / GIB, 3))
    else:
        acc = _instrument(synth) if breakdown else None
        t = time.perf_counter()
        res = generate(tables, synth, RECIPES[version], n, seed)
        wall = time.perf_counter() - t
        out.update(
            profile_rows=res.profiles.height,
            snapshot_rows=res.snapshots.height,
            transaction_rows=res.transactions.height,
            ground_truth_rows=res.ground_truth.height,
            output_gib=round(
                sum(f.estimated_size() for f in (res.snapshots, res.transactions, res.ground_truth, res.profiles)) / GIB, 3
            ),
        )
        if acc is not None:
            parts = {k: dict(v, seconds=round(v["seconds"], 3)) for k, v in acc.items()}
            inner = sum(v["seconds"] for k, v in acc.items() if k.startswith("  simulate:"))
            sim_total = acc.get("simulate (total)", {}).get("seconds", 0.0)
            parts["  simulate: other (concat, ground truth)"] = {"seconds": round(sim_total - inner, 3), "calls": 1}
            prof = acc.get("sample_profiles (incl. sdv_sample)", {}).get("seconds", 0.0)
            sdv = acc.get("  sdv_sample", {}).get("seconds", 0.0)
            post = acc.get("  persona posterior draw", {}).get("seconds", 0.0)
            parts["  profiles: other post-processing"] = {"seconds": round(prof - sdv - post, 3), "calls": 1}
            out["breakdown"] = {k: parts[k] for k in BREAKDOWN_ORDER if k in parts}
    out.update(wall_s=round(wall, 3), **peaks())
    write_record(workdir, kind, out)


# ------------------------------------------------------------------ parent side


def build_calibration(workdir: Path, n_cal: int) -> dict:
    """The calibration the children load (timed here, not in the ratio)."""
    cal, seconds = bl.calibrate_on_sample(n_cal, workdir / "artifacts")
    with open(workdir / "calibration.pkl", "wb") as fh:
        pickle.dump(
            {"tables": cal.tables, "synthesizer_path": str(cal.synthesizer_path), "synthesizer_sha256": cal.synthesizer_sha256},
            fh,
        )
    return {"calibration_customers": n_cal, **seconds, "sdv_fit_rows": int(cal.tables["synthesizer"]["fit_rows"][0])}


def run_child(kind: str, workdir: Path, n: int, args) -> dict:
    extra = ["--customers", str(n), "--version", args.version] + (["--no-breakdown"] if args.no_breakdown else [])
    return bl.run_child(Path(__file__), kind, workdir, extra, args.max_rss_gib, args.timeout_min) | {"customers": n}


def _rates(m: dict) -> dict:
    w = m["wall_s"]
    snap, txn, gt = m.get("snapshot_rows", 0), m.get("transaction_rows", 0), m.get("ground_truth_rows", 0)
    total = snap + txn + gt if "snapshot_rows" in m else m["profile_rows"]
    m.update(
        customers_per_s=round(m["customers"] / w, 1),
        snapshot_rows_per_s=round(snap / w, 1),
        transaction_rows_per_s=round(txn / w, 1),
        total_rows=total,
        total_rows_per_s=round(total / w, 1),
    )
    return m


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x else "-"


def report_text(res: dict) -> str:
    b, o = res["baseline"], res["ours"]
    lines = [
        f"bench_synthetic  version={res['version']}  customers={res['customers_measured']:,}"
        f" (requested {res['customers_requested']:,})  git={res['git_sha'][:12]}",
        f"machine: {res['machine']['cpu_count']} cores, {res['machine']['mem_total_gib']} GiB RAM; "
        f"calibration on {res['calibration']['calibration_customers']:,} sample customers: "
        f"sample+profiles {res['calibration']['sample_and_profiles_s']} s, calibrate {res['calibration']['calibrate_s']} s (not in ratio)",
    ]
    if res.get("note"):
        lines.append("NOTE: " + res["note"])
    hdr = f"{'':34}{'wall s':>9}{'cust/s':>11}{'snap rows/s':>13}{'txn rows/s':>13}{'total rows/s':>14}{'peak GiB':>10}"
    lines += ["", hdr]
    for label, m in (("baseline SDV sample (profiles)", b), (f"ours generate() {res['version']}", o)):
        lines.append(
            f"{label:34}{m['wall_s']:>9.1f}{_fmt_rate(m['customers_per_s']):>11}{_fmt_rate(m['snapshot_rows_per_s']):>13}"
            f"{_fmt_rate(m['transaction_rows_per_s']):>13}{_fmt_rate(m['total_rows_per_s']):>14}{m['peak_rss_gib']:>10.2f}"
        )
    lines += [
        "",
        f"rows: profiles {o['profile_rows']:,} | snapshots {o['snapshot_rows']:,} | transactions {o['transaction_rows']:,}"
        f" | ground truth {o['ground_truth_rows']:,}  (output ~{o['output_gib']} GiB in memory)",
        f"ratio ours/baseline: wall x{res['ratio']['wall_ours_over_baseline']:.2f}, "
        f"customers/s x{res['ratio']['customers_per_s_ours_over_baseline']:.3f}, "
        f"peak RSS x{res['ratio']['peak_rss_ours_over_baseline']:.2f}",
    ]
    if o.get("breakdown"):
        lines += ["", "ours, time by stage:"]
        for k, v in o["breakdown"].items():
            share = 100 * v["seconds"] / o["wall_s"]
            rss = f"  rss after <= {v['max_rss_after_gib']:.2f} GiB" if "max_rss_after_gib" in v else ""
            lines.append(f"  {k:44}{v['seconds']:>9.1f} s {share:>5.1f} %  x{v['calls']}{rss}")
    if res.get("failed_attempts"):
        lines += ["", "failed attempts:"] + [
            f"  {a['kind']} at {a['customers']:,}: {a['reason']} after {a['elapsed_s']} s" for a in res["failed_attempts"]
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--version", default="v4", choices=("v2", "v3", "v4"))
    ap.add_argument("--calibration-customers", type=int, default=20_000)
    ap.add_argument("--max-rss-gib", type=float, default=20.0, help="memory guard per child (machine: 24 GiB)")
    ap.add_argument("--timeout-min", type=float, default=20.0, help="time limit of the full chain per attempt")
    ap.add_argument("--min-customers", type=int, default=10_000, help="stop halving below this size")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-stage timers in the chain")
    ap.add_argument("--output", type=Path, default=RESULT)
    ap.add_argument("--child", choices=("baseline", "ours"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.workdir, args.customers, args.version, not args.no_breakdown)
        return

    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as tmp:
        workdir = Path(tmp)
        print(f"calibrating on the embedded sample ({args.calibration_customers:,} customers) ...", flush=True)
        calibration = build_calibration(workdir, args.calibration_customers)

        def attempt(n: int) -> dict:
            print(f"ours: generate() {args.version} at {n:,} customers ...", flush=True)
            return run_child("ours", workdir, n, args)

        n, ours, failed = bl.halve_until_ok(args.customers, args.min_customers, attempt)
        print(f"baseline: SDV GaussianCopula sample at {n:,} rows ...", flush=True)
        baseline = run_child("baseline", workdir, n, args)
        if not baseline["ok"]:
            raise SystemExit(f"baseline failed at {n:,}: {baseline['reason']}\n{baseline['stderr_tail']}")
    ours, baseline = _rates(ours), _rates(baseline)
    res = {
        **bl.result_head("bench_synthetic", started),
        "version": args.version,
        "customers_requested": args.customers,
        "customers_measured": n,
        "note": bl.halving_note(args.customers, n, failed),
        "baseline_definition": "SDV 2.0 GaussianCopulaSynthesizer.sample(num_rows=N) of the same fitted synthesizer: "
                               "N profile rows alone (no personas, months or transactions)",
        "ours_definition": "finai_assets.lib.synthetic.generate(tables, synthesizer, RECIPES[version], N, "
                           "VERSION_SEEDS[version]): profiles -> personas -> latents -> 17 monthly snapshots + "
                           "card transactions + ground truth",
        "peak_memory": "VmHWM of the child process (own interpreter), GiB; setup_rss_gib = resident size after "
                       "imports and loading the synthesizer/tables, before the clock starts",
        "total_rows": "baseline: profile rows; ours: snapshot + transaction + ground-truth rows",
        "calibration": calibration,
        "baseline": baseline,
        "ours": ours,
        "ratio": {
            "wall_ours_over_baseline": round(ours["wall_s"] / baseline["wall_s"], 3),
            "customers_per_s_ours_over_baseline": round(ours["customers_per_s"] / baseline["customers_per_s"], 4),
            "peak_rss_ours_over_baseline": round(ours["peak_rss_gib"] / baseline["peak_rss_gib"], 3),
        },
        "failed_attempts": bl.failed_attempts(failed),
        "versions": bl.versions("polars", "numpy", "sdv"),
    }
    bl.write_result(res, args.output, report_text)


if __name__ == "__main__":
    main()

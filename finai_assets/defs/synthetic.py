"""Synthetic stage: calibration on the raw data, then versions v2-v4 and their ground truth."""

import dataclasses

import dagster as dg
import polars as pl

from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.dagster_meta import code_version, input_hashes, markdown_table, outcome_check, table_metadata
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.lib import synthetic as synth
from finai_assets.lib import synthetic_checks as checks
from finai_assets.lib.plots import recipe_figure
from finai_assets.lib.profiles import customer_profiles as build_profiles
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports

SYNTHETIC_CHECKS = ("schema", "sdmetrics_quality", "privacy_dcr", "self_replication", "recipe_promises")


class CalibrationConfig(dg.Config):
    """Launchpad config of `synthetic_calibration`."""

    seed: int = 7
    sdv_distribution: str = "norm"
    check_sample_rows: int = 2_000


class SyntheticConfig(dg.Config):
    """Launchpad config of a synthetic version (the recipe itself is code: `lib/synthetic.py`)."""

    n_customers: int = 20_000
    seed_offset: int = 0
    # Smallest protected group accepted (default: 100 customers in a 15 % test split); tests
    # with few customers lower it.
    min_protected_group_customers: int = checks.SyntheticThresholds().min_group_customers


@dg.asset(group_name="synthetic", kinds={"sdv", "sklearn"}, code_version=CODE_VERSION, automation_condition=CHAIN_AUTOMATION)
def synthetic_calibration(
    config: CalibrationConfig, customer_profiles: pl.DataFrame, santander_raw: dict, card_transactions_raw: dict, paths: DataPaths
) -> dg.MaterializeResult:
    """Fitted on a seeded 80 % of customers: an SDV GaussianCopula over profiles (`norm`
    marginals), 6 GMM personas, monthly transition rates (acquisitions per product group,
    segment moves, exits) and transaction statistics (MCC mix, amounts, hours, stickiness).
    Keeps fixed real train/holdout profile samples for the privacy and quality checks."""
    cal = synth.calibrate(
        customer_profiles, santander_raw["snapshots"], card_transactions_raw["transactions"],
        paths.artifacts / "synthetic_calibration", seed=config.seed,
        sdv_distribution=config.sdv_distribution, sample_rows=config.check_sample_rows,
    )
    return dg.MaterializeResult(
        value=cal.tables,
        data_version=dg.DataVersion(content_hash(cal.tables)),
        metadata={
            "synthesizer_path": dg.MetadataValue.path(str(cal.synthesizer_path.resolve())),
            "synthesizer_sha256": cal.synthesizer_sha256,
            "fit_customers": int(cal.tables["synthesizer"]["fit_rows"][0]),
            "rates": markdown_table(cal.tables["rates"]),
            "group_acquisition_rates": markdown_table(cal.tables["group_rates"]),
            "persona_transactions": markdown_table(cal.tables["persona_txn"]),
            "input_hashes": input_hashes(paths.warehouse, {"customer_profiles": None, "santander_raw": None, "card_transactions_raw": None}),
            "config": dg.MetadataValue.json(config.model_dump()),
        },
    )


@dg.multi_asset(
    outs={
        "synthetic_customers": dg.AssetOut(
            group_name="synthetic", kinds={"polars", "numpy"}, code_version=CODE_VERSION, automation_condition=CHAIN_AUTOMATION,
            description="Synthetic customers of one version in the raw schemas: 17 monthly snapshots and card "
            "transactions, generated profile (SDV) -> persona -> five latents -> months, with post-cutoff "
            "events from the variance-budget logit. Checks: schema, SDMetrics quality, privacy (DCR), "
            "self-replication, recipe promises.",
        ),
        "synthetic_ground_truth": dg.AssetOut(
            group_name="synthetic", kinds={"polars"}, code_version=CODE_VERSION, automation_condition=CHAIN_AUTOMATION,
            description="The same generator run's hidden truth: persona, five latents, each post-cutoff event's "
            "true logit / probability and flip indicator. Evaluation only: never an input to features or labels.",
        ),
    },
    partitions_def=dataset_partitions,
    check_specs=[dg.AssetCheckSpec(name, asset="synthetic_customers", blocking=True) for name in SYNTHETIC_CHECKS],
)

def synthetic_version(context: dg.AssetExecutionContext, config: SyntheticConfig, synthetic_calibration: dict, paths: DataPaths):
    version = context.partition_key
    recipe = synth.RECIPES[version]
    seed = synth.VERSION_SEEDS[version] + config.seed_offset
    calibration = synthetic_calibration
    meta = calibration["synthesizer"].row(0, named=True)
    synthesizer = synth.load_synthesizer(meta["path"], meta["sha256"])
    out = synth.generate(calibration, synthesizer, recipe, config.n_customers, seed)
    context.log.info(f"{version}: generated {out.snapshots.height} snapshot rows, {out.transactions.height} transactions")

    synthetic_profiles = build_profiles(out.snapshots, out.transactions)
    th = checks.SyntheticThresholds(min_group_customers=config.min_protected_group_customers)
    outcomes = {
        "schema": checks.check_schema(out.snapshots, out.transactions),
        "sdmetrics_quality": checks.check_quality(
            calibration["real_train_sample"], synthetic_profiles, th, real_domain=calibration["real_train_profiles"]
        ),
        "privacy_dcr": checks.check_privacy(
            calibration["real_train_sample"], calibration["real_holdout_sample"], synthetic_profiles, th
        ),
        "self_replication": checks.check_self_replication(out.snapshots, out.ground_truth, th),
        "recipe_promises": checks.check_recipe(
            out.snapshots, out.transactions, out.ground_truth, recipe, th,
            mcc_vocabulary=calibration["mcc_vocabulary"]["mcc"],
        ),
    }
    promises = outcomes["recipe_promises"].metadata
    figure = recipe_figure(
        promises["acquisition_rates"], promises["segment_rates"], promises["group_rates"],
        recipe.acquisition_band, recipe.segment_band, f"{version}: recipe promises",
    )
    provenance = {
        "recipe": dg.MetadataValue.json(dataclasses.asdict(recipe)),
        "seed": seed,
        "config": dg.MetadataValue.json(config.model_dump()),
        "input_hashes": input_hashes(paths.warehouse, {"synthetic_calibration": None}),
    }
    tables = {"snapshots": out.snapshots, "transactions": out.transactions}
    yield dg.MaterializeResult(
        asset_key="synthetic_customers",
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            **table_metadata(out.snapshots),
            **table_metadata(out.transactions, "transactions"),
            "customers": out.snapshots["ncodpers"].n_unique(),
            "stickiness": promises["stickiness"],
            "mcc_boost_median": promises["mcc_boost_median"],
            **{k: v for k, v in promises.items() if k.startswith("di_")},
            "recipe_plot": dg.MetadataValue.md(figure),
            **provenance,
        },
    )
    yield dg.MaterializeResult(
        asset_key="synthetic_ground_truth",
        value=out.ground_truth,
        data_version=dg.DataVersion(content_hash(out.ground_truth)),
        metadata={**table_metadata(out.ground_truth), **provenance},
    )
    thresholds = {"thresholds": dg.MetadataValue.json(dataclasses.asdict(th))}
    for name, outcome in outcomes.items():
        yield outcome_check(name, "synthetic_customers", outcome, thresholds)

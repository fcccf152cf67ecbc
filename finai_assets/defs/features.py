"""Features stage: the pipeline fitted on the train split, and the feature table it produces."""

import dataclasses

import dagster as dg
import polars as pl

from finai_assets.defs.automation import CHAIN_AUTOMATION
from finai_assets.dagster_meta import code_version, input_hashes, markdown_table, table_metadata
from finai_assets.defs.partitions import dataset_partitions
from finai_assets.lib import feature_isolation as iso
from finai_assets.lib import features as feat
from finai_assets.lib import leakage
from finai_assets.lib.storage import content_hash
from finai_assets.resources import DataPaths

CODE_VERSION = code_version(__name__)  # changes with this module's source or the library code it imports


class FeatureSettings(dg.Config):
    """Launchpad config of the feature pipeline (protected-attribute policy included)."""

    sequence_length: int = feat.FeatureConfig().sequence_length
    seed: int = 0
    # Gender and residency / nationality are never model inputs unless switched on here.
    include_gender: bool = False
    include_residency: bool = False

    def to_lib(self) -> feat.FeatureConfig:
        excluded = (() if self.include_gender else ("sexo",)) + (() if self.include_residency else ("indext", "pais_residencia", "indresi"))
        return feat.FeatureConfig(sequence_length=self.sequence_length, excluded_protected=excluded, seed=self.seed)


@dg.asset(partitions_def=dataset_partitions, group_name="features", kinds={"polars", "sklearn"}, code_version=CODE_VERSION,
          automation_condition=CHAIN_AUTOMATION)
def feature_pipeline(
    context: dg.AssetExecutionContext, config: FeatureSettings, synthetic_customers: dict,
    split_assignments: pl.DataFrame, paths: DataPaths,
) -> dg.MaterializeResult:
    """Every fitted transform, learnt on train customers and pre-cutoff data only: scalers,
    channel and MCC vocabularies, the MCC hierarchy (Poincare) embedding, customer-product graph
    embeddings of the products, GMM personas. Reused to score production months."""
    lib_config = config.to_lib()
    snapshots, transactions = synthetic_customers["snapshots"], synthetic_customers["transactions"]
    tables = feat.fit_pipeline(snapshots, transactions, split_assignments, lib_config)
    tables["isolation"] = iso.pipeline_isolation(snapshots, transactions, split_assignments, tables)
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            "fitted_on_customers": int((split_assignments["split"] == "train").sum()),
            "scaled_features": tables["scaler"].height,
            "mcc_vocabulary": ", ".join(str(m) for m in tables["mcc_vocabulary"]["mcc"]),
            "excluded_protected_columns": ", ".join(lib_config.excluded_protected),
            "config": dg.MetadataValue.json(dataclasses.asdict(lib_config) | {"cutoff": str(lib_config.cutoff)}),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("synthetic_customers", "split_assignments")}),
        },
    )


@dg.asset(partitions_def=dataset_partitions, group_name="features", kinds={"polars"}, code_version=CODE_VERSION,
          automation_condition=CHAIN_AUTOMATION)
def feature_table(
    context: dg.AssetExecutionContext, synthetic_customers: dict, feature_pipeline: dict, paths: DataPaths,
) -> dg.MaterializeResult:

    """One row per customer present at the cutoff: demographics (gender and residency never
    inputs; a proxy probe reports how well the features still predict them), product holdings and history, transaction windows (7/30/90/180 days), the last K
    transactions as a sequence, MCC shares and hierarchy, customer-product graph embedding,
    persistence summaries of the spend series, persona probabilities — all from snapshots <= c
    and transactions before the end of day c. Table `schema`: column -> group -> experts."""
    snapshots, transactions = synthetic_customers["snapshots"], synthetic_customers["transactions"]
    pipeline = {k: v for k, v in feature_pipeline.items() if k != "isolation"}
    table = feat.transform(snapshots, transactions, pipeline)
    schema = feat.feature_schema(table.columns)
    isolation = pl.concat([feature_pipeline["isolation"], iso.table_isolation(snapshots, transactions, pipeline, table)])
    config = feat.pipeline_config(pipeline)
    proxies = leakage.proxy_probe(table, leakage.excluded_attributes(snapshots, config.cutoff, config.excluded_protected))
    tables = {"features": table, "schema": schema, "isolation": isolation, "proxy_probe": proxies}
    return dg.MaterializeResult(
        value=tables,
        data_version=dg.DataVersion(content_hash(tables)),
        metadata={
            **table_metadata(table),
            "features": table.width - 1,
            "time_isolation": markdown_table(isolation.select("test", "identical")),
            "proxy_probe_excluded_attributes": markdown_table(proxies),
            "groups": markdown_table(schema.group_by("group", "experts").len().sort("group")),
            "input_hashes": input_hashes(paths.warehouse, {a: context.partition_key for a in ("synthetic_customers", "feature_pipeline")}),
        },
    )

"""The single partition axis: the synthetic dataset version."""

import dagster as dg

from finai_assets.lib.synthetic import RECIPES

dataset_partitions = dg.StaticPartitionsDefinition(list(RECIPES))

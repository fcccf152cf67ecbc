"""The partition axes: the synthetic dataset version, and the production month."""

import dagster as dg

from finai_assets.lib.schema import SNAPSHOT_MONTHS, month_date, month_index
from finai_assets.lib.synthetic import RECIPES

dataset_partitions = dg.StaticPartitionsDefinition(list(RECIPES))

# Production months start the month after the raw history (2016-05-28): keys "2016-06-01", ...
PRODUCTION_START = month_date(month_index(SNAPSHOT_MONTHS[-1]) + 1).replace(day=1)
production_months = dg.MonthlyPartitionsDefinition(start_date=PRODUCTION_START.isoformat())

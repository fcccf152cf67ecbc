"""finai_assets: the Dagster code location (definitions in ``defs/``, logic in ``lib/``)."""

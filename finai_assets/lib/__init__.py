"""Plain-Python logic of the platform. Nothing under ``lib`` imports Dagster."""

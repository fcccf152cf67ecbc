"""Declarative automation: the conditions the assets carry and the sensor that evaluates them.

Environment switches, read when the code location loads (a sensor's default state is part of
the definitions): FINAI_AUTOMATION=off leaves the automation sensor stopped (a UI toggle turns it
on); FINAI_RETRAIN_ON_DRIFT=off leaves the drift-breach retrain sensor stopped.
"""

import os

import dagster as dg


def switched_on(name: str) -> bool:
    return os.environ.get(name, "on").lower() not in ("0", "off", "false", "no")


# The chain (raw -> synthetic -> features -> teacher -> students -> governance): rebuilt when an
# upstream changes, never past a failed blocking check of a dependency.
CHAIN_AUTOMATION = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

# Production months: eager() only ever considers the latest time partition, but a month is scored
# when its own file lands, whatever month it is; and only a dependency whose *data* changed
# (a new drop, a new champion) triggers a rescore, so rematerializing an unchanged champion
# rescores nothing.
_DEP_DATA_CHANGED = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.newly_updated() & dg.AutomationCondition.data_version_changed()
    & ~dg.AutomationCondition.executed_with_root_target()
).with_label("any_dep_data_changed")
PRODUCTION_AUTOMATION = (
    _DEP_DATA_CHANGED.since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("on_new_data_any_month")

finai_automation = dg.AutomationConditionSensorDefinition(
    "finai_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING if switched_on("FINAI_AUTOMATION") else dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=15,
    description="Evaluates every asset's automation condition: the chain rebuilds after santander_raw changes, "
                "production months are scored, drift- and fairness-checked when their data lands.",
)

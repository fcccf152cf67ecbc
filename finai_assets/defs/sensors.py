"""Sensors: production drops become runs, and a drift breach requests the rebuild."""

import json

import dagster as dg

from finai_assets.defs.automation import switched_on
from finai_assets.defs.production import production_snapshots
from finai_assets.defs.raw import santander_raw
from finai_assets.lib import inbox
from finai_assets.resources import DataPaths

REQUESTED_KEPT = 500  # drop keys the cursor remembers as requested (the ledger holds every processed one)


@dg.sensor(target=[production_snapshots], minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def production_drop_sensor(context: dg.SensorEvaluationContext, paths: DataPaths) -> dg.SensorResult:
    """Watches `production/incoming/` and only requests runs: a month's drop
    (`snapshots_YYYY-MM.csv` [+ `transactions_YYYY-MM.csv`]) whose files have settled (size and
    mtime unchanged across two ticks, or a `.done` marker) gets one `production_snapshots` run
    for its month, keyed by the drop's content hash. A drop already in the ledger, or already
    requested, gets none; a replacement (new content) gets a new one. The run validates and
    moves the files."""
    cursor = json.loads(context.cursor) if context.cursor else {"seen": {}, "hashes": {}, "requested": []}
    scan = inbox.scan_incoming(paths.production.incoming, cursor["seen"], cursor["hashes"])
    ledger = paths.production.ledger
    requested, requests, skipped = list(cursor["requested"]), [], {}
    for drop in scan.settled:
        known = ledger.get(drop.key)
        if known is not None or drop.key in requested:
            skipped[drop.snapshot] = (f"same content as the drop {known['status']} for {known['month']} (ledger {known['sequence']})"
                                      if known else "already requested")
            continue
        config = {"snapshot_file": drop.snapshot, "snapshot_sha256": drop.snapshot_sha256,
                  "transactions_file": drop.transactions, "transactions_sha256": drop.transactions_sha256}
        requests.append(dg.RunRequest(run_key=drop.key, partition_key=drop.partition,
                                      run_config={"ops": {"production_snapshots": {"config": config}}},
                                      tags={"finai/drop": drop.snapshot, "finai/drop_key": drop.key[:16]}))
        requested.append(drop.key)
    for name, why in {**scan.waiting, **scan.ignored, **skipped}.items():
        context.log.info(f"{name}: {why}")
    new_cursor = json.dumps({"seen": scan.seen, "hashes": scan.hashes, "requested": requested[-REQUESTED_KEPT:]})
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)
    why = "; ".join(f"{n}: {w}" for n, w in {**scan.waiting, **scan.ignored, **skipped}.items()) or "incoming/ holds no drop"
    return dg.SensorResult(skip_reason=why, cursor=new_cursor)


@dg.sensor(
    target=[santander_raw], minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING if switched_on("FINAI_RETRAIN_ON_DRIFT") else dg.DefaultSensorStatus.STOPPED,
)
def retrain_on_drift_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """On a drift breach (a new `drift_report` materialization with `drift_breached`), requests
    `santander_raw`, which appends the accepted production months to the history; automation
    then rebuilds the chain into a candidate that `promotion_decision` judges. One request per
    tick however many months breached. FINAI_RETRAIN_ON_DRIFT=off leaves it stopped."""
    after = int(context.cursor) if context.cursor else 0
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), after_storage_id=after), limit=1000, ascending=True).records
    if not records:
        return dg.SensorResult(skip_reason="no new drift report", cursor=str(after))
    newest = max(r.storage_id for r in records)
    breached = sorted({r.partition_key for r in records if (m := r.asset_materialization.metadata.get("drift_breached")) and m.value})
    if not breached:
        return dg.SensorResult(skip_reason=f"{len(records)} new drift reports, none breached", cursor=str(newest))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"drift-breach-{newest}", asset_selection=[dg.AssetKey("santander_raw")],
                                    tags={"finai/trigger": "drift_breach", "finai/breached_months": ",".join(breached)})],
        cursor=str(newest),
    )

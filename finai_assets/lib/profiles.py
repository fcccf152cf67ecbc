"""One row per customer: the state at first observation plus behaviour aggregates (DuckDB)."""

from __future__ import annotations

import duckdb
import polars as pl

from finai_assets.lib.schema import PRODUCT_COLUMNS

# Columns the generator needs from a profile, with the SQL that builds each one.
PROFILE_DEMOGRAPHICS = (
    "sexo", "age", "renta", "segmento", "cod_prov", "pais_residencia", "indext", "indresi",
    "canal_entrada", "ind_empleado", "antiguedad", "ind_actividad_cliente", "fecha_alta",
)


def customer_profiles(snapshots: pl.DataFrame, transactions: pl.DataFrame) -> pl.DataFrame:
    """Vectorised in DuckDB: first-observation demographics, holdings count, panel span,
    transaction rate, amount level and MCC breadth (null when transactions are unavailable)."""
    first_obs = ", ".join(f"arg_min({c}, fecha_dato) AS {c}" for c in PROFILE_DEMOGRAPHICS)
    n_products = " + ".join(f"coalesce({c}, 0)" for c in PRODUCT_COLUMNS)
    con = duckdb.connect()
    try:
        con.register("snapshots", snapshots.select("fecha_dato", "ncodpers", "antiguedad_sentinel", *PROFILE_DEMOGRAPHICS, *PRODUCT_COLUMNS))
        con.register("transactions", transactions.select("ncodpers", "ts", "amount", "mcc"))
        frame = con.execute(
            f"""
            WITH snap AS (
                SELECT *, {n_products} AS n_products,
                       (year(fecha_dato) - 2015) * 12 + month(fecha_dato) - 1 AS month_index
                FROM snapshots
            ),
            txn_end AS (  -- the last snapshot month the transactions cover (days 29-31 belong to the next one)
                SELECT max((year(ts) - 2015) * 12 + month(ts) - 1 + CASE WHEN day(ts) > 28 THEN 1 ELSE 0 END) AS last_month
                FROM transactions
            ),
            per_customer AS (
                SELECT ncodpers,
                       min(month_index) AS first_month,
                       max(month_index) AS last_month,
                       count(*) AS months_observed,
                       count(*) FILTER (WHERE month_index <= (SELECT last_month FROM txn_end)) AS txn_months_observed,
                       arg_min(n_products, fecha_dato) AS n_products_first,
                       avg(n_products) AS n_products_mean,
                       bool_or(antiguedad_sentinel) AS antiguedad_sentinel,
                       {first_obs}
                FROM snap GROUP BY ncodpers
            ),
            txn AS (
                SELECT ncodpers, count(*) AS n_txn, avg(ln(1 + greatest(amount, 0))) AS log_amount_mean,
                       count(DISTINCT mcc) AS distinct_mcc
                FROM transactions GROUP BY ncodpers
            )
            SELECT p.* EXCLUDE (txn_months_observed),
                   -- a rate over the months both sources cover (appended production months may lack transactions)
                   coalesce(t.n_txn, 0) / nullif(p.txn_months_observed, 0)::DOUBLE AS txn_per_month,
                   t.log_amount_mean,
                   coalesce(t.distinct_mcc, 0) AS distinct_mcc
            FROM per_customer p LEFT JOIN txn t USING (ncodpers)
            ORDER BY ncodpers
            """
        ).pl()
    finally:
        con.close()
    if transactions.is_empty():
        frame = frame.with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ("txn_per_month", "log_amount_mean", "distinct_mcc")
        )
    return frame

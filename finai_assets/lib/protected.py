"""The protected attributes and their groups: one vocabulary for every stage that judges them.

Five attributes: gender, age band, region, income band (quintiles of renta fitted on a reference
population) and residency (domestic / foreign). A missing sexo, cod_prov or renta forms the group
"missing"; age has no missing group (a customer without an age is an error).

Disparate impact (DI) is the lowest group rate over the highest; when nobody is selected at all
it is 0 (never 1, never undefined): a decision that selects nobody is not fair by default.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from finai_assets.lib.schema import AGE_BAND_EDGES, AGE_BANDS, PROVINCES, REGIONS

MISSING = "missing"
INCOME_BANDS: tuple[str, ...] = tuple(f"Q{q}" for q in range(1, 6))
DECLARED_GROUPS: dict[str, tuple[str, ...]] = {
    "gender": ("H", "V", MISSING),
    "age_band": AGE_BANDS,
    "region": (*REGIONS, MISSING),
    "income_band": (*INCOME_BANDS, MISSING),
    "residency": ("domestic", "foreign"),
}
ATTRIBUTE_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(sorted(DECLARED_GROUPS), 2))
SNAPSHOT_COLUMNS: tuple[str, ...] = ("ncodpers", "sexo", "age", "cod_prov", "renta", "indext", "pais_residencia")


def disparate_impact(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """low / high elementwise; 0 where high is 0 (nobody selected), NaN where high is NaN."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    ratio = np.zeros_like(high)
    np.divide(low, high, out=ratio, where=high > 0)
    ratio[np.isnan(high)] = np.nan
    return ratio


def fit_income_edges(renta_train: pl.Series) -> list[float]:
    """The 4 inner quintile edges of `renta` over the train customers' non-null values."""
    values = renta_train.drop_nulls().cast(pl.Float64).to_numpy()
    if np.isnan(values).any():
        raise ValueError("renta_train holds NaN: missing incomes must be null (they form the 'missing' band)")
    if values.size < len(INCOME_BANDS):
        raise ValueError(f"fit_income_edges needs at least {len(INCOME_BANDS)} non-null train renta values, "
                         f"got {values.size}: pass the renta of every train customer")
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
    if not (np.diff(edges) > 0).all():
        raise ValueError(f"train renta quintile edges are not strictly increasing ({edges.tolist()}): too many "
                         "tied incomes for five income bands; check the renta column")
    return edges.tolist()


def protected_groups(snapshot_at_cutoff: pl.DataFrame, income_edges: list[float]) -> pl.DataFrame:
    """ncodpers + the group (string) of each protected attribute . Missing sexo,
    cod_prov or renta form the group "missing"; income bands are [edge_i, edge_i+1) of the
    train-fitted `income_edges`; residency is foreign when indext = S or pais_residencia != ES
    (a null counts as neither), domestic otherwise."""
    absent = [c for c in SNAPSHOT_COLUMNS if c not in snapshot_at_cutoff.columns]
    if absent:
        raise ValueError(f"snapshot_at_cutoff lacks columns {absent}: pass the snapshot rows at the cutoff")
    edges = np.asarray(income_edges, dtype=float)
    if edges.shape != (len(INCOME_BANDS) - 1,) or not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise ValueError(f"income_edges must be {len(INCOME_BANDS) - 1} finite increasing values from "
                         f"fit_income_edges(train renta), got {list(income_edges)}")
    if snapshot_at_cutoff["ncodpers"].is_duplicated().any():
        raise ValueError("snapshot_at_cutoff has several rows per ncodpers: filter it to the cutoff month")
    null_age = snapshot_at_cutoff["age"].null_count()
    if null_age:
        raise ValueError(f"{null_age} customers have no age and age_band declares no missing group: fix age upstream")
    if snapshot_at_cutoff["renta"].cast(pl.Float64).is_nan().any():
        raise ValueError("renta holds NaN: missing incomes must be null")
    unknown = snapshot_at_cutoff.filter(~pl.col("cod_prov").is_in(list(PROVINCES)))["cod_prov"].unique().sort()
    if unknown.len():
        raise ValueError(f"unknown cod_prov codes {unknown.to_list()}: not Spanish INE province codes 1-52 "
                         "(schema.PROVINCES); fix cod_prov upstream")
    region = {code: reg for code, (_, reg) in PROVINCES.items()}
    foreign = (pl.col("indext") == "S").fill_null(False) | (pl.col("pais_residencia") != "ES").fill_null(False)
    return snapshot_at_cutoff.select(
        "ncodpers",
        gender=pl.col("sexo").cast(pl.Utf8).fill_null(MISSING),
        age_band=pl.col("age").cut(list(AGE_BAND_EDGES), labels=list(AGE_BANDS), left_closed=True).cast(pl.Utf8),
        region=pl.col("cod_prov").replace_strict(region, default=None, return_dtype=pl.Utf8).fill_null(MISSING),
        income_band=pl.col("renta").cut(edges.tolist(), labels=list(INCOME_BANDS), left_closed=True)
        .cast(pl.Utf8).fill_null(MISSING),
        residency=pl.when(foreign).then(pl.lit("foreign")).otherwise(pl.lit("domestic")),
    )


def validate_groups(groups: pl.DataFrame, declared: dict[str, tuple[str, ...]] = DECLARED_GROUPS) -> None:
    """Every declared attribute is a column, every declared group occurs in it and every value
    is declared."""
    absent = [a for a in declared if a not in groups.columns]
    if absent:
        raise ValueError(f"declared attributes {absent} are not columns of the groups table: build it with "
                         "protected_groups()")
    problems = []
    for attribute, names in declared.items():
        values = groups[attribute]
        if values.null_count():
            problems.append(f"{attribute}: {values.null_count()} null values (a missing value is the group "
                            f"'{MISSING}' where declared)")
        present = set(values.drop_nulls().unique().to_list())
        undeclared = sorted(present - set(names))
        if undeclared:
            problems.append(f"{attribute}: values {undeclared} are not declared groups {list(names)}; fix the "
                            "data or declare them")
        missing = [g for g in names if g not in present]
        if missing:
            problems.append(f"{attribute}: declared groups {missing} are absent from the data; the data must "
                            "carry every group  or the declaration is wrong")
    if problems:
        raise ValueError("protected groups do not match the declaration: " + "; ".join(problems))

"""Small numeric helpers shared by several stages: a seeded hash for stable splits, integer
coding and conditional entropy of columns, and Gaussian mixtures stored as tables."""

from __future__ import annotations

import numpy as np
import polars as pl

MAX_BINS = 32
MAX_LEVELS = 64


def stable_hash(*keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 over integer keys: the same on every machine and library version."""
    x = np.full(len(keys[0]), np.uint64(seed), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            x = x ^ (np.asarray(key).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
    return x


def column_codes(column: pl.Series) -> np.ndarray:
    """Integer codes: numerics and dates in <= 32 quantile bins, other columns by level (top 63 +
    other beyond 64 levels); null is its own code."""
    if column.dtype.is_numeric() or column.dtype.is_temporal():
        values = column.to_physical()
        if values.drop_nulls().n_unique() > MAX_BINS:
            values = values.qcut(MAX_BINS, allow_duplicates=True).to_physical()
        codes = values.rank("dense").cast(pl.Int64) - 1
    else:
        text = column.cast(pl.Utf8)
        levels = text.drop_nulls().value_counts(sort=True)[text.name]
        kept = levels.head(MAX_LEVELS - 1 if levels.len() > MAX_LEVELS else MAX_LEVELS)
        codes = text.replace_strict(kept, pl.int_range(kept.len(), eager=True), default=kept.len(), return_dtype=pl.Int64)
        codes = pl.select(pl.when(text.is_null()).then(None).otherwise(codes)).to_series()
    return codes.fill_null((codes.max() or 0) + 1).to_numpy()


def entropy(codes: np.ndarray) -> float:
    """Shannon entropy (nats) of integer codes."""
    p = np.bincount(codes) / codes.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def conditional_entropy_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """H(Y|X) / H(Y) on integer codes (Y not constant): 0 when X determines Y, 1 when independent."""
    return (entropy(x * (int(y.max()) + 1) + y) - entropy(x)) / entropy(y)


def gmm_table(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> pl.DataFrame:
    """A fitted Gaussian mixture as a table (one row per component)."""
    return pl.DataFrame(
        {
            "persona": np.arange(len(weights)),
            "weight": weights,
            "mean": [list(m) for m in means],
            "covariance": [list(c.ravel()) for c in covariances],
        }
    )


def gmm_posterior(gmm: pl.DataFrame, z: np.ndarray) -> np.ndarray:
    """P(component | z) for a mixture stored by `gmm_table` (numpy / scipy, no sklearn)."""
    from scipy.stats import multivariate_normal

    g = gmm.sort("persona")
    d = z.shape[1]
    logp = np.stack(
        [
            np.log(w) + multivariate_normal(np.asarray(m), np.asarray(c).reshape(d, d), allow_singular=True).logpdf(z)
            for w, m, c in zip(g["weight"], g["mean"], g["covariance"])
        ],
        1,
    )
    post = np.exp(logp - logp.max(1, keepdims=True))
    return post / post.sum(1, keepdims=True)

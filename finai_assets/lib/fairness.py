"""Fairness across the five protected attributes (thresholds: docs/thresholds.md#fairness).

protected groups (income quintiles fitted on train customers) -> validation against the declared
groups -> per binary task x model x operating point, on the labelled test rows: per group
selection rate and TPR (fairlearn `MetricFrame` point estimates), per attribute DI (min/max
selection rate), SPD and EOD beside the labels' own, with percentile bootstrap CIs -> one check
per attribute: the model's DI lower bound against 0.80 x the labels' DI.

Nothing defaults to "fair": a group below the minimum size is `insufficient_data` and left out of
its attribute's DI; an attribute with fewer than two sufficient groups is `insufficient_data`; a
zero selection rate gives DI 0 and nobody selected is `no_selection`; neither passes.

The bootstrap is vectorised: one [resamples, rows] index matrix per task, shared by every model,
operating point and attribute; each (attribute, task) is one gather and one bincount over
resample x group x cell, a cell being (label, the decision bits of up to four decisions).
Percentile intervals: DI (a min/max) is biased low under resampling, so near DI 1 the interval
can end below the estimate, which makes the lower-bound check conservative.
fairlearn (imported lazily) runs once per task on the aggregated cells of the five attributes
(one row per cell weighted by its count: exactly the per-row metrics, without fairlearn's
per-row cost); the intersections, ~10x the groups, take the same arithmetic from the counts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib

import numpy as np
import polars as pl

from finai_assets.lib.protected import (
    ATTRIBUTE_PAIRS,
    DECLARED_GROUPS,
    disparate_impact,
    fit_income_edges,
    protected_groups,
    validate_groups,
)

OPERATING_POINTS: tuple[str, ...] = ("threshold", "top_k")
LABELS = "labels"  # the labels as a "model": they select exactly the positives
MAX_RESAMPLES = 200
MIN_RESAMPLES = 10
DECISIONS_PER_PASS = 4  # cells per group = 2 ** (1 + decisions): 32

OK = "ok"
INSUFFICIENT = "insufficient_data"
NO_SELECTION = "no_selection"
NO_POSITIVES = "no_positives"  # group level: TPR undefined, left out of EOD

GROUP_COLUMNS = ("task", "model", "operating_point", "attribute", "group", "n", "positives", "selection_rate",
                 "sel_ci_low", "sel_ci_high", "tpr", "tpr_ci_low", "tpr_ci_high", "status")
SUMMARY_COLUMNS = ("task", "model", "operating_point", "attribute", "di", "di_ci_low", "di_ci_high", "spd",
                   "spd_ci_low", "spd_ci_high", "eod", "eod_ci_low", "eod_ci_high", "label_di", "label_spd",
                   "four_fifths_pass", "relative_di_pass", "spd_pass", "eod_pass", "status", "groups_used",
                   "groups_insufficient", "note")


@dataclasses.dataclass(frozen=True)
class FairnessConfig:
    """Defaults. Decisions: `threshold` = calibrated p >= threshold; `top_k` = the
    ceil(top_k_percent % x n) highest scores among the task's labelled test rows (ties: lower
    ncodpers first)."""

    min_group_size: int = 100
    threshold: float = 0.5
    top_k_percent: float = 10.0
    resamples: int = 200
    seed: int = 0
    confidence: float = 0.95
    relative_di_floor: float = 0.80
    four_fifths: float = 0.80
    spd_limit: float = 0.10
    eod_limit: float = 0.10
    check_operating_point: str = "top_k"

    def __post_init__(self):
        problems = []
        if not (isinstance(self.min_group_size, int) and self.min_group_size >= 1):
            problems.append(f"min_group_size must be an int >= 1, got {self.min_group_size!r}")
        if not 0 < self.threshold <= 1:
            problems.append(f"threshold must be in (0, 1], got {self.threshold!r}")
        if not 0 < self.top_k_percent < 100:
            problems.append(f"top_k_percent must be in (0, 100), got {self.top_k_percent!r}")
        if not (isinstance(self.resamples, int) and MIN_RESAMPLES <= self.resamples <= MAX_RESAMPLES):
            problems.append(f"resamples must be an int in [{MIN_RESAMPLES}, {MAX_RESAMPLES}] (vectorised bootstrap), "
                            f"got {self.resamples!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            problems.append(f"seed must be an int >= 0, got {self.seed!r}")
        if not 0 < self.confidence < 1:
            problems.append(f"confidence must be in (0, 1), got {self.confidence!r}")
        for name in ("relative_di_floor", "four_fifths", "spd_limit", "eod_limit"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.check_operating_point not in OPERATING_POINTS:
            problems.append(f"check_operating_point must be one of {OPERATING_POINTS}, "
                            f"got {self.check_operating_point!r}")
        if problems:
            raise ValueError("invalid FairnessConfig: " + "; ".join(problems))


# ------------------------------------------------------------------ decisions and the bootstrap



def test_split_groups(snapshot_at_cutoff: pl.DataFrame, labels: pl.DataFrame, tasks: list[str]
                      ) -> tuple[pl.DataFrame, pl.DataFrame, list[float]]:
    """(test labels, test customers' protected groups, income edges): the edges fitted on the train
    customers of `labels` (ncodpers, split, tasks...), groups validated against the declared ones."""
    train_ids = labels.filter(pl.col("split") == "train").select("ncodpers")
    edges = fit_income_edges(snapshot_at_cutoff.join(train_ids, on="ncodpers")["renta"])
    groups = protected_groups(snapshot_at_cutoff, edges)
    test = labels.filter(pl.col("split") == "test").select("ncodpers", *tasks)
    test_groups = test.select("ncodpers").join(groups, on="ncodpers", how="left")
    if test_groups.select(pl.exclude("ncodpers").is_null().any()).row(0).count(True):
        raise ValueError("test customers without a snapshot at the cutoff: the labels and the snapshots come from different "
                         "builds; rematerialize task_labels and synthetic_customers together")
    validate_groups(test_groups)
    return test, test_groups, edges


def top_k_selection(scores: np.ndarray, ncodpers: np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask of the ceil(percent % x n) highest scores; ties go to the lower ncodpers."""
    n_selected = math.ceil(percent * scores.size / 100 - 1e-9)
    order = np.lexsort((ncodpers, -scores))
    selected = np.zeros(scores.size, dtype=bool)
    selected[order[:n_selected]] = True
    return selected


def resample_indices(n_rows: int, config: FairnessConfig, task: str) -> np.ndarray:
    """The [resamples, n_rows] int32 bootstrap index matrix of one task population, seeded by
    (config.seed, task) so every model, operating point and attribute shares it."""
    rng = np.random.default_rng([config.seed, zlib.crc32(task.encode())])
    return rng.integers(0, n_rows, size=(config.resamples, n_rows), dtype=np.int32)


def bootstrap_counts(keys: np.ndarray, n_keys: int, indices: np.ndarray) -> np.ndarray:
    """counts[b, k] = how often key k occurs in resample b: one gather and one bincount over
    resample x key, no loop over resamples."""
    resamples = indices.shape[0]
    dtype = np.int32 if resamples * n_keys < 2**31 else np.int64
    drawn = keys.astype(dtype)[indices]
    drawn += (np.arange(resamples, dtype=dtype) * n_keys)[:, None]
    return np.bincount(drawn.ravel(), minlength=resamples * n_keys).reshape(resamples, n_keys)


def _percentile_ci(draws: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, using the resamples where the statistic is defined
    (a group absent from a resample has no rate there); null where it never is."""
    alpha = (1 - confidence) / 2
    draws = draws.reshape(draws.shape[0], -1)
    low = np.full(draws.shape[1], np.nan)
    high = np.full(draws.shape[1], np.nan)
    defined = np.isfinite(draws).any(axis=0)
    if defined.any():
        low[defined], high[defined] = np.nanquantile(draws[:, defined], [alpha, 1 - alpha], axis=0)
    return low, high


def _scalar_ci(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = _percentile_ci(draws, confidence)
    return float(low[0]), float(high[0])


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


# ------------------------------------------------------------------ inputs


def _score_column(model: str, task: str) -> str:
    return f"{model}/p_{task}"


def _aligned(groups: pl.DataFrame, labels: pl.DataFrame, scores: dict[str, pl.DataFrame]
             ) -> tuple[pl.DataFrame, list[str], list[str]]:
    """One frame per test customer (sorted by ncodpers): groups, labels and every model's
    scores. groups and labels hold exactly the test customers; scores may hold more (a model's
    predictions for every split), of which the test customers are taken."""
    validate_groups(groups)
    tasks = [c for c in labels.columns if c != "ncodpers"]
    if "ncodpers" not in labels.columns or not tasks:
        raise ValueError("labels must hold ncodpers and one 0/1 column per binary task")
    if not scores or LABELS in scores:
        raise ValueError(f"scores must map at least one model name (not '{LABELS}') to its score frame")
    frames = {"labels": labels, "groups": groups, **{f"scores[{m}]": s for m, s in scores.items()}}
    for name, frame in frames.items():
        if "ncodpers" not in frame.columns or frame["ncodpers"].is_duplicated().any():
            raise ValueError(f"{name} needs one row per ncodpers")
    for name, frame in frames.items():
        absent = labels.join(frame, on="ncodpers", how="anti").height
        if absent:
            raise ValueError(f"{name} lacks {absent} of the test customers in labels: pass every test customer")
    extra = groups.join(labels, on="ncodpers", how="anti").height
    if extra:
        raise ValueError(f"groups holds {extra} customers absent from labels: the groups are validated on the "
                         "test split, so pass exactly its customers")
    for task in tasks:
        values = labels[task].cast(pl.Int8) if labels[task].dtype == pl.Boolean else labels[task]
        if not values.dtype.is_numeric():
            raise ValueError(f"label {task} has dtype {values.dtype}: binary labels must be 0/1 integers "
                             "(null = unlabelled)")
        if values.dtype.is_float() and values.is_nan().any():
            raise ValueError(f"label {task} holds NaN: unlabelled rows must be null")
        if not values.drop_nulls().is_in([0, 1]).all():
            raise ValueError(f"label {task} is not binary 0/1 (null = unlabelled): fairness covers binary tasks only")
        if values.drop_nulls().len() == 0:
            raise ValueError(f"label {task} has no labelled test rows")
    frame = labels.with_columns(pl.col(t).cast(pl.Int8) for t in tasks).join(
        groups.select("ncodpers", *DECLARED_GROUPS), on="ncodpers")
    for model, table in scores.items():
        absent = [f"p_{t}" for t in tasks if f"p_{t}" not in table.columns]
        if absent:
            raise ValueError(f"scores[{model}] lacks {absent}: one p_<task> column per binary task")
        frame = frame.join(table.select("ncodpers", *(pl.col(f"p_{t}").cast(pl.Float64).alias(_score_column(model, t))
                                                      for t in tasks)), on="ncodpers")
        for task in tasks:
            p = frame.filter(pl.col(task).is_not_null())[_score_column(model, task)]
            if p.null_count() or p.is_nan().any() or not p.is_between(0, 1).all():
                raise ValueError(f"scores[{model}].p_{task} must be a probability in [0, 1] on every labelled "
                                 "test row (null, NaN or out of range found)")
    return frame.sort("ncodpers"), tasks, list(scores)


def _attribute_codes(frame: pl.DataFrame, attributes: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer group code per row and the group names, over the declared groups (for a pair:
    every declared combination, "a=x & b=y")."""
    codes = np.zeros(frame.height, dtype=np.int64)
    names = [""]
    for attribute in attributes:
        declared = DECLARED_GROUPS[attribute]
        column = frame[attribute].replace_strict(list(declared), list(range(len(declared))), return_dtype=pl.Int64)
        codes = codes * len(declared) + column.to_numpy()
        prefix = f"{attribute}=" if len(attributes) > 1 else ""
        names = [f"{head} & {prefix}{g}" if head else f"{prefix}{g}" for head in names for g in declared]
    return codes, names


# ------------------------------------------------------------------ metrics


def _metricframe_rates(cells: dict[tuple, tuple[list[str], np.ndarray]]) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """fairlearn MetricFrame selection_rate and true_positive_rate per group, for every key
    (attribute, decision) -> (group names, [group, label, decision] cell counts) in one frame:
    the key is the control feature, the group the sensitive feature, and one row per non-empty
    cell weighted by its count is exactly the rows themselves. Groups without rows get NaN."""
    from fairlearn.metrics import MetricFrame, selection_rate, true_positive_rate

    if not cells:
        return {}
    parts = []
    for k, (names, counts) in enumerate(cells.values()):
        group, y, decision = np.nonzero(counts)
        parts.append((np.full(group.size, k), np.asarray(names)[group], y, decision, counts[group, y, decision]))
    control, group, y, decision, weights = (np.concatenate(column) for column in zip(*parts))
    metrics = {"selection_rate": selection_rate, "tpr": functools.partial(true_positive_rate, pos_label=1)}
    by_group = MetricFrame(
        metrics=metrics, y_true=y, y_pred=decision, sensitive_features=group, control_features=control,
        sample_params={m: {"sample_weight": weights} for m in metrics},
    ).by_group
    out = {}
    for k, (key, (names, _)) in enumerate(cells.items()):
        rates = by_group.loc[k].reindex(names)
        out[key] = rates["selection_rate"].to_numpy(dtype=float), rates["tpr"].to_numpy(dtype=float)
    return out


@dataclasses.dataclass
class _Counts:
    """Integer counts per group of one task and attribute: `n`, `positives` [groups] and, per
    decision, `selected`, `true_pos` [groups]; the `boot_` ones are [resamples, groups]."""

    n: np.ndarray
    positives: np.ndarray
    boot_n: np.ndarray
    boot_positives: np.ndarray
    selected: dict
    true_pos: dict
    boot_selected: dict
    boot_true_pos: dict

    def cells(self, decision) -> np.ndarray:
        """[group, label, decision] counts, the exact input of the per-group metrics."""
        sel, tp = self.selected[decision], self.true_pos[decision]
        return np.stack([self.n - self.positives - (sel - tp), sel - tp, self.positives - tp, tp],
                        axis=1).reshape(-1, 2, 2)


def _count(codes: np.ndarray, n_groups: int, y: np.ndarray, decisions: dict[tuple[str, str], np.ndarray],
           indices: np.ndarray) -> _Counts:
    """Counts on the rows and on every resample. Each pass encodes a row as group x (label, up
    to DECISIONS_PER_PASS decision bits) and runs one bincount (plus one bootstrap_counts)."""
    selected, true_pos, boot_selected, boot_true_pos = {}, {}, {}, {}
    columns = list(decisions)
    for start in range(0, len(columns), DECISIONS_PER_PASS):
        chunk = columns[start:start + DECISIONS_PER_PASS]
        bits = np.stack([decisions[c] for c in chunk], axis=1).astype(np.int64)
        n_cells = 2 ** (1 + len(chunk))
        keys = codes * n_cells + y + (bits << np.arange(1, len(chunk) + 1)).sum(axis=1)
        point = np.bincount(keys, minlength=n_groups * n_cells).reshape(n_groups, n_cells)
        boot = bootstrap_counts(keys, n_groups * n_cells, indices).reshape(-1, n_groups, n_cells)
        cell_bits = (np.arange(n_cells)[:, None] >> np.arange(1 + len(chunk))) & 1  # column 0: the label
        label_bit = cell_bits[:, 0]
        for j, column in enumerate(chunk, start=1):
            hit, hit_positive = cell_bits[:, j], cell_bits[:, j] & label_bit
            selected[column], boot_selected[column] = point @ hit, boot @ hit
            true_pos[column], boot_true_pos[column] = point @ hit_positive, boot @ hit_positive
    counts = _Counts(point.sum(axis=1), point @ label_bit, boot.sum(axis=2), boot @ label_bit,
                     selected, true_pos, boot_selected, boot_true_pos)
    for table, value in ((selected, counts.positives), (true_pos, counts.positives),
                         (boot_selected, counts.boot_positives), (boot_true_pos, counts.boot_positives)):
        table[(LABELS, LABELS)] = value  # the labels select exactly the positives
    return counts


def _spread(rates: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disparate impact and max - min over the `used` groups (last axis); NaN where a used group
    has no rate (absent from that resample)."""
    values = rates[..., used]
    high, low = values.max(axis=-1), values.min(axis=-1)
    return disparate_impact(low, high), high - low


def _evaluate(task: str, attribute: str, names: list[str], counts: _Counts,
              rates: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], config: FairnessConfig
              ) -> tuple[list[dict], list[dict]]:
    """Group rows and summary rows of one task and one attribute, for the labels and every
    (model, operating point) decision; `rates`: decision -> point (selection rate, TPR)."""
    n, positives = counts.n, counts.positives
    sufficient = n >= config.min_group_size
    with_positives = sufficient & (positives > 0)
    group_status = np.where(~sufficient, INSUFFICIENT, np.where(positives == 0, NO_POSITIVES, OK))
    used = ", ".join(names[i] for i in np.flatnonzero(sufficient))
    insufficient = ", ".join(names[i] for i in np.flatnonzero(~sufficient))
    group_rows, summary_rows, label_summary = [], [], None
    for model, operating_point in sorted(counts.selected, key=lambda d: d[0] != LABELS):  # the labels first
        decision = (model, operating_point)
        sel_rate, tpr = (r.copy() for r in rates[decision])
        tpr[positives == 0] = np.nan  # fairlearn reports 0 for a group without positives
        boot_sel = _rate(counts.boot_selected[decision], counts.boot_n)
        boot_tpr = _rate(counts.boot_true_pos[decision], counts.boot_positives)
        sel_low, sel_high = _percentile_ci(boot_sel, config.confidence)
        tpr_low, tpr_high = _percentile_ci(boot_tpr, config.confidence)
        group_rows += [dict(task=task, model=model, operating_point=operating_point, attribute=attribute, group=g,
                            n=int(n[i]), positives=int(positives[i]), selection_rate=sel_rate[i],
                            sel_ci_low=sel_low[i], sel_ci_high=sel_high[i], tpr=tpr[i], tpr_ci_low=tpr_low[i],
                            tpr_ci_high=tpr_high[i], status=str(group_status[i]))
                       for i, g in enumerate(names)]

        notes = []
        if sufficient.sum() < 2:
            status = INSUFFICIENT
            di = spd = eod = np.nan
            di_ci = spd_ci = eod_ci = (np.nan, np.nan)
            notes.append(f"fewer than 2 groups with n >= {config.min_group_size}")
        else:
            di, spd = (float(v) for v in _spread(sel_rate, sufficient))
            boot_di, boot_spd = _spread(boot_sel, sufficient)
            di_ci, spd_ci = _scalar_ci(boot_di, config.confidence), _scalar_ci(boot_spd, config.confidence)
            status = NO_SELECTION if sel_rate[sufficient].max() == 0 else OK
            if status == NO_SELECTION:
                notes.append("nobody selected in the sufficient groups: DI reported as 0")
            if with_positives.sum() >= 2:
                eod = float(_spread(tpr, with_positives)[1])
                eod_ci = _scalar_ci(_spread(boot_tpr, with_positives)[1], config.confidence)
            else:
                eod, eod_ci = np.nan, (np.nan, np.nan)
                notes.append("EOD undefined: fewer than 2 sufficient groups with positives")
            without = [names[i] for i in np.flatnonzero(sufficient & (positives == 0))]
            if without:
                notes.append(f"TPR undefined (no positives), left out of EOD: {', '.join(without)}")
        row = dict(task=task, model=model, operating_point=operating_point, attribute=attribute,
                   di=di, di_ci_low=di_ci[0], di_ci_high=di_ci[1], spd=spd, spd_ci_low=spd_ci[0],
                   spd_ci_high=spd_ci[1], eod=eod, eod_ci_low=eod_ci[0], eod_ci_high=eod_ci[1],
                   four_fifths_pass=status == OK and di >= config.four_fifths,
                   spd_pass=status == OK and spd <= config.spd_limit,
                   eod_pass=status == OK and bool(eod <= config.eod_limit),
                   status=status, groups_used=used, groups_insufficient=insufficient)
        if label_summary is None:
            label_summary = row
            row.update(label_di=di, label_spd=spd, relative_di_pass=None)
        else:
            label_ok = label_summary["status"] == OK
            if not label_ok and status != INSUFFICIENT:
                notes.append(f"labels are {label_summary['status']}: no reference DI")
            row.update(label_di=label_summary["di"], label_spd=label_summary["spd"],
                       relative_di_pass=status == OK and label_ok
                       and bool(row["di_ci_low"] >= config.relative_di_floor * label_summary["di"]))
        row["note"] = "; ".join(notes)
        summary_rows.append(row)
    return group_rows, summary_rows


def _tables(frame: pl.DataFrame, tasks: list[str], models: list[str], config: FairnessConfig,
            attribute_sets: list[tuple[str, ...]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    codes = {attrs: _attribute_codes(frame, attrs) for attrs in attribute_sets}
    ncodpers = frame["ncodpers"].to_numpy()
    group_rows, summary_rows = [], []
    for task in tasks:
        labelled = frame[task].is_not_null().to_numpy()
        y = frame[task].to_numpy()[labelled].astype(np.int64)
        decisions = {}
        for model in models:
            p = frame[_score_column(model, task)].to_numpy()[labelled]
            decisions[(model, "threshold")] = p >= config.threshold
            decisions[(model, "top_k")] = top_k_selection(p, ncodpers[labelled], config.top_k_percent)
        indices = resample_indices(int(labelled.sum()), config, task)
        counts = {attrs: _count(attribute_codes[labelled], len(names), y, decisions, indices)
                  for attrs, (attribute_codes, names) in codes.items()}
        # MetricFrame for the attributes; the intersections (219 groups, ~10x its cost) take the
        # same arithmetic straight from the counts
        point = _metricframe_rates({(attrs, d): (codes[attrs][1], c.cells(d))
                                    for attrs, c in counts.items() if len(attrs) == 1 for d in c.selected})
        for attrs, c in counts.items():
            rates = {d: point[(attrs, d)] if len(attrs) == 1 else
                     (_rate(c.selected[d], c.n), _rate(c.true_pos[d], c.positives)) for d in c.selected}
            groups_part, summary_part = _evaluate(task, " & ".join(attrs), codes[attrs][1], c, rates, config)
            group_rows += groups_part
            summary_rows += summary_part
    group_table = pl.DataFrame(group_rows).select(GROUP_COLUMNS)
    summary = pl.DataFrame(summary_rows, schema_overrides={"relative_di_pass": pl.Boolean}).select(SUMMARY_COLUMNS)
    return _nan_to_null(group_table), _nan_to_null(summary)


def _nan_to_null(table: pl.DataFrame) -> pl.DataFrame:
    return table.with_columns(pl.col(pl.Float64).fill_nan(None))


def attribute_checks(summary: pl.DataFrame, config: FairnessConfig = FairnessConfig(), model: str = "student"
                     ) -> pl.DataFrame:
    """One row per protected attribute: passed when every binary task at the check operating
    point keeps the model's DI lower bound >= relative_di_floor x the labels' DI (insufficient
    data or no selection never pass); the worst task with its numbers and a reason."""
    rows = summary.filter((pl.col("model") == model) & (pl.col("operating_point") == config.check_operating_point))
    out = []
    for attribute in DECLARED_GROUPS:
        tasks = rows.filter(pl.col("attribute") == attribute).with_columns(
            required=config.relative_di_floor * pl.col("label_di"),
        ).with_columns(margin=pl.col("di_ci_low") - pl.col("required"))
        if tasks.is_empty():
            raise ValueError(f"summary has no rows for model {model!r}, operating point "
                             f"{config.check_operating_point!r}, attribute {attribute!r}: pass that model's scores "
                             "to fairness_report")
        failing = tasks.filter(~pl.col("relative_di_pass"))
        worst = tasks.sort(pl.col("relative_di_pass"), pl.col("margin"), nulls_last=False).row(0, named=True)
        below_floor = worst["margin"] is not None and worst["margin"] < 0
        if worst["status"] == OK and (worst["relative_di_pass"] or below_floor):
            relation = ">=" if worst["relative_di_pass"] else "<"
            why = (f"{worst['task']}: DI lower bound {worst['di_ci_low']:.3f} {relation} "
                   f"{config.relative_di_floor:.2f} x label DI {worst['label_di']:.3f} = {worst['required']:.3f}")
        else:  # insufficient data, nobody selected, or the labels give no reference DI
            why = f"{worst['task']}: {worst['status']}"
        if worst["note"]:
            why += f" ({worst['note']})"
        verdict = (f"all {tasks.height} tasks pass; tightest " if failing.is_empty()
                   else f"{failing.height} of {tasks.height} tasks fail; worst ")
        out.append(dict(attribute=attribute, passed=failing.is_empty(), tasks=tasks.height,
                        failing_tasks=", ".join(failing["task"].to_list()), worst_task=worst["task"],
                        di_ci_low=worst["di_ci_low"], label_di=worst["label_di"], required=worst["required"],
                        di=worst["di"], four_fifths_pass=worst["four_fifths_pass"], status=worst["status"],
                        reason=verdict + why))
    return pl.DataFrame(out)


def fairness_report(groups: pl.DataFrame, labels: pl.DataFrame, scores: dict[str, pl.DataFrame],
                    config: FairnessConfig = FairnessConfig()) -> dict[str, pl.DataFrame]:
    """Everything at once, one bootstrap index matrix per task: "groups" and "summary" (the five
    attributes), "intersections" and "intersection_summary" (the 10 pairs), "checks" (of the
    model "student", which `scores` must hold)."""
    group_table, summary = _tables(*_aligned(groups, labels, scores), config,
                                   [*((a,) for a in DECLARED_GROUPS), *ATTRIBUTE_PAIRS])
    single = pl.col("attribute").is_in(list(DECLARED_GROUPS))
    return {
        "groups": group_table.filter(single),
        "summary": summary.filter(single),
        "intersections": group_table.filter(~single),
        "intersection_summary": summary.filter(~single),
        "checks": attribute_checks(summary.filter(single), config),
    }

"""Reading, normalising and quarantining the raw files (snapshots and card transactions).

Every input row ends in one of three classes:
- normalised: padded numbers, `NA` tokens and sentinels become typed values or nulls (plus a
  flag column where the null carries meaning);
- quarantined, with a reason (unparseable dates, duplicate (month, customer), invalid flags,
  impossible ages, ...);
- the whole file is rejected (wrong schema, wrong dataset, truncated or not a CSV, or more than
  `max_quarantine_share` of its rows quarantined) with a `RawFileError` naming the problem and
  the fix. A rejected file changes nothing already materialized (the caller writes atomically).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandera.polars as pa
import polars as pl

from finai_assets.lib.schema import (
    PRODUCT_COLUMNS,
    SEGMENTS,
    SNAPSHOT_COLUMNS,
    TRANSACTION_COLUMNS,
    WRONG_DATASET_MARKERS,
)

NA_TOKENS = ("", "NA", "NAN", "NULL", "NONE")
SENTINEL_ANTIGUEDAD = -999999
MAX_AGE = 120
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")


class RawFileError(ValueError):
    """A raw file that cannot be used as it is; the message names the problem and the fix."""


@dataclasses.dataclass
class RawLoad:
    table: pl.DataFrame  # normalised rows
    quarantine: pl.DataFrame  # raw string columns + `source_row` + `reason`
    n_input_rows: int
    quarantine_reasons: dict[str, int]
    normalisations: dict[str, int]

    @property
    def quarantine_share(self) -> float:
        return self.quarantine.height / max(self.n_input_rows, 1)


# ---------------------------------------------------------------- reading files as strings


def read_raw_strings(path: Path, expected: tuple[str, ...], optional: tuple[str, ...], what: str) -> pl.DataFrame:
    """Read csv / csv.gz / parquet whole into an all-string frame with exactly the expected columns."""
    with scan_raw_strings(path, expected, optional, what) as lazy:
        return _collect(lazy, what, path)


@contextlib.contextmanager
def scan_raw_strings(path: Path, expected: tuple[str, ...], optional: tuple[str, ...], what: str) -> Iterator[pl.LazyFrame]:
    """The file as a lazy all-string frame (columns in the declared order), after the checks
    that need no full read: existence, extension, size, schema, binary content, truncation. A
    `.csv.gz` is decompressed to a temporary file that lives as long as the context."""
    name = path.name.lower()
    if not path.exists():
        raise RawFileError(f"{what}: {path} does not exist")
    if not name.endswith(SUPPORTED_SUFFIXES):
        raise RawFileError(
            f"{what}: {path.name} has an unsupported extension; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise RawFileError(f"{what}: {path} is empty; copy the file again")
    if name.endswith(".parquet"):
        try:
            columns = list(pl.read_parquet_schema(path))
        except Exception as exc:  # polars raises several error types on a broken footer
            raise RawFileError(
                f"{what}: {path} is not a readable parquet file ({exc.__class__.__name__}: {exc}); "
                "it may be truncated: copy it again"
            ) from exc
        _check_columns(columns, expected, optional, what, path)
        yield _canonical(pl.scan_parquet(path).select(pl.all().cast(pl.Utf8)), expected, optional, columns)
    elif name.endswith(".gz"):
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.name[:-3]
            try:
                with gzip.open(path, "rb") as src, plain.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
            except (EOFError, OSError, gzip.BadGzipFile) as exc:
                raise RawFileError(
                    f"{what}: {path} is not a complete gzip file ({exc}); it is truncated or corrupt: copy it again"
                ) from exc
            yield _scan_csv(plain, expected, optional, what, path)
    else:
        yield _scan_csv(path, expected, optional, what, path)


def _scan_csv(path: Path, expected, optional, what: str, shown: Path) -> pl.LazyFrame:
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
        fh.seek(max(path.stat().st_size - 1, 0))
        last = fh.read(1)
    if b"\x00" in head:
        raise RawFileError(f"{what}: {shown} is not a CSV text file (binary content); export it as CSV")
    header = [c.strip() for c in head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().replace('"', "").split(",")]
    _check_columns(header, expected, optional, what, shown)
    if last != b"\n":
        raise RawFileError(
            f"{what}: {shown} is truncated (its last line is incomplete, no final newline); copy the file again"
        )
    lazy = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy", quote_char='"', new_columns=header)
    return _canonical(lazy, expected, optional, header)


def _canonical(lazy: pl.LazyFrame, expected, optional, present: list[str]) -> pl.LazyFrame:
    """Columns in the declared order (a file may order them differently)."""
    return lazy.select(*expected, *[c for c in optional if c in present])


def _collect(lazy: pl.LazyFrame, what: str, path: Path | None = None) -> pl.DataFrame:
    try:
        return lazy.collect()
    except pl.exceptions.PolarsError as exc:
        raise RawFileError(f"{what}: {path or 'the file'} could not be parsed ({exc}); check the delimiter (,) and quoting") from exc


def _check_columns(columns, expected, optional, what: str, path: Path) -> None:
    cols = [c.strip() for c in columns]
    if all(m in cols for m in WRONG_DATASET_MARKERS) or any(c.startswith("var_") for c in cols[:5]):
        raise RawFileError(
            f"{what}: {path.name} is Kaggle 'Santander Customer Transaction Prediction' (ID_code, target, "
            f"var_0...), not the dataset expected. finai_assets needs 'Santander Product Recommendation' "
            f"train_ver2.csv (columns {', '.join(SNAPSHOT_COLUMNS[:4])}, ...): download that file and put it at the "
            "documented path"
        )
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected and c not in optional]
    if missing or extra:
        raise RawFileError(
            f"{what}: {path.name} has the wrong schema: missing columns {missing or 'none'}, unexpected columns "
            f"{extra or 'none'}. Expected exactly: {', '.join(expected)}"
        )


# ---------------------------------------------------------------- expression helpers


def _na(col: str) -> pl.Expr:
    """The raw string with surrounding blanks removed and NA tokens as null."""
    s = pl.col(col).str.strip_chars()
    return pl.when(s.str.to_uppercase().is_in(NA_TOKENS)).then(None).otherwise(s)








def _reason(cond: pl.Expr, text: str) -> pl.Expr:
    return pl.when(cond).then(pl.lit(text)).otherwise(None)


def _tag(typed: pl.DataFrame, reasons: list[pl.Expr]) -> pl.DataFrame:
    """Attach `reason`: every failing reason of the row joined, null when the row is clean."""
    return typed.with_columns(reason=pl.concat_str(reasons, separator="; ", ignore_nulls=True)).with_columns(
        pl.when(pl.col("reason") == "").then(None).otherwise(pl.col("reason")).alias("reason")
    )


def _batches(lazy: pl.LazyFrame, chunk_rows: int, what: str) -> Iterator[pl.DataFrame]:
    """Bounded row batches of the source (working memory stays flat on a 13.6M-row file)."""
    try:
        empty = True
        for batch in lazy.collect_batches(chunk_size=chunk_rows, maintain_order=True):
            empty = False
            yield batch
        if empty:
            yield lazy.head(0).collect()
    except pl.exceptions.PolarsError as exc:
        raise RawFileError(f"{what}: the file could not be parsed ({exc}); check the delimiter (,) and quoting") from exc


def _normalise_stream(raw: pl.DataFrame | pl.LazyFrame, normalise_chunk, chunk_rows: int, max_share: float, what: str,
                      duplicate_keys: pl.DataFrame | None = None):
    """Normalise batch by batch; tag the rows whose key is in `duplicate_keys`; keep the typed
    clean rows and the raw strings of quarantined rows; enforce the quarantine share."""
    good, bad, counts, offset = [], [], {}, 0
    for batch in _batches(raw.lazy(), chunk_rows, what):
        tagged, chunk_counts = normalise_chunk(batch)
        if duplicate_keys is not None:
            key = [c for c in duplicate_keys.columns if c != "_duplicate"]
            tagged = tagged.join(duplicate_keys, on=key, how="left", maintain_order="left").with_columns(
                pl.when(pl.col("_duplicate"))
                .then(pl.concat_str([pl.col("reason"), pl.lit(f"duplicate ({', '.join(key)})")], separator="; ", ignore_nulls=True))
                .otherwise(pl.col("reason"))
                .alias("reason")
            ).drop("_duplicate")
        is_bad = tagged["reason"].is_not_null()
        good.append(tagged.filter(~is_bad).drop("reason"))
        bad.append(batch.with_row_index("source_row", offset=offset).filter(is_bad).with_columns(reason=tagged["reason"].filter(is_bad)))
        counts = {k: counts.get(k, 0) + v for k, v in chunk_counts.items()}
        offset += batch.height
    quarantine = pl.concat(bad)
    share = quarantine.height / max(offset, 1)
    if share > max_share:
        top = quarantine["reason"].value_counts(sort=True).head(3).rows()
        raise RawFileError(
            f"{what}: {quarantine.height} of {offset} rows ({share:.1%}) would be quarantined, above the "
            f"{max_share:.0%} limit; top reasons {top}. Fix the file (or raise max_quarantine_share if the "
            "data really is that dirty)"
        )
    return pl.concat(good), quarantine, offset, counts


# ---------------------------------------------------------------- snapshots

FLAG_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
INDREL_1MES = {"1": "1", "1.0": "1", "2": "2", "2.0": "2", "3": "3", "3.0": "3", "4": "4", "4.0": "4", "P": "P"}


def _cleaned(raw: pl.DataFrame) -> pl.DataFrame:
    """One pass over every string column: blanks stripped, NA tokens as null."""
    return raw.select(_na(c).alias(c) for c in raw.columns)


def _num(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Float64, strict=False)


def _dt(col: str) -> pl.Expr:
    return pl.col(col).str.strptime(pl.Date, "%Y-%m-%d", strict=False)


CHUNK_ROWS = 1_000_000
SNAPSHOT_KEY = ["fecha_dato", "ncodpers"]
SNAPSHOT_KEY_TYPED = {"fecha_dato": _dt("fecha_dato"), "ncodpers": _num("ncodpers").cast(pl.Int64, strict=False)}


def normalise_snapshots(raw: pl.DataFrame | pl.LazyFrame, max_quarantine_share: float = 0.05,
                        chunk_rows: int = CHUNK_ROWS) -> RawLoad:
    """All-string snapshot rows -> typed, normalised rows plus quarantined rows with reasons."""
    assert tuple(raw.collect_schema().names()) == SNAPSHOT_COLUMNS, "scan_raw_strings enforces the schema"
    # Duplicate (month, customer) keys need the whole file: a first pass over the two key columns.
    keys = _cleaned(_collect(raw.lazy().select(SNAPSHOT_KEY), "snapshot file")).select(**SNAPSHOT_KEY_TYPED)
    duplicates = keys.filter(pl.struct(SNAPSHOT_KEY).is_duplicated()).drop_nulls().unique().with_columns(_duplicate=pl.lit(True))
    table, quarantine, n_rows, normalisations = _normalise_stream(
        raw, _snapshot_chunk, chunk_rows, max_quarantine_share, "snapshot file", duplicates
    )
    load = RawLoad(table.sort(SNAPSHOT_KEY), quarantine, n_rows, _reason_counts(quarantine), normalisations)
    SNAPSHOT_SCHEMA.validate(load.table)
    return load


def _snapshot_chunk(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    clean = _cleaned(raw)
    age, antig = _num("age"), _num("antiguedad")
    flags = {
        c: pl.when(pl.col(c).is_null()).then(None).otherwise(pl.col(c).replace_strict(FLAG_VALUES, default=-1, return_dtype=pl.Int8))
        for c in PRODUCT_COLUMNS
    }
    numbers = ("age", "antiguedad", "renta", "cod_prov", "ind_actividad_cliente")
    typed = clean.select(
        **SNAPSHOT_KEY_TYPED,
        ind_empleado="ind_empleado",
        pais_residencia="pais_residencia",
        sexo="sexo",
        age=pl.when((age < 0) | (age > MAX_AGE)).then(-1).otherwise(age).cast(pl.Int16, strict=False),
        fecha_alta=_dt("fecha_alta"),
        ind_nuevo=_num("ind_nuevo").cast(pl.Int8, strict=False),
        antiguedad=pl.when(antig == SENTINEL_ANTIGUEDAD).then(None).otherwise(antig).cast(pl.Int32, strict=False),
        indrel=_num("indrel").cast(pl.Int16, strict=False),
        ult_fec_cli_1t=_dt("ult_fec_cli_1t"),
        indrel_1mes=pl.col("indrel_1mes").replace_strict(INDREL_1MES, default=None),
        tiprel_1mes="tiprel_1mes",
        indresi="indresi",
        indext="indext",
        conyuemp="conyuemp",
        canal_entrada="canal_entrada",
        indfall="indfall",
        tipodom=_num("tipodom").cast(pl.Int8, strict=False),
        cod_prov=_num("cod_prov").cast(pl.Int16, strict=False),
        nomprov="nomprov",
        ind_actividad_cliente=_num("ind_actividad_cliente").cast(pl.Int8, strict=False),
        renta=_num("renta"),
        segmento="segmento",
        **{c: pl.when(e == -1).then(None).otherwise(e) for c, e in flags.items()},
        age_missing=pl.col("age").is_null(),
        antiguedad_sentinel=(antig == SENTINEL_ANTIGUEDAD).fill_null(False),
        antiguedad_missing=pl.col("antiguedad").is_null(),
        renta_missing=pl.col("renta").is_null(),
        # Reasons that need the cleaned strings, computed in the same pass.
        _bad_alta=pl.col("fecha_alta").is_not_null() & _dt("fecha_alta").is_null(),
        _bad_number=pl.any_horizontal(pl.col(c).is_not_null() & _num(c).is_null() for c in numbers),
        _bad_flag=pl.any_horizontal((e == -1).fill_null(False) for e in flags.values()),
        _sentinel_count=(antig == SENTINEL_ANTIGUEDAD).fill_null(False),
        _indrel_float=pl.col("indrel_1mes").str.ends_with(".0").fill_null(False),
        _cod_prov_float=pl.col("cod_prov").str.ends_with(".0").fill_null(False),
    )
    reasons = [
        _reason(pl.col("fecha_dato").is_null(), "unparseable fecha_dato"),
        _reason(pl.col("ncodpers").is_null(), "invalid ncodpers"),
        _reason(pl.col("_bad_alta"), "unparseable fecha_alta"),
        _reason(pl.col("age") == -1, f"impossible age (outside 0-{MAX_AGE})"),
        _reason(pl.col("_bad_number"), "unparseable number"),
        _reason(pl.col("_bad_flag"), "invalid product flag (not 0/1/NA)"),
        _reason(pl.col("segmento").is_not_null() & ~pl.col("segmento").is_in(SEGMENTS), "unknown segmento"),
    ]
    padded = [raw[c].str.starts_with(" ").fill_null(False) & clean[c].is_not_null() for c in ("age", "antiguedad", "renta")]
    normalisations = {
        "padded numbers stripped": int((padded[0] | padded[1] | padded[2]).sum()),
        "NA tokens -> null": int(sum(clean[c].null_count() - raw[c].null_count() for c in SNAPSHOT_COLUMNS)),
        "antiguedad -999999 -> null + flag": int(typed["_sentinel_count"].sum()),
        "mixed-type indrel_1mes unified": int(typed["_indrel_float"].sum()),
        "cod_prov float text -> int": int(typed["_cod_prov_float"].sum()),
    }
    helpers = [c for c in typed.columns if c.startswith("_")]
    return _tag(typed, reasons).drop(helpers), normalisations


def _reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    if quarantine.is_empty():
        return {}
    exploded = quarantine.select(pl.col("reason").str.split("; ")).explode("reason")
    return dict(exploded["reason"].value_counts(sort=True).iter_rows())


# ---------------------------------------------------------------- transactions


def normalise_transactions(raw: pl.DataFrame | pl.LazyFrame, max_quarantine_share: float = 0.05,
                           chunk_rows: int = CHUNK_ROWS) -> RawLoad:
    """All-string transaction rows -> typed rows (+ `hour` derived from ts) plus quarantine."""
    raw = raw.lazy().select(TRANSACTION_COLUMNS)  # an optional `hour` column is re-derived from ts
    table, quarantine, n_rows, normalisations = _normalise_stream(
        raw, _transaction_chunk, chunk_rows, max_quarantine_share, "transaction file"
    )
    load = RawLoad(table.sort("ncodpers", "ts", maintain_order=True), quarantine, n_rows, _reason_counts(quarantine), normalisations)
    TRANSACTION_SCHEMA.validate(load.table)
    return load


def _transaction_chunk(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    typed = _cleaned(raw).select(
        ncodpers=_num("ncodpers").cast(pl.Int64, strict=False),
        ts=pl.col("ts").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False),
        amount=_num("amount"),
        mcc=_num("mcc").cast(pl.Int16, strict=False),
        merchant_id=_num("merchant_id").cast(pl.Int64, strict=False),
    ).with_columns(hour=pl.col("ts").dt.hour().cast(pl.Int8))
    reasons = [
        _reason(pl.col("ncodpers").is_null(), "invalid ncodpers"),
        _reason(pl.col("ts").is_null(), "unparseable ts"),
        _reason(pl.col("amount").is_null(), "missing or unparseable amount"),
        _reason(pl.col("mcc").is_null() | (pl.col("mcc") < 1000) | (pl.col("mcc") > 9999), "invalid mcc (not 4 digits)"),
        _reason(pl.col("merchant_id").is_null(), "invalid merchant_id"),
    ]
    padded = raw.select(pl.col("amount").str.starts_with(" ").fill_null(False).sum()).item()
    return _tag(typed, reasons), {"padded amounts stripped": int(padded)}


def unavailable_transactions() -> RawLoad:
    """Transactions *unavailable*: the table and its quarantine with their schemas and no rows."""
    quarantine = pl.DataFrame(schema={"source_row": pl.UInt32, **{c: pl.Utf8 for c in TRANSACTION_COLUMNS}, "reason": pl.Utf8})
    return RawLoad(pl.DataFrame(schema=TRANSACTION_DTYPES), quarantine, 0, {}, {})


# ---------------------------------------------------------------- contracts (pandera)

SNAPSHOT_DTYPES: dict[str, pl.DataType] = {
    "fecha_dato": pl.Date, "ncodpers": pl.Int64, "ind_empleado": pl.Utf8, "pais_residencia": pl.Utf8,
    "sexo": pl.Utf8, "age": pl.Int16, "fecha_alta": pl.Date, "ind_nuevo": pl.Int8, "antiguedad": pl.Int32,
    "indrel": pl.Int16, "ult_fec_cli_1t": pl.Date, "indrel_1mes": pl.Utf8, "tiprel_1mes": pl.Utf8,
    "indresi": pl.Utf8, "indext": pl.Utf8, "conyuemp": pl.Utf8, "canal_entrada": pl.Utf8, "indfall": pl.Utf8,
    "tipodom": pl.Int8, "cod_prov": pl.Int16, "nomprov": pl.Utf8, "ind_actividad_cliente": pl.Int8,
    "renta": pl.Float64, "segmento": pl.Utf8, **{c: pl.Int8 for c in PRODUCT_COLUMNS},
}
TRANSACTION_DTYPES: dict[str, pl.DataType] = {
    "ncodpers": pl.Int64, "ts": pl.Datetime("us"), "amount": pl.Float64, "mcc": pl.Int16,
    "merchant_id": pl.Int64, "hour": pl.Int8,
}


def _col(dtype, checks=None, nullable=True) -> pa.Column:
    return pa.Column(dtype, checks=checks, nullable=nullable)


SNAPSHOT_SCHEMA = pa.DataFrameSchema(
    {
        **{c: _col(t) for c, t in SNAPSHOT_DTYPES.items()},
        "fecha_dato": _col(pl.Date, nullable=False),
        "ncodpers": _col(pl.Int64, nullable=False),
        "age": _col(pl.Int16, pa.Check.in_range(0, MAX_AGE)),
        "segmento": _col(pl.Utf8, pa.Check.isin(SEGMENTS)),
        **{c: _col(pl.Int8, pa.Check.isin([0, 1])) for c in PRODUCT_COLUMNS},
        "age_missing": _col(pl.Boolean, nullable=False),
        "antiguedad_sentinel": _col(pl.Boolean, nullable=False),
        "antiguedad_missing": _col(pl.Boolean, nullable=False),
        "renta_missing": _col(pl.Boolean, nullable=False),
    },
    unique=["fecha_dato", "ncodpers"],
    strict=True,
    ordered=True,
    name="santander_snapshots",
)
TRANSACTION_SCHEMA = pa.DataFrameSchema(
    {
        "ncodpers": _col(pl.Int64, nullable=False),
        "ts": _col(pl.Datetime("us"), nullable=False),
        "amount": _col(pl.Float64, nullable=False),
        "mcc": _col(pl.Int16, pa.Check.in_range(1000, 9999), nullable=False),
        "merchant_id": _col(pl.Int64, nullable=False),
        "hour": _col(pl.Int8, pa.Check.in_range(0, 23), nullable=False),
    },
    strict=True,
    ordered=True,
    name="card_transactions",
)

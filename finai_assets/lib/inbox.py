"""Monthly production files: what the drop sensor sees in `incoming/`, and what a run does with it.

A *drop* is one month: `snapshots_YYYY-MM.{csv,csv.gz,parquet}` and, optionally beside it,
`transactions_YYYY-MM.<same suffixes>`. A file is *settled* when its size and mtime are unchanged
since the previous sensor tick, or when a `<file name>.done` marker exists; a drop is settled
when all its files are. Its key is the content hash of its files. Hidden names (`.x`, temporary
files of a writer) and `.done` markers are never files of a drop; any other name that is not a
drop file is reported, never moved.

A run validates the drop against the month it was requested for, then moves its files atomically
(`os.replace`) to `accepted/YYYY-MM/<key16>/` or to `quarantine/<key16>/` beside a `reason.json`,
and appends the outcome to the ledger (`ledger.jsonl`, one JSON object per line, under a file
lock), keyed by the drop's content hash. Nothing is ever deleted: a replacement for an accepted
month is a new drop, stored beside the old one, and the newest accepted drop of a month is the
one that month's production assets read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from finai_assets.lib import raw as rawlib
from finai_assets.lib.schema import SNAPSHOT_COLUMNS, TRANSACTION_COLUMNS, TRANSACTION_OPTIONAL_COLUMNS, month_date, month_index
from finai_assets.lib.storage import file_lock, file_sha256

DROP_NAME = re.compile(r"^(?P<kind>snapshots|transactions)_(?P<year>\d{4})-(?P<month>\d{2})\.(?P<suffix>csv|csv\.gz|parquet)$")
DONE = ".done"
NAMING = "snapshots_YYYY-MM.csv (or .csv.gz, .parquet), optionally with transactions_YYYY-MM.<same suffix>"


class DropRejected(ValueError):
    """A drop that failed validation; its files are in quarantine beside a reason file."""


@dataclasses.dataclass(frozen=True)
class Drop:
    month: dt.date  # first day of the month (the monthly partition key)
    snapshot: str  # file name in incoming/
    snapshot_sha256: str
    transactions: str | None
    transactions_sha256: str | None

    @property
    def key(self) -> str:
        return drop_key(self.snapshot_sha256, self.transactions_sha256)

    @property
    def partition(self) -> str:
        return self.month.isoformat()


def drop_key(snapshot_sha256: str, transactions_sha256: str | None) -> str:
    return hashlib.sha256(f"{snapshot_sha256}:{transactions_sha256 or ''}".encode()).hexdigest()


@dataclasses.dataclass
class Scan:
    settled: list[Drop]
    waiting: dict[str, str]  # name -> why it is not settled yet
    ignored: dict[str, str]  # name -> why it is no drop file
    seen: dict[str, list[int]]  # name -> [size, mtime_ns], for the next tick
    hashes: dict[str, str]  # "name:size:mtime_ns" -> sha256, so a waiting file is hashed once


def _state(path: Path) -> list[int]:
    """Size, mtime and inode: a replacement written as a new file differs in its inode even when
    size and the (coarse, jiffy-grained) mtime coincide."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def scan_incoming(incoming: Path, previous: Mapping[str, list[int]], hashes: Mapping[str, str]) -> Scan:
    """The drops of `incoming/` that have settled since the tick that saw `previous`."""
    files = {p.name: p for p in sorted(Path(incoming).iterdir()) if p.is_file()} if Path(incoming).exists() else {}
    seen = {name: _state(p) for name, p in files.items() if not name.startswith(".") and not name.endswith(DONE)}
    waiting, ignored, parsed = {}, {}, {}
    for name in seen:
        m = DROP_NAME.match(name)
        if m is None:
            ignored[name] = f"not a drop file name; expected {NAMING}"
            continue
        if not 1 <= int(m["month"]) <= 12:
            ignored[name] = f"month {m['month']} out of range; expected {NAMING}"
            continue
        month = dt.date(int(m["year"]), int(m["month"]), 1)
        if seen[name][0] == 0:
            waiting[name] = "empty file (still being written?)"
            continue
        if not (f"{name}{DONE}" in files or list(previous.get(name, [])) == seen[name]):
            waiting[name] = "size or mtime changed since the last tick (or first seen); waiting for it to settle or for a .done marker"
            continue
        parsed.setdefault(month, {})[m["kind"]] = name
    new_hashes = {}

    def sha(name: str) -> str:
        k = ":".join(map(str, [name, *seen[name]]))
        new_hashes[k] = hashes.get(k) or file_sha256(files[name])
        return new_hashes[k]

    settled = []
    for month, kinds in sorted(parsed.items()):
        if "snapshots" not in kinds:
            ignored[kinds["transactions"]] = f"a transaction file without snapshots_{month:%Y-%m}.*; it travels with its snapshot file"
            continue
        txn_name = next((n for n in seen if DROP_NAME.match(n) and n.startswith(f"transactions_{month:%Y-%m}.")), None)
        if txn_name is not None and txn_name in waiting:
            waiting[kinds["snapshots"]] = f"its transaction file {txn_name} has not settled"
            continue
        settled.append(Drop(month, kinds["snapshots"], sha(kinds["snapshots"]), txn_name, sha(txn_name) if txn_name else None))
    return Scan(settled, waiting, ignored, seen, new_hashes)


# ---------------------------------------------------------------------------------------------- ledger


class Ledger:
    """Append-only JSON lines keyed by drop content hash: accepted and quarantined drops."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def get(self, key: str) -> dict | None:
        return next((e for e in reversed(self.entries()) if e["key"] == key), None)

    def append(self, entry: dict) -> dict:
        with file_lock(self.path.with_suffix(".lock")):
            entries = self.entries()
            if any(e["key"] == entry["key"] for e in entries):
                raise ValueError(f"drop {entry['key'][:16]} is already in the ledger ({self.path}); a drop is recorded once")
            entry = {"sequence": len(entries) + 1, **entry}
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return entry

    def accepted(self) -> dict[str, dict]:
        """month partition key -> the newest accepted drop of that month."""
        return {e["month"]: e for e in self.entries() if e["status"] == "accepted"}


# ---------------------------------------------------------------------------------------------- processing


@dataclasses.dataclass(frozen=True)
class Folders:
    root: Path  # data/production

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def accepted(self) -> Path:
        return self.root / "accepted"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.root / "ledger.jsonl")


@dataclasses.dataclass
class Accepted:
    entry: dict  # the ledger entry
    snapshots: rawlib.RawLoad
    transactions: rawlib.RawLoad | None  # None: the drop brought no transaction file


def month_window(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the transactions of snapshot month `month`: after the previous snapshot day
    up to the end of this month's snapshot day (the raw schema's monthly convention)."""
    i = month_index(month)
    return (dt.datetime.combine(month_date(i - 1) + dt.timedelta(days=1), dt.time()),
            dt.datetime.combine(month_date(i) + dt.timedelta(days=1), dt.time()))


def _validate(snapshot_path: Path, transactions_path: Path | None, month: dt.date, needs_transactions: bool,
              max_quarantine_share: float) -> tuple[rawlib.RawLoad, rawlib.RawLoad | None]:
    snapshots = rawlib.normalise_snapshots(rawlib.read_raw_strings(snapshot_path, SNAPSHOT_COLUMNS, (), "snapshot file"),
                                           max_quarantine_share)
    months = sorted(snapshots.table["fecha_dato"].unique().to_list())
    if months != [month_date(month_index(month))]:
        raise DropRejected(f"fecha_dato holds {[str(m) for m in months]} but the file is named for {month:%Y-%m} "
                           f"(expected only {month_date(month_index(month))}); one file per month, named after its fecha_dato")
    if transactions_path is None:
        if needs_transactions:
            raise DropRejected(f"no transactions_{month:%Y-%m} file, and the champion's features need transactions; "
                               "drop the month's transaction file beside its snapshot file")
        return snapshots, None
    transactions = rawlib.normalise_transactions(
        rawlib.read_raw_strings(transactions_path, TRANSACTION_COLUMNS, TRANSACTION_OPTIONAL_COLUMNS, "transaction file"),
        max_quarantine_share)
    start, end = month_window(month)
    outside = transactions.table.filter((pl.col("ts") < start) | (pl.col("ts") >= end)).height
    if outside:
        raise DropRejected(f"{outside} transactions lie outside {month:%Y-%m}'s window [{start}, {end}); "
                           "a month's transaction file holds only that month's transactions")
    return snapshots, transactions


def _move(files: list[Path], target: Path) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in files:
        os.replace(f, target / f.name)  # same file system: atomic
        moved.append(str(target / f.name))
    return moved


def process_drop(folders: Folders, month: dt.date, snapshot: str, snapshot_sha256: str, transactions: str | None,
                 transactions_sha256: str | None, needs_transactions: bool, max_quarantine_share: float = 0.05,
                 run_id: str | None = None) -> Accepted:
    """Validate the drop the sensor requested, move it to accepted/ (or quarantine/ with its
    reason) and record it in the ledger. Raises DropRejected after quarantining a bad drop."""
    key = drop_key(snapshot_sha256, transactions_sha256)
    known = folders.ledger.get(key)
    if known is not None:
        raise ValueError(f"drop {key[:16]} ({snapshot}) was already {known['status']} (ledger sequence {known['sequence']}); "
                         "nothing to do")
    paths = [folders.incoming / snapshot] + ([folders.incoming / transactions] if transactions else [])
    for path, want in zip(paths, [snapshot_sha256, transactions_sha256]):
        if not path.exists():
            raise FileNotFoundError(f"{path} is gone from incoming/ and is not in the ledger; drop the file again")
        if file_sha256(path) != want:
            raise ValueError(f"{path.name} changed after the sensor saw it settle (its sha256 differs); "
                             "the sensor requests a new run for the new content")
    markers = [p.with_name(p.name + DONE) for p in paths if p.with_name(p.name + DONE).exists()]
    entry = {"key": key, "month": month.isoformat(), "snapshot": snapshot, "snapshot_sha256": snapshot_sha256,
             "transactions": transactions, "transactions_sha256": transactions_sha256, "run_id": run_id,
             "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        name_month = DROP_NAME.match(snapshot)
        if name_month is None or dt.date(int(name_month["year"]), int(name_month["month"]), 1) != month:
            raise DropRejected(f"{snapshot} is not named for the requested month {month:%Y-%m}; expected {NAMING}")
        loaded, txn = _validate(paths[0], paths[1] if transactions else None, month, needs_transactions, max_quarantine_share)
    except (DropRejected, rawlib.RawFileError) as error:
        target = folders.quarantine / key[:16]
        moved = _move(paths + markers, target)
        (target / "reason.json").write_text(json.dumps({"reason": str(error), **entry}, indent=1))
        folders.ledger.append({**entry, "status": "quarantined", "reason": str(error), "stored": moved})
        raise DropRejected(f"{snapshot} quarantined in {target}: {error}") from error
    moved = _move(paths + markers, folders.accepted / f"{month:%Y-%m}" / key[:16])
    recorded = folders.ledger.append({**entry, "status": "accepted", "reason": None, "stored": moved,
                                      "rows": loaded.table.height, "transactions_rows": None if txn is None else txn.table.height})
    return Accepted(recorded, loaded, txn)


def write_drop(folders: Folders, month: dt.date, snapshots: pl.DataFrame, transactions: pl.DataFrame | None) -> list[Path]:
    """Write one month's drop into incoming/ the way a careful producer does: each file under a
    hidden temporary name, renamed into place, then its `.done` marker."""
    folders.incoming.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, frame in (("transactions", transactions), ("snapshots", snapshots)):  # the snapshot file last
        if frame is None:
            continue
        path = folders.incoming / f"{kind}_{month:%Y-%m}.csv"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        frame.write_csv(tmp)
        os.replace(tmp, path)
        path.with_name(path.name + DONE).touch()
        written.append(path)
    return written


def next_demo_month(folders: Folders, first: dt.date) -> int:
    """k of the next demo month: one past the newest month already accepted, quarantined or waiting."""
    months = {dt.date.fromisoformat(e["month"]) for e in folders.ledger.entries()}
    if folders.incoming.exists():
        months |= {dt.date(int(m["year"]), int(m["month"]), 1) for m in map(DROP_NAME.match, (p.name for p in folders.incoming.iterdir())) if m}
    newest = max(months, default=None)
    return 1 if newest is None or newest < first else month_index(newest) - month_index(first) + 2


def drop_demo(folders: Folders, n_customers: int = 20_000, seed: int = 2016, amount_scale: float = 1.0) -> tuple[dt.date, list[Path]]:
    """`make drop-demo`: the next month after the embedded sample (same customers; n_customers
    and seed must be the sample's) written into incoming/ as a settled drop."""
    from finai_assets.lib.sample import demo_production_month
    from finai_assets.lib.schema import SNAPSHOT_MONTHS

    first = month_date(len(SNAPSHOT_MONTHS)).replace(day=1)
    k = next_demo_month(folders, first)
    date, snapshots, transactions = demo_production_month(k, n_customers, seed, amount_scale)
    return date, write_drop(folders, date.replace(day=1), snapshots, transactions)

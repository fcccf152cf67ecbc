"""The audit log: an HMAC-SHA256 hash chain in its own DuckDB file, one writer at a time.

Each entry carries `seq` (primary key, 1, 2, ...), `prev_hash` (the previous entry's hash,
"GENESIS" for the first) and `hmac` (HMAC-SHA256 with the key over the canonical JSON of every
other field). An entry's hash is the sha256 of its canonical JSON including the HMAC.

The chain head (docs/defects.md#audit-chain-restarts) is read from the database on every
append, never kept in process memory; appends are serialized by an OS file lock
(`<path>.lock`) and fail closed. After each append an anchor file `<path>.head.json` records
the head (seq, entry hash) under its own HMAC, so deleting the tail is detectable; callers also
mirror the head they wrote (e.g. in materialization metadata) and pass it to `verify`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac as hmac_lib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb

from finai_assets.lib.storage import atomic_write_bytes, file_lock

DEFAULT_DEV_KEY = "finai-dev-audit-key"  # public: accepted only outside production
KEY_ENV = "FINAI_AUDIT_KEY"
PROFILE_ENV = "FINAI_PROFILE"
GENESIS = "GENESIS"
TABLE = "audit_log"
FIELDS = ("seq", "timestamp", "event", "asset", "partition", "run_id", "input_hashes", "output_hash",
          "details", "prev_hash", "hmac")
JSON_FIELDS = ("input_hashes", "details")
SCHEMA = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT PRIMARY KEY, "timestamp" VARCHAR NOT NULL, event VARCHAR NOT NULL, asset VARCHAR NOT NULL,
    "partition" VARCHAR, run_id VARCHAR, input_hashes VARCHAR NOT NULL, output_hash VARCHAR,
    details VARCHAR NOT NULL, prev_hash VARCHAR NOT NULL, hmac VARCHAR NOT NULL)"""
SELECT = "SELECT " + ", ".join(f'"{f}"' for f in FIELDS) + f" FROM {TABLE}"
DUCKDB_CONFIG = {"threads": 1}  # a tiny table: a thread pool only costs start-up time


class AuditKeyError(ValueError):
    """No usable audit key: in production a missing, empty or public default key is refused."""


class AuditIntegrityError(ValueError):
    """The stored chain is already broken, so appending to it would hide the damage."""


def audit_key(env: Mapping[str, str] = os.environ) -> bytes:
    key = env.get(KEY_ENV, "")
    production = env.get(PROFILE_ENV, "").strip().lower() == "production"
    if production and key in ("", DEFAULT_DEV_KEY):
        problem = "is the public default" if key else "is not set"
        raise AuditKeyError(f"{KEY_ENV} {problem} but {PROFILE_ENV}=production; "
                            f"set {KEY_ENV} to a secret key (e.g. `openssl rand -hex 32`)")
    return (key or DEFAULT_DEV_KEY).encode()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sign(key: bytes, payload) -> str:
    return hmac_lib.new(key, canonical(payload), hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    seq: int
    timestamp: str  # ISO 8601, UTC
    event: str
    asset: str
    partition: str | None
    run_id: str | None
    input_hashes: dict[str, str]
    output_hash: str | None
    details: dict
    prev_hash: str
    hmac: str

    def _signed_fields(self) -> dict:
        return {f: getattr(self, f) for f in FIELDS if f != "hmac"}

    @functools.cached_property
    def entry_hash(self) -> str:
        return hashlib.sha256(canonical(dataclasses.asdict(self))).hexdigest()

    def hmac_ok(self, key: bytes) -> bool:
        return isinstance(self.hmac, str) and hmac_lib.compare_digest(
            _sign(key, self._signed_fields()).encode(), self.hmac.encode())


@dataclasses.dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str]


class AuditLog:
    def __init__(self, path: Path, key: bytes, lock_timeout_s: float = 60.0):
        if not key:
            raise AuditKeyError(f"the audit key is empty; set {KEY_ENV} (or pass audit_key())")
        self.path = Path(path)
        self.key = key
        self.lock_timeout_s = lock_timeout_s
        self.lock_path = self.path.with_suffix(".lock")
        self.anchor_path = self.path.with_suffix(".head.json")

    def append(self, event: str, asset: str, partition: str | None = None, run_id: str | None = None,
               input_hashes: Mapping[str, str] | None = None, output_hash: str | None = None,
               details: Mapping | None = None) -> AuditEntry:
        """Append one entry after the persisted head; raises rather than write anything doubtful."""
        try:  # normalized as it will read back (tuples -> lists, keys -> str)
            payload = json.loads(canonical({"input_hashes": {str(k): str(v) for k, v in (input_hashes or {}).items()},
                                            "details": dict(details or {})}))
        except (TypeError, ValueError) as err:
            raise TypeError(f"audit details for {event!r} on {asset!r} must be JSON-serializable: {err}") from err
        with self._locked():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path), config=DUCKDB_CONFIG)
            try:
                con.execute(SCHEMA)
                row = con.execute(f"{SELECT} ORDER BY seq DESC LIMIT 1").fetchone()
                head = _entry(row) if row else None
                problems = [] if head is None or head.hmac_ok(self.key) else [
                    f"seq {head.seq}: the last entry fails its HMAC (edited, or written with another key)"]
                problems += self._anchor_problems(head, lambda seq: _at(con, seq), allow_lag=True)
                if problems:
                    raise AuditIntegrityError(
                        f"refusing to append to the audit log {self.path}: {'; '.join(problems)}. "
                        f"Run `finai audit verify --path {self.path}` and restore the log and its anchor from a backup")
                fields = {
                    "seq": head.seq + 1 if head else 1,
                    "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
                    "event": event, "asset": asset, "partition": partition, "run_id": run_id,
                    "input_hashes": payload["input_hashes"], "output_hash": output_hash, "details": payload["details"],
                    "prev_hash": head.entry_hash if head else GENESIS,
                }
                entry = AuditEntry(**fields, hmac=_sign(self.key, fields))
                values = [canonical(v).decode() if f in JSON_FIELDS else v for f, v in dataclasses.asdict(entry).items()]
                con.execute(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(FIELDS))})", values)
            finally:
                con.close()
            anchor = {"seq": entry.seq, "entry_hash": entry.entry_hash}
            atomic_write_bytes(self.anchor_path, canonical({**anchor, "hmac": _sign(self.key, anchor)}))
        return entry

    def entries(self) -> list[AuditEntry]:
        with self._locked():
            return [_entry(row) for row in self._rows()]

    def head(self) -> tuple[int, str]:
        entries = self.entries()
        return (entries[-1].seq, entries[-1].entry_hash) if entries else (0, GENESIS)

    def verify(self, expected_head: tuple[int, str] | None = None) -> Verification:
        """Walk the whole chain and report every problem; each names the seq it concerns."""
        problems, entries = [], []
        with self._locked():
            for row in self._rows():
                try:
                    entries.append(_entry(row))
                except AuditIntegrityError as err:
                    problems.append(str(err))
            previous = None
            for entry in entries:
                expected_seq = previous.seq + 1 if previous else 1
                if entry.seq > expected_seq:
                    gap = f"{expected_seq}" if entry.seq == expected_seq + 1 else f"{expected_seq}..{entry.seq - 1}"
                    problems.append(f"seq {gap}: missing (entries deleted)")
                elif entry.seq < expected_seq:
                    problems.append(f"seq {entry.seq}: out of range (seqs start at 1)")
                if not entry.hmac_ok(self.key):
                    problems.append(f"seq {entry.seq}: HMAC mismatch (the entry was edited, or written with another key)")
                if entry.prev_hash != (previous.entry_hash if previous else GENESIS):
                    after = f"seq {previous.seq}'s entry hash" if previous else GENESIS
                    problems.append(f"seq {entry.seq}: prev_hash does not match {after} "
                                    "(entries reordered, relinked, edited or deleted before it)")
                previous = entry
            by_seq = {e.seq: e for e in entries}
            problems += self._anchor_problems(previous, by_seq.get, allow_lag=False)
        head_seq, head_hash = (previous.seq, previous.entry_hash) if previous else (0, GENESIS)
        if expected_head is not None:
            seq, want = expected_head
            if seq not in by_seq:
                problems.append(f"seq {seq}: the expected head is missing (the log ends at seq {head_seq}); "
                                "the tail was truncated or the log rolled back")
            elif by_seq[seq].entry_hash != want:
                problems.append(f"seq {seq}: entry hash {by_seq[seq].entry_hash} differs from the expected head's {want} "
                                "(the entry or the chain before it was rewritten)")
        return Verification(ok=not problems, entries=len(entries), head_seq=head_seq, head_hash=head_hash,
                            problems=problems)

    @contextlib.contextmanager
    def _locked(self):
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self.lock_path, self.lock_timeout_s))
            except TimeoutError as err:
                raise TimeoutError(
                    f"the audit log {self.path} is busy: could not lock {self.lock_path} within {self.lock_timeout_s}s "
                    "(another writer holds it; look for a stuck process). Nothing was written.") from err
            yield

    def _rows(self) -> list[tuple]:
        if not self.path.exists():
            return []
        con = duckdb.connect(str(self.path), read_only=True, config=DUCKDB_CONFIG)
        try:
            if not con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [TABLE]).fetchall():
                return []
            return con.execute(f"{SELECT} ORDER BY seq").fetchall()
        finally:
            con.close()

    def _anchor_problems(self, head: AuditEntry | None, lookup: Callable[[int], AuditEntry | None],
                         allow_lag: bool) -> list[str]:
        """The anchor against the log's last entry. With `allow_lag`, an anchor behind the head is
        accepted if its seq still holds its hash (an append crashed between commit and anchor)."""
        head_seq = head.seq if head else 0
        if not self.anchor_path.exists():
            return [f"seq {head_seq}: the anchor {self.anchor_path.name} is missing while the log has entries"] if head else []
        try:
            anchor = json.loads(self.anchor_path.read_bytes())
            seq, entry_hash, mac = int(anchor["seq"]), str(anchor["entry_hash"]), str(anchor["hmac"])
        except (ValueError, TypeError, KeyError) as err:
            return [f"seq {head_seq}: the anchor {self.anchor_path.name} is unreadable ({err!r})"]
        if not hmac_lib.compare_digest(_sign(self.key, {"seq": seq, "entry_hash": entry_hash}).encode(), mac.encode()):
            return [f"seq {seq}: the anchor's HMAC is wrong (the anchor was forged, or another key is in use)"]
        if seq > head_seq:
            return [f"seq {seq}: the anchor records seq {seq} but the log ends at seq {head_seq}; the tail was truncated"]
        if seq == head_seq:
            return [] if entry_hash == head.entry_hash else [
                f"seq {seq}: the last entry's hash differs from the anchor's (the tail was replaced)"]
        at_anchor = lookup(seq)
        if at_anchor is None or at_anchor.entry_hash != entry_hash:
            return [f"seq {seq}: the entry the anchor records is missing or differs (the chain was rewritten)"]
        return [] if allow_lag else [
            f"seq {seq}: the anchor is behind the head seq {head_seq} (an append crashed before rewriting it, "
            "or the anchor was rolled back); the next append rewrites it"]


def _at(con: duckdb.DuckDBPyConnection, seq: int) -> AuditEntry | None:
    row = con.execute(f"{SELECT} WHERE seq = ?", [seq]).fetchone()
    return _entry(row) if row else None


def _entry(row: tuple) -> AuditEntry:
    values = dict(zip(FIELDS, row, strict=True))
    for field in JSON_FIELDS:
        try:
            values[field] = json.loads(values[field])
        except (TypeError, ValueError) as err:
            raise AuditIntegrityError(f"seq {values['seq']}: the {field} column is not valid JSON ({err})") from err
    return AuditEntry(**values)

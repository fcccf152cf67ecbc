"""The audit log: a persisted HMAC chain that detects edit,
deletion, reorder, forged relink and tail truncation, serializes concurrent writers, survives
restarts and fails closed."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from finai_assets.lib.audit import (
    DEFAULT_DEV_KEY,
    GENESIS,
    AuditEntry,
    AuditIntegrityError,
    AuditKeyError,
    AuditLog,
    audit_key,
    canonical,
)

REPO = Path(__file__).resolve().parents[1]
KEY = b"test-audit-key"
APPEND_SCRIPT = """
import sys
from pathlib import Path
from finai_assets.lib.audit import AuditLog
path, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
log = AuditLog(path, sys.argv[4].encode(), lock_timeout_s=300)
for i in range(count):
    log.append("materialized", f"asset_{worker}", "v2", f"run-{worker}", {"up": f"h{i}"}, f"out{i}", {"i": i})
"""


def _log(tmp_path, n: int = 5) -> tuple[AuditLog, list[AuditEntry]]:
    log = AuditLog(tmp_path / "governance" / "audit_log.duckdb", KEY)
    written = [log.append("materialized", "feature_table", "v2", f"run-{i}", {"synthetic_customers": f"in{i}"},
                          f"out{i}", {"rows": 100 + i, "note": "naïve"}) for i in range(n)]
    return log, written


def _sql(log: AuditLog, statement: str, params=()) -> None:
    con = duckdb.connect(str(log.path))
    try:
        con.execute(statement, list(params))
    finally:
        con.close()


def _append_in_subprocess(path, worker: str, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", APPEND_SCRIPT, str(path), worker, str(count), KEY.decode()], cwd=REPO)


def test_append_then_verify_round_trip(tmp_path):
    log, written = _log(tmp_path)
    assert [e.seq for e in written] == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == GENESIS
    assert [e.prev_hash for e in written[1:]] == [e.entry_hash for e in written[:-1]]
    assert log.entries() == written
    assert written[2].details == {"rows": 102, "note": "naïve"} and written[2].input_hashes == {"synthetic_customers": "in2"}
    assert written[2].timestamp.endswith("+00:00")
    assert written[4].entry_hash == hashlib.sha256(canonical(dataclasses.asdict(written[4]))).hexdigest()
    assert log.head() == (5, written[4].entry_hash)
    anchor = json.loads(log.anchor_path.read_text())
    assert (anchor["seq"], anchor["entry_hash"]) == (5, written[4].entry_hash)
    result = log.verify(expected_head=(5, written[4].entry_hash))
    assert (result.ok, result.entries, result.head_seq, result.head_hash, result.problems) == (
        True, 5, 5, written[4].entry_hash, [])
    assert AuditLog(tmp_path / "never_written.duckdb", KEY).head() == (0, GENESIS)


def test_an_edited_entry_fails_its_hmac(tmp_path):
    log, _ = _log(tmp_path)
    _sql(log, "UPDATE audit_log SET output_hash = 'forged' WHERE seq = 3")
    result = log.verify()
    assert not result.ok
    assert any(p.startswith("seq 3: HMAC mismatch") for p in result.problems)
    assert any(p.startswith("seq 4: prev_hash") for p in result.problems)  # seq 3's hash changed with it


def test_a_deleted_middle_entry_is_a_gap_and_a_broken_link(tmp_path):
    log, _ = _log(tmp_path)
    _sql(log, "DELETE FROM audit_log WHERE seq = 3")
    problems = log.verify().problems
    assert "seq 3: missing (entries deleted)" in problems
    assert any(p.startswith("seq 4: prev_hash does not match seq 2's") for p in problems)


def test_reordered_entries_fail(tmp_path):
    log, _ = _log(tmp_path)
    for a, b in [(2, 100), (4, 2), (100, 4)]:
        _sql(log, "UPDATE audit_log SET seq = ? WHERE seq = ?", [b, a])
    problems = log.verify().problems
    assert {p.split(":")[0] for p in problems if "HMAC mismatch" in p} == {"seq 2", "seq 4"}
    assert any(p.startswith("seq 3: prev_hash") for p in problems)


def test_a_forged_relink_without_the_key_is_caught_by_the_hmac(tmp_path):
    log, _ = _log(tmp_path)
    _sql(log, """UPDATE audit_log SET details = '{"note":"naïve","rows":1}' WHERE seq = 3""")
    for seq in (4, 5):  # the attacker recomputes every following link, as far as they can without the key
        previous = next(e for e in log.entries() if e.seq == seq - 1)
        _sql(log, "UPDATE audit_log SET prev_hash = ? WHERE seq = ?", [previous.entry_hash, seq])
    problems = log.verify().problems
    assert not [p for p in problems if "prev_hash" in p]  # the links are consistent again ...
    assert {p.split(":")[0] for p in problems if "HMAC mismatch" in p} == {"seq 3", "seq 4", "seq 5"}  # ... the HMACs are not


def test_tail_truncation_is_caught_by_the_anchor_and_by_the_expected_head(tmp_path):
    """docs/defects.md#audit-truncation: a truncated or rolled-back tail is caught by the anchor
    and by the head mirrored into materialization metadata."""
    log, written = _log(tmp_path)
    _sql(log, "DELETE FROM audit_log WHERE seq >= 4")
    result = log.verify()
    assert (result.ok, result.entries, result.head_seq) == (False, 3, 3)
    assert result.problems == ["seq 5: the anchor records seq 5 but the log ends at seq 3; the tail was truncated"]
    with pytest.raises(AuditIntegrityError, match="the tail was truncated"):
        log.append("materialized", "feature_table")  # appending would overwrite the anchor and hide the truncation
    assert log.head() == (3, written[2].entry_hash)

    log.anchor_path.unlink()
    result = log.verify(expected_head=(5, written[4].entry_hash))
    assert result.problems == [
        "seq 3: the anchor audit_log.head.json is missing while the log has entries",
        "seq 5: the expected head is missing (the log ends at seq 3); the tail was truncated or the log rolled back",
    ]


def test_an_expected_head_with_another_hash_fails(tmp_path):
    log, written = _log(tmp_path)
    result = log.verify(expected_head=(4, written[3].entry_hash[::-1]))
    assert result.problems == [f"seq 4: entry hash {written[3].entry_hash} differs from the expected head's "
                               f"{written[3].entry_hash[::-1]} (the entry or the chain before it was rewritten)"]


def test_an_anchor_behind_the_head_is_reported_and_repaired_by_the_next_append(tmp_path):
    log, _ = _log(tmp_path, 3)
    stale = log.anchor_path.read_bytes()
    log.append("materialized", "feature_table")
    log.anchor_path.write_bytes(stale)  # as if the append had crashed between its commit and the anchor rewrite
    assert log.verify().problems == ["seq 3: the anchor is behind the head seq 4 (an append crashed before rewriting it, "
                                     "or the anchor was rolled back); the next append rewrites it"]
    assert log.append("materialized", "feature_table").seq == 5
    assert log.verify().ok


def test_four_processes_appending_concurrently_build_one_chain(tmp_path):
    """docs/defects.md#forked-audit-chain: concurrent writers serialise under an OS file lock
    into one chain."""
    path = tmp_path / "audit_log.duckdb"
    workers = [_append_in_subprocess(path, str(w), 50) for w in range(4)]  # appends serialise on the lock: 200 in all
    assert [w.wait(timeout=300) for w in workers] == [0, 0, 0, 0]
    log = AuditLog(path, KEY)
    entries = log.entries()
    assert [e.seq for e in entries] == list(range(1, 201))
    for w in range(4):  # each writer's entries are all there, in its own order
        assert [e.details["i"] for e in entries if e.asset == f"asset_{w}"] == list(range(50))
    result = log.verify()
    assert (result.ok, result.entries, result.head_seq, result.problems) == (True, 200, 200, [])


def test_a_restarted_writer_continues_the_persisted_chain(tmp_path):
    """docs/defects.md#audit-chain-restarts: the head is read from the file on every append, so
    a new writer continues the chain."""
    log, written = _log(tmp_path, 3)
    again = AuditLog(log.path, KEY)  # a new object knows nothing but the file
    fourth = again.append("materialized", "task_labels", "v3")
    assert (fourth.seq, fourth.prev_hash) == (4, written[2].entry_hash)
    assert _append_in_subprocess(log.path, "fresh", 2).wait(timeout=120) == 0
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[4].prev_hash == fourth.entry_hash and entries[4].asset == "asset_fresh"
    assert log.verify().ok


def test_the_key_is_refused_in_production_when_missing_empty_or_default():
    """docs/defects.md#public-audit-key: production refuses a missing, empty or default key."""
    for env in ({}, {"FINAI_AUDIT_KEY": ""}, {"FINAI_AUDIT_KEY": DEFAULT_DEV_KEY}):
        with pytest.raises(AuditKeyError, match="set FINAI_AUDIT_KEY"):
            audit_key({**env, "FINAI_PROFILE": "production"})
    assert audit_key({"FINAI_PROFILE": "production", "FINAI_AUDIT_KEY": "s3cret"}) == b"s3cret"
    assert audit_key({}) == DEFAULT_DEV_KEY.encode()
    assert audit_key({"FINAI_PROFILE": "dev", "FINAI_AUDIT_KEY": "local"}) == b"local"
    with pytest.raises(AuditKeyError):
        AuditLog("audit_log.duckdb", b"")


def test_a_log_written_with_one_key_fails_with_another(tmp_path):
    log, _ = _log(tmp_path, 3)
    other = AuditLog(log.path, b"another-key")
    problems = other.verify().problems
    assert {p.split(":")[0] for p in problems if "HMAC mismatch" in p} == {"seq 1", "seq 2", "seq 3"}
    assert "seq 3: the anchor's HMAC is wrong (the anchor was forged, or another key is in use)" in problems
    with pytest.raises(AuditIntegrityError, match="fails its HMAC"):
        other.append("materialized", "feature_table")
    assert log.head()[0] == 3


def test_a_held_lock_times_out_and_nothing_is_written(tmp_path):
    log, written = _log(tmp_path, 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); sys.stdin.read()", str(log.lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = AuditLog(log.path, KEY, lock_timeout_s=0.2)
        with pytest.raises(TimeoutError, match=r"could not lock .*audit_log\.lock.*Nothing was written"):
            busy.append("materialized", "feature_table")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert log.entries() == written
    assert json.loads(log.anchor_path.read_text())["seq"] == 2
    with pytest.raises(TypeError, match="must be JSON-serializable"):
        log.append("materialized", "feature_table", details={"model": object()})
    assert log.head() == (2, written[1].entry_hash)


def _cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("FINAI_PROFILE", "FINAI_DATA_DIR")}
    env |= {"FINAI_AUDIT_KEY": KEY.decode(), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "finai_assets.cli", "audit", "verify", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli_audit_verify_exit_codes(tmp_path):
    log, written = _log(tmp_path, 3)
    ok = _cli("--path", str(log.path), "--expected-seq", "3", "--expected-hash", written[2].entry_hash)
    assert ok.returncode == 0, ok.stderr
    assert f"3 entries, head seq 3 hash {written[2].entry_hash}" in ok.stdout
    _sql(log, "UPDATE audit_log SET event = 'promotion:promote' WHERE seq = 2")
    bad = _cli("--path", str(log.path))
    assert bad.returncode == 1
    assert "problem: seq 2: HMAC mismatch" in bad.stdout
    missing = _cli(env_extra={"FINAI_DATA_DIR": str(tmp_path / "empty")})
    assert missing.returncode == 2
    assert f"no audit log at {tmp_path / 'empty' / 'governance' / 'audit_log.duckdb'}: nothing has been audited yet" in missing.stderr

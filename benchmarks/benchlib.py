"""Helpers shared by the benchmarks: /proc memory and CPU readings, the guarded child process,
the inputs folder, machine description, git SHA."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _proc_kib(path: str, field: str) -> int | None:
    """A `Field:  N kB` line of a /proc file, in KiB."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _status_kib(field: str, pid: int | str = "self") -> int | None:
    return _proc_kib(f"/proc/{pid}/status", field)


def _rss_gib(pid: int | str = "self") -> float:
    return (_status_kib("VmRSS", pid) or 0) / 1024**2


def _hwm_gib() -> float:
    return (_status_kib("VmHWM") or 0) / 1024**2


def git_sha() -> str:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        return r.stdout.strip() or "uncommitted"
    except (subprocess.CalledProcessError, OSError):
        return "uncommitted"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _busy_ticks() -> int:
    """Busy clock ticks of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _last_stage(progress: Path | None) -> str | None:
    """The stage a killed child was in (started, never ended)."""
    if progress is None or not progress.exists():
        return None
    open_stages: dict[str, dict] = {}
    for line in progress.read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] == "start":
            open_stages[rec["stage"]] = rec
        else:
            open_stages.pop(rec["stage"], None)
    return next(iter(open_stages), None)


def run_guarded(cmd: list[str], result: Path, max_rss_gib: float, timeout_min: float, progress: Path | None = None) -> dict:
    """Run a child (a fresh interpreter writing its record to `result`), polling its resident
    memory and time from outside and killing it past either guard. On success its record plus
    the observed peak and CPU use (the child's and other processes', in cores: > ~0.2 others
    means the timing was disturbed); else `ok: False` with the reason, the stage it was in and
    its stderr tail."""
    result.unlink(missing_ok=True)
    if progress is not None:
        progress.unlink(missing_ok=True)
    start = time.monotonic()
    busy0 = _busy_ticks()
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    observed, reason, child_ticks = 0.0, None, 0
    while proc.poll() is None:
        rss = _rss_gib(proc.pid)
        observed = max(observed, rss)
        child_ticks = _cpu_ticks(proc.pid) or child_ticks
        if rss > max_rss_gib:
            reason = f"resident memory {rss:.2f} GiB passed the --max-rss-gib guard of {max_rss_gib} GiB"
        elif time.monotonic() - start > timeout_min * 60:
            reason = f"ran past the --timeout-min limit of {timeout_min} min"
        if reason:
            proc.kill()  # the child this function started, by its own handle
            proc.wait()
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    hz = os.sysconf("SC_CLK_TCK")
    # the child's last poll is <= 0.2 s before its end; the parent's own polling is included
    other_cores = round(max(0.0, (_busy_ticks() - busy0 - child_ticks) / hz / max(elapsed, 1e-9)), 2)
    stderr = proc.stderr.read() if proc.stderr else ""
    if reason is None and proc.returncode != 0:
        reason = f"exit status {proc.returncode}" + (" (killed: SIGKILL, likely the kernel OOM killer)" if proc.returncode == -9 else "")
    if reason is None and not result.exists():
        reason = "no result file"
    if reason:
        return {"ok": False, "reason": reason, "stage": _last_stage(progress), "elapsed_s": round(elapsed, 1),
                "observed_peak_rss_gib": round(observed, 3), "stderr_tail": stderr[-2000:],
                "timed_out": reason.startswith("ran past"), "other_cpu_cores": other_cores}
    return {**json.loads(result.read_text()), "ok": True, "observed_peak_rss_gib": round(observed, 3),
            "child_cpu_cores": round(child_ticks / hz / max(elapsed, 1e-9), 2), "other_cpu_cores": other_cores}


def inputs_workdir(stack: contextlib.ExitStack, inputs_dir: Path | None, prefix: str) -> Path:
    """`--inputs-dir` (created, kept for a later run) or a temporary folder removed with `stack`."""
    if inputs_dir:
        inputs_dir.mkdir(parents=True, exist_ok=True)
        return inputs_dir.resolve()
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))


def least_disturbed(attempt, reruns: int, threshold: float, label: str) -> dict:
    """`attempt()` (a `run_guarded` record), repeated up to `reruns` more times while other
    processes' CPU use passed `threshold` cores (a run that passed its time limit while disturbed
    is repeated too, not taken as too big). The least disturbed successful record is returned with
    every attempt summarised in its `attempts`; when none succeeded, the last one."""
    attempts = []
    for i in range(1 + max(0, reruns)):
        r = attempt()
        attempts.append(r)
        if r["other_cpu_cores"] <= threshold or not (r["ok"] or r.get("timed_out")):
            break
        if i < reruns:
            what = "disturbed" if r["ok"] else f"{r['reason']} while disturbed"
            print(f"  {what} (other processes {r['other_cpu_cores']:.2f} cores); measuring {label} again ...", flush=True)
    keys = ("ok", "reason", "elapsed_s", "other_cpu_cores", "child_cpu_cores", "waited_for_idle_s")
    ok = [a for a in attempts if a["ok"]]
    best = min(ok, key=lambda a: a["other_cpu_cores"]) if ok else attempts[-1]
    return best | {"attempts": [{k: a.get(k) for k in keys} for a in attempts]}

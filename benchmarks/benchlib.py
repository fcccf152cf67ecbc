"""Helpers shared by the benchmarks: /proc memory readings, machine description, git SHA."""

from __future__ import annotations

import platform
import subprocess
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

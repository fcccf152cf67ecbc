"""`dagster dev` (webserver + daemon) for the end-to-end tests: its own DAGSTER_HOME with the
committed instance config, its own data folder, its own process group (so stopping it ends every child)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 180

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


SENSOR_TICKS_QUERY = """
query ($name: String!) { sensorOrError(sensorSelector: {repositoryName: "__repository__",
    repositoryLocationName: "finai_assets", sensorName: $name}) {
  __typename ... on Sensor { sensorState { status ticks(limit: 1) { status } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME holding the committed `.dagster/dagster.yaml` (run and pool limits)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text((REPO / ".dagster" / "dagster.yaml").read_text())
    return path


def tail(path: Path, n: int = 80) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


class DagsterDev:
    def __init__(self, base: str, log: Path):
        self.base, self.log = base, log

    def gql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        assert not payload.get("errors"), json.dumps(payload["errors"], indent=2)
        return payload["data"]

    def location_loaded(self) -> bool:
        entries = self.gql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        if entries and entries[0]["locationOrLoadError"] and entries[0]["locationOrLoadError"]["__typename"] == "PythonError":
            raise AssertionError(f"the code location failed to load: {entries[0]['locationOrLoadError']['message']}")
        return bool(entries) and entries[0]["loadStatus"] == "LOADED"

    def wait_for_tick(self, sensor: str, timeout_s: float = 120) -> None:
        """Until `sensor` has ticked once: declarative automation ignores what happened before its
        first evaluation, so a test acts only after it."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.gql(SENSOR_TICKS_QUERY, {"name": sensor})["sensorOrError"]
            assert found["__typename"] == "Sensor", found
            if found["sensorState"]["ticks"]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{sensor} did not tick within {timeout_s:.0f} s (status {found['sensorState']['status']}):\n{tail(self.log)}")
            time.sleep(1.0)


@contextlib.contextmanager
def dagster_dev(home: Path, data_dir: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[DagsterDev]:
    """Start `dagster dev` on a free port and yield once its code location has loaded."""
    port = free_port()
    environment = {**os.environ, "DAGSTER_HOME": str(home), "FINAI_DATA_DIR": str(data_dir), **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"dagster dev exited with {proc.returncode}:\n{tail(log)}")
            try:
                if server.location_loaded():
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dagster dev did not load the code location within {STARTUP_TIMEOUT_S} s:\n{tail(log)}")
            time.sleep(1.0)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

"""The model registry: content-addressed artifacts, candidates and the champion pointer.

Layout under `root` (default `data/governance/registry/`):
- `objects/<sha256><suffix>`: every artifact (a feature-pipeline table, a student model file, the
  teacher checkpoint, the training-feature sample) once, named by the sha256 of its bytes and
  verified against it on every read;
- `events.jsonl`: append-only, one JSON object per line, written under a file lock: `candidate`
  (a build's artifacts by name -> sha256, with its metadata) and `champion` (which candidate is
  the champion from then on, with the decision that made it so).
The champion is the candidate of the newest `champion` event; earlier champions stay archived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from finai_assets.lib.storage import atomic_write_bytes, file_lock, file_sha256


class RegistryIntegrityError(ValueError):
    """A registry object whose bytes no longer hash to its name, or a reference to a missing one."""


class ModelRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.events_path = self.root / "events.jsonl"

    # ---------------------------------------------------------------- objects

    def put_file(self, path: Path) -> str:
        """Copy `path` in (once per content); return its sha256."""
        sha = file_sha256(path)
        target = self.objects / f"{sha}{''.join(Path(path).suffixes)}"
        if not target.exists():
            self.objects.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        return sha

    def put_table(self, frame: pl.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd")
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        target = self.objects / f"{sha}.parquet"
        if not target.exists():
            atomic_write_bytes(target, data)
        return sha

    def path(self, sha: str) -> Path:
        """The object's file, verified: its bytes must hash to `sha`."""
        found = list(self.objects.glob(f"{sha}*")) if self.objects.exists() else []
        if len(found) != 1:
            raise RegistryIntegrityError(f"registry object {sha[:16]} is missing from {self.objects}; the registry was "
                                         "altered: restore it from backup or register the candidate again")
        if file_sha256(found[0]) != sha:
            raise RegistryIntegrityError(f"registry object {found[0]} refused: its bytes no longer hash to its name; "
                                         "the file was modified: restore it or register the candidate again")
        return found[0]

    def read_table(self, sha: str) -> pl.DataFrame:
        return pl.read_parquet(self.path(sha))

    # ---------------------------------------------------------------- events

    def events(self) -> list[dict]:
        if not self.events_path.exists():
            return []
        return [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]

    def _append(self, event: dict) -> dict:
        with file_lock(self.root / "registry.lock"):
            event = {"sequence": len(self.events()) + 1, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **event}
            self.root.mkdir(parents=True, exist_ok=True)
            with self.events_path.open("a") as fh:
                fh.write(json.dumps(event, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return event

    def register(self, dataset: str, run_id: str | None, artifacts: Mapping[str, str], meta: Mapping) -> dict:
        """A candidate: its id is the hash of its artifacts, so the same build registers once."""
        missing = [name for name, sha in artifacts.items() if not list(self.objects.glob(f"{sha}*"))]
        if missing:
            raise RegistryIntegrityError(f"candidate artifacts {missing} were never put into the registry; put_file/put_table them first")
        candidate_id = hashlib.sha256(json.dumps(dict(sorted(artifacts.items()))).encode()).hexdigest()
        known = self.candidate(candidate_id, required=False)
        if known is not None:
            return known
        return self._append({"event": "candidate", "candidate_id": candidate_id, "dataset": dataset, "run_id": run_id,
                             "artifacts": dict(artifacts), "meta": dict(meta)})

    def candidate(self, candidate_id: str, required: bool = True) -> dict | None:
        found = next((e for e in self.events() if e["event"] == "candidate" and e["candidate_id"] == candidate_id), None)
        if found is None and required:
            raise KeyError(f"no candidate {candidate_id[:16]} in {self.events_path}")
        return found

    def set_champion(self, candidate_id: str, decision: str, reason: str, run_id: str | None, audit_seq: int | None) -> dict:
        self.candidate(candidate_id)
        return self._append({"event": "champion", "candidate_id": candidate_id, "decision": decision, "reason": reason,
                             "run_id": run_id, "audit_seq": audit_seq})

    def champion(self) -> dict | None:
        """The current champion: its candidate record plus the `champion` event that made it so."""
        pointer = next((e for e in reversed(self.events()) if e["event"] == "champion"), None)
        if pointer is None:
            return None
        return {**self.candidate(pointer["candidate_id"]), "promotion": pointer}

    def champions(self) -> list[dict]:
        """Every champion event, oldest first (the archive)."""
        return [e for e in self.events() if e["event"] == "champion"]

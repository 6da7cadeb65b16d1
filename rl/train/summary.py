"""What a run keeps of itself for the results ledger: per-episode returns, wall time, and `summary.json`.

    RUN_DIR/summary.json              written atomically when a run finishes (by `train`, and again by `resume`)
    RUN_DIR/sittings.json             one entry per process that trained the run: steps covered, seconds, machine
                                      (with several processes at once, each keeps its own in process_<k>_of_<n>/)
    RUN_DIR/seed_<s>/episodes.jsonl   one line per Gymnasium evaluation: step, episodes, per-episode returns

`summary.json` is small (kilobytes) and self-contained: the resolved config (with its history of changes on
resume), the dataset's id, recipe and fingerprint, the budget, each seed's learning curve, final score and mean of
its last three evaluations, the final evaluation's per-episode returns, the wall time summed over sittings, the
machine and the code version. `python -m rl.results add RUN_DIR` copies it into the ledger (`rl.results`).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rl.data import OfflineDataset, Transitions

from .config import CONFIG_FILE, RunConfig
from .evaluators import Evaluation, episode_metrics
from .sweep import Member

__all__ = [
    "EPISODES_FILE",
    "SITTINGS_FILE",
    "SUMMARY_FILE",
    "SUMMARY_VERSION",
    "EpisodeLog",
    "Sitting",
    "build_summary",
    "code_version",
    "dataset_fingerprint",
    "dumps",
    "machine",
    "write_summary",
]

SUMMARY_FILE = "summary.json"
SITTINGS_FILE = "sittings.json"
EPISODES_FILE = "episodes.jsonl"
SUMMARY_VERSION = 1
# the summary's second score: each seed's mean over its last LAST evaluations
LAST = 3


def dataset_fingerprint(dataset: OfflineDataset) -> str:
    """`"sha256:..."` over the loaded transitions (every field's name, dtype, shape and bytes, in a fixed order).

    Two datasets with the same fingerprint train identically; the hash is of the arrays the run sees (after loading,
    float32, actions clipped), so it does not depend on how the files were written. About 0.3 s for 1M transitions.
    """
    digest = hashlib.sha256()
    for field in dataclasses.fields(Transitions):
        x = np.ascontiguousarray(np.asarray(getattr(dataset.transitions, field.name)))
        digest.update(f"{field.name}:{x.dtype.str}:{x.shape};".encode())
        digest.update(x.data)
    return "sha256:" + digest.hexdigest()


class EpisodeLog:
    """`seed_<s>/episodes.jsonl`: one JSON line per Gymnasium evaluation (on resume, lines after the checkpoint go)."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.is_file():
            kept = [row for row in _read_jsonl(path) if row["step"] <= resume_step]
            path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        elif path.exists():
            path.unlink()

    def write(self, step: int, evaluation: Evaluation, *, final: bool) -> None:
        """Append an evaluation (nothing for a built-in task, which has no episodes)."""
        if evaluation.returns is None:
            return
        normalized = None if evaluation.normalized is None else evaluation.normalized.tolist()
        row = {"step": step, "final": final, "episodes": evaluation.episodes, "returns": evaluation.returns.tolist(),
               "normalized": normalized}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a kill: the evaluation is redone on resume
            continue
    return rows


class Sitting:
    """This process's entry in `sittings.json`, kept up to date at every checkpoint and when the process stops."""

    def __init__(self, run_dir: Path, step: int, *, resume: bool):
        self.path = run_dir / SITTINGS_FILE
        self.sittings: list[dict[str, Any]] = []
        if resume and self.path.is_file():
            try:
                self.sittings = list(json.loads(self.path.read_text())["sittings"])
            except (ValueError, KeyError, TypeError):
                self.sittings = [{"damaged": True}]  # counted as unknown rather than silently as zero
        # the code this process runs, read when it starts (the checkout may change while it trains)
        self.entry = {"started": _utc_now(), "from_step": step, "to_step": step, "seconds": 0.0,
                      "device": _device_kind(), "code_version": code_version()}
        self.sittings.append(self.entry)
        self._t0 = time.perf_counter()

    def update(self, step: int) -> None:
        """Record the step reached and the seconds spent so far."""
        self.entry["to_step"] = step
        self.entry["seconds"] = round(time.perf_counter() - self._t0, 3)
        _write_atomic(self.path, dumps({"sittings": self.sittings}))


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _device_kind() -> str:
    backend, kind = jax.default_backend(), jax.devices()[0].device_kind
    return backend if kind == backend else f"{backend}: {kind}"


@functools.cache
def code_version() -> str | None:
    """`git describe --always --dirty` of the checkout holding the `rl` package, or None (no git, not a checkout).

    Read once per process (cached), first when a run starts: the version of the code the process imported."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def machine() -> dict[str, Any]:
    """Platform, CPU count, Python, jax version, backend and devices of this process."""
    devices = jax.devices()
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
            "device_count": len(devices)}


def _read_evals(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _dataset_section(config: RunConfig, dataset: OfflineDataset, fingerprint: str) -> dict[str, Any]:
    returns = np.asarray(dataset.episode_returns, dtype=np.float64)
    normalized = None
    if dataset.has_ref_scores and len(returns):
        normalized = float(np.mean(dataset.normalized_score(returns)))
    return {
        "name": config.dataset, "id": dataset.dataset_id, "env_id": dataset.env_id, "fingerprint": fingerprint,
        "recipe": json.loads(json.dumps(dataset.recipe or {}, default=str)), "transitions": len(dataset),
        "episodes": len(returns), "return_mean": float(np.mean(returns)) if len(returns) else None,
        "normalized_return_mean": normalized, "ref_min_score": dataset.ref_min_score,
        "ref_max_score": dataset.ref_max_score,
    }


def build_summary(
    run_dir: Path, config: RunConfig, dataset: OfflineDataset, fingerprint: str, *, member: Member | None = None
) -> dict[str, Any]:
    """The summary of a finished run, read from its files (so a resumed run's covers every sitting).

    With `member` (a sweep's), the summary of that member alone, as the plain one-seed run it is: its config is
    `config.member_run(member)` (so the ledger files it with the runs of the same setting), its logs those of its
    directory, and `sweep` records the run it came from.
    """
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    origin = None
    if member is not None:
        origin = {"run_dir": str(run_dir), "member": member.path, "sweep": saved.get("sweep"),
                  "history": saved.get("history", [])}
        config = config.member_run(member)
        saved = config.to_dict()
        log_dirs = {member.seed: run_dir / member.path}
    else:
        log_dirs = {s: run_dir / f"seed_{s}" for s in config.seeds}
    seeds, tc = config.seeds, config.train
    steps: list[int] | None = None
    curve: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    final: dict[str, Any] = {"step": tc.steps, "episodes": None, "score": {}, "metrics": {}}
    for s in seeds:
        rows = _read_evals(log_dirs[s] / "eval.csv")
        seed_steps = [int(r["step"]) for r in rows]
        if steps is not None and seed_steps != steps:
            raise ValueError(f"{run_dir}: the seeds were evaluated at different steps ({steps} vs {seed_steps}).")
        steps = seed_steps
        curve[str(s)] = [r["score"] for r in rows]
        if rows:
            last[str(s)] = float(np.mean(curve[str(s)][-LAST:]))
        episodes = [e for e in _read_jsonl(log_dirs[s] / EPISODES_FILE) if e["step"] == tc.steps]
        finals = [e for e in episodes if e["final"]]
        if finals:  # Gymnasium: the final evaluation's episodes
            e = finals[-1]
            returns = np.asarray(e["returns"], dtype=np.float64)
            normalized = None if e["normalized"] is None else np.asarray(e["normalized"], dtype=np.float64)
            metrics = episode_metrics(returns, normalized)
            final["episodes"] = len(returns)
            final.setdefault("returns", {})[str(s)] = [round(float(x), 3) for x in returns]
            if normalized is not None:
                final.setdefault("normalized", {})[str(s)] = [round(float(x), 4) for x in normalized]
        elif rows and seed_steps[-1] == tc.steps:  # a built-in task: its last evaluation
            metrics = {k: v for k, v in rows[-1].items() if k != "step"}
        else:
            continue
        final["score"][str(s)] = metrics["score"]
        final["metrics"][str(s)] = {k: v for k, v in metrics.items() if k != "score"}
    sittings = _sittings(run_dir)
    return {
        "summary_version": SUMMARY_VERSION,
        "finished": _utc_now(),
        "agent": config.agent,
        "dataset": _dataset_section(config, dataset, fingerprint),
        "budget": {"steps": tc.steps, "batch_size": tc.batch_size, "seeds": list(seeds), "eval_every": tc.eval_every,
                   "eval_episodes": tc.eval_episodes, "final_eval_episodes": tc.final_eval_episodes},
        "score": _score_name(dataset),
        "final": final,
        "last3": {"steps": (steps or [])[-LAST:], "score": last},
        "curve": {"steps": steps or [], "score": curve},
        "wall_time_s": _wall_time(sittings),
        "sittings": sittings,
        "machine": machine(),
        "code_version": _first_code_version(sittings),
        "config": saved,
        **({"sweep": origin} if origin is not None else {}),
    }


def _sittings(run_dir: Path) -> list[dict[str, Any]]:
    """Every sitting of the run: its own `sittings.json`, or each process's (marked with `"process"`)."""
    from .distributed import process_dirs

    dirs = process_dirs(run_dir)
    if not dirs:
        path = run_dir / SITTINGS_FILE
        return json.loads(path.read_text())["sittings"] if path.is_file() else []
    out = []
    for index, directory in dirs.items():
        path = directory / SITTINGS_FILE
        if path.is_file():
            out += [{**entry, "process": index} for entry in json.loads(path.read_text())["sittings"]]
    return out


def _first_code_version(sittings: list[dict[str, Any]]) -> str | None:
    """The code version the run started with (each sitting records its own; older runs' sittings do not)."""
    for x in sittings:
        if "code_version" in x:
            return x["code_version"]
    return code_version()


def _wall_time(sittings: list[dict[str, Any]]) -> float:
    """Seconds the run took: summed over sittings; processes that trained side by side count once (the slowest)."""
    per_process: dict[int, float] = {}
    for x in sittings:
        per_process[int(x.get("process", 0))] = per_process.get(int(x.get("process", 0)), 0.0) + float(
            x.get("seconds", 0.0))
    return round(max(per_process.values(), default=0.0), 3)


def _score_name(dataset: OfflineDataset) -> str:
    if dataset.task is not None:
        return "the task's score"
    return "normalised return (D4RL scale)" if dataset.has_ref_scores else "return"


# numbers-only JSON lists, written on one line (a curve of 100 points stays 100 numbers, not 100 lines)
_NUMBER_LIST = re.compile(r"\[(?:\s*(?:-?\d[\d.eE+-]*|null|NaN|-?Infinity)\s*,?)+\s*\]")


def dumps(data: Any) -> str:
    """JSON with two-space indents and every list of numbers on one line."""
    text = json.dumps(data, indent=2)
    one_line = _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(0)[1:-1].split(",")) + "]", text)
    return one_line + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_summary(
    run_dir: Path, config: RunConfig, dataset: OfflineDataset, fingerprint: str, *, member: Member | None = None
) -> dict[str, Any]:
    """Build the summary of a finished run (or of a sweep's `member`) and write it atomically; returns it.

    It goes to `RUN_DIR/summary.json`, a member's to `RUN_DIR/<member.path>/summary.json`.
    """
    summary = build_summary(run_dir, config, dataset, fingerprint, member=member)
    _write_atomic((run_dir if member is None else run_dir / member.path) / SUMMARY_FILE, dumps(summary))
    return summary

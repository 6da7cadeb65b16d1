"""Several processes (hosts) training one run, on JAX's own runtime (`jax.distributed`).

The members of a run (its seeds, times a sweep's values) are independent, so processes never exchange arrays while
training: the members are split into contiguous blocks, one per process (`share`), and each process trains its block
on its own local devices (spread over them as `rl.train.chunk.make_mesh` decides), writes only its members' logs and
summaries, and keeps its own checkpoint. `jax.distributed` provides what they do share: who is who (process index
and count), and barriers while the run directory is set up and when it is finished.

    RUN_DIR/process_<k>_of_<n>/   checkpoint.eqx, checkpoint.prev.eqx, sittings.json of process k (n > 1 only)

A run trained by `n` processes resumes with `n` processes (each continues its own block from its own checkpoint).

How processes find each other (`initialize`): a coordinator address (`host:port` of process 0), the number of
processes and this one's index, from the command line (`--coordinator`, `--num-processes`, `--process-id`) or the
environment (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`); with none of them, JAX detects a
cluster it knows (Slurm, Open MPI, ...) from the job's environment, as `jax.distributed.initialize()` does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import jax
import numpy as np

__all__ = ["barrier", "initialize", "is_main", "process_dirs", "share", "state_dir"]

T = TypeVar("T")
_STATE_DIR = re.compile(r"^process_(\d+)_of_(\d+)$")


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Join the run's processes (call once, before anything else uses JAX's devices).

    Args:
        coordinator: `host:port` of process 0 (default `$JAX_COORDINATOR_ADDRESS`, else detected).
        num_processes: how many processes (default `$JAX_NUM_PROCESSES`, else detected).
        process_id: this process's index in `[0, num_processes)` (default `$JAX_PROCESS_ID`, else detected).

    Raises:
        ValueError: inconsistent settings (an index outside the count, a count below 1, a malformed address).
    """
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = _int_env("JAX_NUM_PROCESSES") if num_processes is None else num_processes
    process_id = _int_env("JAX_PROCESS_ID") if process_id is None else process_id
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"the number of processes must be >= 1, got {num_processes}.")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"the process id must be in [0, {num_processes}), got {process_id}.")
    if coordinator is not None and not re.fullmatch(r"[^:\s]+:\d+", coordinator):
        raise ValueError(f"the coordinator address must be host:port (e.g. 10.0.0.1:1234), got {coordinator!r}.")
    # processes on CPU talk through Gloo (GPUs use NCCL whatever this says); set before the backend starts
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def _int_env(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {text!r}.") from None


def is_main() -> bool:
    """Whether this is process 0 (the one that writes the run directory's shared files)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def share(items: Sequence[T], index: int | None = None, count: int | None = None) -> list[T]:
    """The contiguous block of `items` that process `index` of `count` trains (default: this process's).

    Blocks differ in length by at most one, the first ones longer (`numpy.array_split`'s rule); a process may get
    none when there are fewer members than processes.
    """
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    bounds = np.array_split(np.arange(len(items)), count)[index]
    return [items[int(i)] for i in bounds]


def state_dir(run_dir: Path, index: int | None = None, count: int | None = None) -> Path:
    """Where process `index` of `count` keeps its checkpoint and sittings: the run directory itself for one process."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    return run_dir if count == 1 else run_dir / f"process_{index}_of_{count}"


def process_dirs(run_dir: Path) -> dict[int, Path]:
    """The state directories of a run trained by several processes, by process index (empty for one process).

    Raises:
        ValueError: directories of different process counts (a damaged run directory).
    """
    found: dict[int, Path] = {}
    counts = set()
    if run_dir.is_dir():
        for path in run_dir.iterdir():
            match = _STATE_DIR.match(path.name)
            if match and path.is_dir():
                found[int(match.group(1))] = path
                counts.add(int(match.group(2)))
    if len(counts) > 1:
        raise ValueError(f"{run_dir} holds the states of runs with {sorted(counts)} processes; keep one.")
    return dict(sorted(found.items()))


def trained_by(run_dir: Path) -> int:
    """How many processes trained the run in `run_dir` (1 when it has no per-process state directories)."""
    dirs = process_dirs(run_dir)
    if not dirs:
        return 1
    return int(_STATE_DIR.match(next(iter(dirs.values())).name).group(2))

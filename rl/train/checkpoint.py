"""Checkpoints that are verified before they are trusted.

A checkpoint is two files: `checkpoint.eqx` (every seed's agent state, RNG key and the step, serialised with
`equinox.tree_serialise_leaves`) and `checkpoint.json` (its step, size and sha256). Writing one:

1. the new data and its sidecar go to temporary files, flushed and fsynced;
2. the current pair, if it verifies, becomes `checkpoint.prev.eqx` / `checkpoint.prev.json`;
3. the temporary files replace the current pair (data first, then the sidecar).

A crash (or `kill -9`) at any point leaves at least one pair that verifies: before step 3 the current pair, after it
the previous one. Reading checks the size and hash; a damaged or unverifiable `checkpoint.eqx` is named as such and
the previous good checkpoint is used instead (the caller is told which one).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .chunk import Carry

__all__ = ["CHECKPOINT_FILE", "CorruptCheckpointError", "LoadedCheckpoint", "has_checkpoint", "load", "save"]

CHECKPOINT_FILE = "checkpoint.eqx"
_SIDECAR = "checkpoint.json"
_PREV = "checkpoint.prev.eqx"
_PREV_SIDECAR = "checkpoint.prev.json"


class CorruptCheckpointError(RuntimeError):
    """No checkpoint of a run directory verifies (the message names each file and what is wrong with it)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What `load` returns."""

    # the carry of every seed
    carry: Carry
    # updates done per seed
    step: int
    # the file read (checkpoint.eqx, or checkpoint.prev.eqx when the latest one did not verify)
    path: Path
    # why the latest checkpoint was skipped, or None when it was used
    skipped: str | None


def _tree(carry: Carry, step: int) -> dict[str, Any]:
    return {"agent": carry.agent, "key": jax.random.key_data(carry.key), "step": np.asarray(step, np.int64)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save(run_dir: str | os.PathLike, carry: Carry, step: int) -> Path:
    """Write a verified checkpoint of `carry` at `step` into `run_dir`, keeping the previous good one.

    Returns:
        The path of the new `checkpoint.eqx`.
    """
    run_dir = Path(run_dir)
    data_tmp, side_tmp = run_dir / f".{CHECKPOINT_FILE}.tmp", run_dir / f".{_SIDECAR}.tmp"
    with open(data_tmp, "wb") as f:
        eqx.tree_serialise_leaves(f, _tree(jax.device_get(carry), step))
        f.flush()
        os.fsync(f.fileno())
    sidecar = {"step": int(step), "bytes": data_tmp.stat().st_size, "sha256": _sha256(data_tmp)}
    _fsync_write(side_tmp, (json.dumps(sidecar) + "\n").encode())
    current, current_side = run_dir / CHECKPOINT_FILE, run_dir / _SIDECAR
    if _verify(current, current_side) is None:
        os.replace(current, run_dir / _PREV)
        os.replace(current_side, run_dir / _PREV_SIDECAR)
    os.replace(data_tmp, current)
    os.replace(side_tmp, current_side)
    return current


def _verify(data: Path, sidecar: Path) -> str | None:
    """None if `data` matches its sidecar, else what is wrong (one phrase)."""
    if not data.is_file():
        return "missing"
    if not sidecar.is_file():
        return f"has no {sidecar.name} to verify it against (the write was interrupted)"
    try:
        expected = json.loads(sidecar.read_text())
        size, digest = int(expected["bytes"]), str(expected["sha256"])
    except (ValueError, KeyError, TypeError):
        return f"has a damaged {sidecar.name}"
    actual = data.stat().st_size
    if actual != size:
        return f"is corrupt: {actual} bytes where {size} were written"
    if _sha256(data) != digest:
        return "is corrupt: its content does not match the sha256 recorded when it was written"
    return None


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether `run_dir` holds any checkpoint file (verified or not)."""
    run_dir = Path(run_dir)
    return (run_dir / CHECKPOINT_FILE).is_file() or (run_dir / _PREV).is_file()


def load(run_dir: str | os.PathLike, like: Carry) -> LoadedCheckpoint:
    """Read the newest checkpoint of `run_dir` that verifies into the structure of `like` (arrays or shape structs).

    Raises:
        FileNotFoundError: the directory holds no checkpoint at all.
        CorruptCheckpointError: none of its checkpoints verifies (each file and its fault is named).
        ValueError: a checkpoint verifies but does not fit `like` (another agent or network shape).
    """
    run_dir = Path(run_dir)
    if not has_checkpoint(run_dir):
        raise FileNotFoundError(f"no checkpoint in {run_dir}.")
    faults = []
    for data, side in ((CHECKPOINT_FILE, _SIDECAR), (_PREV, _PREV_SIDECAR)):
        fault = _verify(run_dir / data, run_dir / side)
        if fault is None:
            carry, step = _read(run_dir / data, like)
            skipped = None
            if faults:
                name, fault = faults[0]
                skipped = f"{run_dir / name} {'is missing' if fault == 'missing' else fault}"

            return LoadedCheckpoint(carry=carry, step=step, path=run_dir / data, skipped=skipped)
        if fault != "missing" or data == CHECKPOINT_FILE:
            faults.append((data, fault))
    named = "; ".join(f"{run_dir / d} {'is missing' if f == 'missing' else f}" for d, f in faults)
    raise CorruptCheckpointError(f"no usable checkpoint in {run_dir}: {named}.")


def _read(path: Path, like: Carry) -> tuple[Carry, int]:
    skeleton = {
        "agent": like.agent,
        "key": jax.eval_shape(jax.random.key_data, like.key),
        "step": np.asarray(0, np.int64),
    }
    try:
        tree = eqx.tree_deserialise_leaves(path, skeleton)
    except Exception as e:  # equinox/numpy raise assorted errors for a tree of another shape
        raise ValueError(
            f"the checkpoint {path} is intact but does not fit the state of this agent config "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it was written with other network "
            "shapes or by another agent."
        ) from None
    return Carry(agent=tree["agent"], key=jax.random.wrap_key_data(tree["key"])), int(tree["step"])

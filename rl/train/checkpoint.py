"""Checkpoints that are verified before they are trusted.

A checkpoint is one file, `checkpoint.eqx`: a one-line JSON header (step, payload size and sha256) followed by the
payload, every member's agent state, RNG key and step serialised with `equinox.tree_serialise_leaves` (a sweep's
values are not in it: they are in the run's `config.json`). Writing one:

1. header and payload go to a temporary file, flushed and fsynced;
2. the current checkpoint, if it verifies, becomes `checkpoint.prev.eqx` (one atomic rename);
3. the temporary file becomes `checkpoint.eqx` (one atomic rename).

A crash (or `kill -9`) at any point leaves at least one file that verifies: before step 2 the current one, between
2 and 3 the previous one, after 3 both. Reading checks the size and hash: a damaged or missing `checkpoint.eqx` is
named as such and the previous good checkpoint is used instead (the caller is told which one).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .chunk import Carry, init_carry
from .sweep import Member

__all__ = [
    "CHECKPOINT_FILE",
    "CorruptCheckpointError",
    "LoadedCheckpoint",
    "has_checkpoint",
    "load",
    "read_header",
    "same_shapes",
    "save",
    "shapes_of",
]

CHECKPOINT_FILE = "checkpoint.eqx"
_PREV = "checkpoint.prev.eqx"
_MAGIC = "rl-checkpoint"
_MAX_HEADER = 4096


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


def save(run_dir: str | os.PathLike, carry: Carry, step: int) -> Path:
    """Write a verified checkpoint of `carry` at `step` into `run_dir`, keeping the previous good one.

    Returns:
        The path of the new `checkpoint.eqx`.
    """
    run_dir = Path(run_dir)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, _tree(jax.device_get(carry), step))
    payload = buffer.getvalue()
    header = {"format": _MAGIC, "step": int(step), "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    tmp = run_dir / f".{CHECKPOINT_FILE}.tmp"
    with open(tmp, "wb") as f:
        f.write((json.dumps(header) + "\n").encode())
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    current = run_dir / CHECKPOINT_FILE
    if _verify(current)[0] is None:
        os.replace(current, run_dir / _PREV)
    os.replace(tmp, current)
    return current


def _header(f: Any) -> dict[str, Any] | None:
    line = f.readline(_MAX_HEADER)
    try:
        header = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("format") != _MAGIC:
        return None
    return header


def _verify(path: Path) -> tuple[str | None, int]:
    """`(fault, payload offset)`: fault None if `path` holds a checkpoint whose payload matches its header."""
    if not path.is_file():
        return "is missing", 0
    with open(path, "rb") as f:
        header = _header(f)
        if header is None:
            size = path.stat().st_size
            return ("is empty" if size == 0 else "is corrupt: it has no readable checkpoint header"), 0
        offset = f.tell()
        payload = f.read()
    try:
        size, digest = int(header["bytes"]), str(header["sha256"])
    except (KeyError, TypeError, ValueError):
        return "is corrupt: its header is damaged", 0
    if len(payload) != size:
        return f"is corrupt: {len(payload)} bytes where {size} were written", 0
    if hashlib.sha256(payload).hexdigest() != digest:
        return "is corrupt: its content does not match the sha256 recorded when it was written", 0
    return None, offset


def read_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The header of a checkpoint file (`step`, `bytes`, `sha256`), or None if it has none (not verified)."""
    try:
        with open(path, "rb") as f:
            return _header(f)
    except OSError:
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
    for name in (CHECKPOINT_FILE, _PREV):
        fault, offset = _verify(run_dir / name)
        if fault is None:
            carry, step = _read(run_dir / name, offset, like)
            skipped = f"{run_dir / faults[0][0]} {faults[0][1]}" if faults else None
            return LoadedCheckpoint(carry=carry, step=step, path=run_dir / name, skipped=skipped)
        if fault != "is missing" or name == CHECKPOINT_FILE:
            faults.append((name, fault))
    named = "; ".join(f"{run_dir / n} {f}" for n, f in faults)
    raise CorruptCheckpointError(f"no usable checkpoint in {run_dir}: {named}.")


def _read(path: Path, offset: int, like: Carry) -> tuple[Carry, int]:
    skeleton = {
        "agent": like.agent,
        "key": jax.eval_shape(jax.random.key_data, like.key),
        "step": np.asarray(0, np.int64),
    }
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            tree = eqx.tree_deserialise_leaves(f, skeleton)
    except Exception as e:  # equinox/numpy raise assorted errors for a tree of another shape
        raise ValueError(
            f"the checkpoint {path} is intact but does not fit the state of this agent config "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it was written with other network "
            "shapes or by another agent."
        ) from None
    return Carry(agent=tree["agent"], key=jax.random.wrap_key_data(tree["key"])), int(tree["step"])


# ----------------------------------------------------------------------------------------------------------------------
# What a checkpoint must fit


def shapes_of(
    agent_name: str,
    agent_config: Any,
    seeds: tuple[int, ...],
    info: Any,
    sweep: tuple = (),
    *,
    members: Sequence[Member] | None = None,
) -> Carry:
    """The carry's structure (shape structs, no computation) for a config: what a checkpoint must fit.

    `members` (default: all of the config's) restricts it to some members, e.g. one process's share.
    """
    from rl.agents import get_agent

    from .config import RunConfig

    every = RunConfig(agent=agent_name, dataset="-", seeds=seeds, agent_config=agent_config, sweep=sweep).members
    members = every if members is None else [every[m.index] for m in members]
    return eqx.filter_eval_shape(
        init_carry, get_agent(agent_name), agent_config, members, obs_dim=info.obs_dim, act_dim=info.act_dim
    )


def _array_layout(carry: Carry) -> list[tuple[str, tuple[int, ...], Any]]:
    # paths, shapes and dtypes of the arrays; static fields (the config itself) are not part of it
    leaves = jax.tree_util.tree_leaves_with_path(
        eqx.filter(carry, lambda x: isinstance(x, jax.ShapeDtypeStruct) or eqx.is_array(x))
    )
    return [(jax.tree_util.keystr(p), tuple(x.shape), x.dtype) for p, x in leaves]


def same_shapes(a: Carry, b: Carry) -> bool:
    """Whether two carries (or their shape structs) hold arrays of the same paths, shapes and dtypes."""
    return _array_layout(a) == _array_layout(b)

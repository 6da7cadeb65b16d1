"""The divergence guard's pieces: the error a diverged run stops with, finding the first non-finite diagnostic, and
the hint that says how to continue (`rl.train.loop` checks between chunks; `rl.train.chunk.nonfinite_leaves` checks
the state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import RunConfig
from .fields import dotted_fields

__all__ = ["DivergenceError", "first_nonfinite", "lr_hint"]


class DivergenceError(RuntimeError):
    """A run stopped because a diagnostic, a parameter, an optimiser state or an evaluation became NaN or infinite."""


def first_nonfinite(infos: dict[str, np.ndarray]) -> tuple[int, int, dict[str, float]] | None:
    """`(member index, update index, {name: value})` of the earliest update with a non-finite diagnostic, or None."""
    bad = {name: ~np.isfinite(values) for name, values in infos.items()}
    hits = [np.argwhere(b) for b in bad.values() if b.any()]
    if not hits:
        return None
    where = np.concatenate(hits)
    seed_idx, upd = where[np.lexsort((where[:, 0], where[:, 1]))[0]]
    values = {name: float(infos[name][seed_idx, upd]) for name, b in bad.items() if b[seed_idx, upd]}
    return int(seed_idx), int(upd), values


def lr_hint(config: RunConfig, run_dir: Path) -> str:
    """The command that continues a diverged run with a smaller learning rate (every `lr` field of its agent)."""
    lrs = [k for k in dotted_fields(config.agent_config) if k == "lr" or k.endswith(".lr")]
    options = " ".join(f"--agent.{k}=..." for k in lrs) or "--agent.FIELD=..."
    return f"python -m rl.train --resume {run_dir} {options} (a smaller learning rate), or start a run with other settings"

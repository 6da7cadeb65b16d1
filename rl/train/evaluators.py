"""Scoring a policy, chosen once per run from what the dataset is: a Gymnasium environment or a built-in task.

Everything an evaluation needs is saved in the run directory (`dataset.json`, `normalizer.json`), so a run can be
evaluated again, or acted with, without loading its dataset.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from rl.data import Normalizer, OfflineDataset, load_named

from .config import write_json_atomic

__all__ = [
    "DATASET_FILE",
    "NORMALIZER_FILE",
    "DatasetInfo",
    "Evaluator",
    "Policy",
    "make_evaluator",
]

DATASET_FILE = "dataset.json"
NORMALIZER_FILE = "normalizer.json"
# Seeds of evaluation episodes: 1_000_000 + 1_000 * training seed (+ episode index), fixed over a run so that
# successive evaluations of one seed start from the same states and a learning curve is not evaluation noise.
_EVAL_SEED_BASE = 1_000_000
_EVAL_SEED_STRIDE = 1_000


class Policy(eqx.Module):
    """`policy(key, obs) -> actions` for one seed's agent state, on normalised observations.

    A pytree, so evaluating new parameters does not recompile.
    """

    state: Any
    act: Callable = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        return self.act(self.state, obs, key=key)


@dataclass(frozen=True)
class DatasetInfo:
    """What a run keeps of its dataset (`dataset.json`): enough to evaluate and act without loading it."""

    # the name the run was given (Minari id, path or built-in task)
    name: str
    # the Minari id recorded in the dataset
    dataset_id: str
    # Gymnasium id of the environment, or None
    env_id: str | None
    # returns that normalise to 0 and 100, or None
    ref_min_score: float | None
    ref_max_score: float | None
    # observation and action sizes
    obs_dim: int
    act_dim: int

    @classmethod
    def of(cls, name: str, dataset: OfflineDataset) -> DatasetInfo:
        """The info of a loaded dataset."""
        return cls(
            name=name,
            dataset_id=dataset.dataset_id,
            env_id=dataset.env_id,
            ref_min_score=dataset.ref_min_score,
            ref_max_score=dataset.ref_max_score,
            obs_dim=dataset.obs_dim,
            act_dim=dataset.act_dim,
        )

    def save(self, run_dir: Path) -> None:
        """Write `RUN_DIR/dataset.json`."""
        write_json_atomic(run_dir / DATASET_FILE, asdict(self))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> DatasetInfo:
        """Read `RUN_DIR/dataset.json` (one-line errors naming the file)."""
        path = Path(run_dir) / DATASET_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the run was started by an older release or never began.")
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path} is damaged ({e}).") from None


Evaluator = Callable[[Policy, int], dict[str, float]]
"""`evaluator(policy, training_seed) -> metrics`, with the headline number under `"score"`."""


def make_evaluator(
    info: DatasetInfo,
    normalizer: Normalizer,
    *,
    episodes: int,
    samples: int,
    task: Any | None = None,
) -> Evaluator | None:
    """The evaluator of a run, or None when there is nothing to evaluate in (`episodes == 0`, or no environment).

    Args:
        info: the run's dataset info.
        normalizer: the observation statistics the policy was trained with.
        episodes: Gymnasium episodes per evaluation.
        samples: policy samples per evaluation on a built-in task.
        task: the built-in task of the dataset, if it is one (`OfflineDataset.task`); found from `info.name` when
            not given.
    """
    if episodes == 0:
        return None
    if task is None and info.env_id is None:
        task = getattr(load_named(info.name), "task", None)
    if task is not None:

        def score_task(policy: Policy, seed: int) -> dict[str, float]:
            key = jax.random.fold_in(jax.random.key(seed), _EVAL_SEED_BASE)
            return dict(task.evaluate(policy, key=key, num_samples=samples))

        return score_task
    if info.env_id is None:
        return None
    from rl.envs import evaluate

    def score_env(policy: Policy, seed: int) -> dict[str, float]:
        result = evaluate(
            policy,
            info.env_id,
            num_episodes=episodes,
            seed=_EVAL_SEED_BASE + _EVAL_SEED_STRIDE * seed,
            normalizer=normalizer,
            ref_min_score=info.ref_min_score,
            ref_max_score=info.ref_max_score,
        )
        out = {"return_mean": result.mean, "return_std": result.std}
        if result.normalized_mean is not None:
            out["normalized_mean"] = result.normalized_mean
            out["normalized_std"] = result.normalized_std
        out["score"] = out.get("normalized_mean", result.mean)
        return out

    return score_env


def nonfinite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics of an evaluation that are NaN or infinite (a policy acting with non-finite actions)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}

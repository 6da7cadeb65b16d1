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
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from rl.data import Normalizer, OfflineDataset, load_named

from .config import write_json_atomic

__all__ = [
    "DATASET_FILE",
    "NORMALIZER_FILE",
    "DatasetInfo",
    "Evaluation",
    "Evaluator",
    "Policy",
    "episode_metrics",
    "make_evaluator",
]

DATASET_FILE = "dataset.json"
NORMALIZER_FILE = "normalizer.json"
# Seeds of evaluation episodes: 1_000_000 + 1_000 * training seed (+ episode index), fixed over a run so that
# successive evaluations of one seed start from the same states and a learning curve is not evaluation noise.
_EVAL_SEED_BASE = 1_000_000
_EVAL_SEED_STRIDE = 1_000
# Synchronous environments of an evaluation (fewer when it has fewer episodes).
_EVAL_ENVS = 10


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
    # sha256 of the transitions the run trained on (`rl.train.summary.dataset_fingerprint`); None in older runs
    fingerprint: str | None = None

    @classmethod
    def of(cls, name: str, dataset: OfflineDataset, *, fingerprint: str | None = None) -> DatasetInfo:
        """The info of a loaded dataset."""
        return cls(
            name=name,
            dataset_id=dataset.dataset_id,
            env_id=dataset.env_id,
            ref_min_score=dataset.ref_min_score,
            ref_max_score=dataset.ref_max_score,
            obs_dim=dataset.obs_dim,
            act_dim=dataset.act_dim,
            fingerprint=fingerprint,
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


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of one seed: its metrics and, in Gymnasium, every episode's return."""

    # the metrics, with the headline number under "score"
    metrics: dict[str, float]
    # raw return of each episode, in episode order (None on a built-in task)
    returns: np.ndarray | None = None
    # normalised return of each episode (None without reference scores)
    normalized: np.ndarray | None = None

    @property
    def episodes(self) -> int | None:
        """Episodes played (None on a built-in task)."""
        return None if self.returns is None else len(self.returns)

    def head(self, n: int) -> Evaluation:
        """The evaluation of the first `n` episodes (what an evaluation of `n` episodes plays, with the same seeds)."""
        if self.returns is None or n >= len(self.returns):
            return self
        normalized = None if self.normalized is None else self.normalized[:n]
        return Evaluation(episode_metrics(self.returns[:n], normalized), self.returns[:n], normalized)


def episode_metrics(returns: np.ndarray, normalized: np.ndarray | None) -> dict[str, float]:
    """Mean and std (ddof 0) of per-episode returns and normalised returns; `"score"` is the normalised mean if any."""
    out = {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns))}
    if normalized is not None:
        out["normalized_mean"] = float(np.mean(normalized))
        out["normalized_std"] = float(np.std(normalized))
    out["score"] = out.get("normalized_mean", out["return_mean"])
    return out


class Evaluator:
    """Scores one seed's policy: `evaluator(policy, seed) -> metrics`, `evaluator.evaluate(...) -> Evaluation`.

    In Gymnasium, episode `k` of training seed `s` starts from `reset(seed=1_000_000 + 1_000 * s + k)` and the episodes
    run in `min(episodes, 10)` synchronous environments whatever their number, so an evaluation of more episodes
    (the final one) plays the periodic evaluation's episodes first, with the same actions. On a built-in task the
    policy is sampled with a key fixed per seed.
    """

    def __init__(self, score: Callable[[Policy, int, int | None], Evaluation], episodes: int | None):
        self._score = score
        # episodes of a periodic evaluation (None on a built-in task)
        self.episodes = episodes

    def evaluate(self, policy: Policy, seed: int, *, episodes: int | None = None) -> Evaluation:
        """Evaluate `policy` of training seed `seed` on `episodes` episodes (default the periodic number)."""
        return self._score(policy, seed, episodes)

    def __call__(self, policy: Policy, seed: int) -> dict[str, float]:
        return self._score(policy, seed, None).metrics


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
        episodes: Gymnasium episodes per (periodic) evaluation.
        samples: policy samples per evaluation on a built-in task.
        task: the built-in task of the dataset, if it is one (`OfflineDataset.task`); found from `info.name` when
            not given.
    """
    if episodes == 0:
        return None
    if task is None and info.env_id is None:
        task = getattr(load_named(info.name), "task", None)
    if task is not None:

        def score_task(policy: Policy, seed: int, _: int | None) -> Evaluation:
            key = jax.random.fold_in(jax.random.key(seed), _EVAL_SEED_BASE)
            return Evaluation(dict(task.evaluate(policy, key=key, num_samples=samples)))

        return Evaluator(score_task, None)
    if info.env_id is None:
        return None
    from rl.envs import evaluate

    env_id = info.env_id

    def score_env(policy: Policy, seed: int, count: int | None) -> Evaluation:
        result = evaluate(
            policy,
            env_id,
            num_episodes=episodes if count is None else count,
            seed=_EVAL_SEED_BASE + _EVAL_SEED_STRIDE * seed,
            normalizer=normalizer,
            ref_min_score=info.ref_min_score,
            ref_max_score=info.ref_max_score,
            num_envs=min(episodes, _EVAL_ENVS),  # the periodic batch: the same actions in a longer evaluation
        )
        returns = np.asarray(result.returns, dtype=np.float64)
        normalized = None if result.normalized is None else np.asarray(result.normalized, dtype=np.float64)
        return Evaluation(episode_metrics(returns, normalized), returns, normalized)

    return Evaluator(score_env, episodes)


def nonfinite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics of an evaluation that are NaN or infinite (a policy acting with non-finite actions)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}

"""`OfflineDataset`: the transitions of a dataset on the device, with what a run needs to know about them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from rl.data.normalizer import DataConfig, Normalizer, iql_reward_scale
from rl.data.transitions import Transitions
from rl.envs import normalized_score

__all__ = ["CorruptDatasetError", "DatasetNotFoundError", "OfflineDataset", "Task"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither on this machine nor downloadable now."""


class CorruptDatasetError(ValueError):
    """A dataset's files exist but cannot be read as a Minari dataset (truncated, overwritten, malformed)."""


@runtime_checkable
class Task(Protocol):
    """A built-in task (see `rl.data.tasks`): it makes its own dataset and scores a policy itself."""

    @property
    def dataset_id(self) -> str:
        """The id under which the task's dataset is loaded (e.g. `"builtin/bandit2d-v0"`)."""
        ...

    def make_dataset(self) -> OfflineDataset:
        """The task's offline dataset, with `task` set to this task."""
        ...

    def evaluate(
        self,
        policy: Callable[[PRNGKeyArray, Float[Array, "n obs_dim"]], Float[Array, "n act_dim"]],
        *,
        key: PRNGKeyArray,
        num_samples: int,
    ) -> dict[str, float]:
        """Score `policy(key, normalised obs) -> actions`; the dict has a `"score"` entry (higher is better)."""
        ...


@dataclass(frozen=True)
class OfflineDataset:
    """A dataset loaded onto the device, with its statistics and references."""

    # all transitions of the dataset, in episode order
    transitions: Transitions
    # mean of `transitions.obs` over the dataset, [obs_dim]
    obs_mean: Float[Array, " obs_dim"]
    # std of `transitions.obs`, floored at OBS_STD_FLOOR, [obs_dim]
    obs_std: Float[Array, " obs_dim"]
    # Gymnasium id of the environment, e.g. "HalfCheetah-v5" (None if the dataset has no env_spec)
    env_id: str | None
    # return that normalises to 0, or None
    ref_min_score: float | None
    # return that normalises to 100, or None
    ref_max_score: float | None
    # Minari dataset id stored in the dataset's metadata (or the built-in task's id)
    dataset_id: str
    # directory holding the dataset's Minari files ("" for a built-in task)
    data_path: str
    # undiscounted return of each episode, in order, [num_episodes]
    episode_returns: np.ndarray
    # number of transitions of each episode, [num_episodes]
    episode_lengths: np.ndarray
    # the `rl.collect` recipe recorded in the metadata (empty for datasets made elsewhere)
    recipe: dict[str, Any] = field(default_factory=dict)
    # the built-in task that made the dataset and scores policies on it, or None for a Minari dataset
    task: Task | None = None

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return int(self.transitions.obs.shape[1])

    @property
    def act_dim(self) -> int:
        """Action size."""
        return int(self.transitions.action.shape[1])

    def __len__(self) -> int:
        return len(self.transitions)

    @property
    def has_ref_scores(self) -> bool:
        """Whether returns on this dataset's environment can be normalised (D4RL-style)."""
        return self.ref_min_score is not None and self.ref_max_score is not None

    def normalized_score(self, raw_return: Any) -> Any:
        """`rl.envs.normalized_score` with this dataset's references (error if it has none)."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ValueError(f"Dataset {self.dataset_id} has no reference scores to normalise with.")
        return normalized_score(raw_return, self.ref_min_score, self.ref_max_score)

    def reward_mode(self, config: DataConfig | None = None) -> str:
        """The reward transform `config` asks for on this dataset, with `"auto"` resolved.

        `"auto"` is `"iql"` for a dataset of a Gymnasium environment with reference scores and `"none"`
        for a built-in task or any other dataset.
        """
        config = DataConfig() if config is None else config
        if config.reward != "auto":
            return config.reward
        gymnasium_with_refs = self.task is None and self.env_id is not None and self.has_ref_scores
        return "iql" if gymnasium_with_refs else "none"

    def normalizer(self, config: DataConfig | None = None) -> Normalizer:
        """The observation statistics and the reward transform of `config`, for this dataset.

        Args:
            config: the run's data options; default `DataConfig()` (reward `"auto"`).

        Returns:
            A `Normalizer` with this dataset's `obs_mean`, `obs_std` and the resolved reward transform.
        """
        config = DataConfig() if config is None else config
        if not isinstance(config, DataConfig):
            raise TypeError(f"config must be an rl.data.DataConfig, got {type(config).__name__}.")
        mode = self.reward_mode(config)
        if mode == "iql":
            scale, bias = iql_reward_scale(self.episode_returns, name=f"dataset {self.dataset_id}"), 0.0
        elif mode == "manual":
            scale, bias = config.reward_scale, config.reward_bias
        else:
            scale, bias = 1.0, 0.0
        return Normalizer(self.obs_mean, self.obs_std, scale, bias)

"""The single-optimum bandit (`bandit`, `builtin/bandit2d-v0`): eight behaviour modes, a reward that favours one.

Every episode is one step (`terminal = 1`): the agent sees a constant observation, picks a 2-D action in
`[-1, 1]^2` and gets a reward. The behaviour data is a mixture of `num_modes` narrow Gaussians placed evenly on a
circle; the reward is a smooth bump centred on one of them (`best_mode`), so it favours that mode, gives its
neighbours a little and the far side of the circle almost nothing. Behaviour cloning therefore puts about
`1 / num_modes` of its samples on the best mode, while a policy `pi ∝ pi_beta exp(beta Q)` that stays in the
support of the data concentrates on it: the classic test of energy guidance. A Gaussian policy does well here too
(one region is best), which is what the multimodal task (`rl.data.tasks.multimodal`) is for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from rl.data.dataset import OfflineDataset

from .base import CircleModes, Policy, one_step_dataset, policy_actions

__all__ = ["BANDIT_ID", "BanditTask", "evaluate_policy", "make_dataset", "score_actions"]

BANDIT_ID = "builtin/bandit2d-v0"
"""The id of the single-optimum bandit (`--dataset bandit` or this id)."""


@dataclass(frozen=True)
class BanditTask(CircleModes):
    """The single-optimum 2-D offline bandit: behaviour modes, reward and dataset size."""

    # number of Gaussian behaviour modes, evenly spaced on a circle
    num_modes: int = 8
    # radius of that circle (the modes stay well inside [-1, 1]^2)
    radius: float = 0.6
    # standard deviation of each behaviour mode (per coordinate)
    mode_std: float = 0.08
    # index of the mode the reward favours (mode k sits at angle 2 pi k / num_modes)
    best_mode: int = 0
    # width of the reward bump around the best mode: r(a) = reward_scale * exp(-|a - m_best|^2 / (2 width^2))
    reward_width: float = 0.35
    # height of the reward bump (the reward lies in [0, reward_scale])
    reward_scale: float = 1.0
    # number of transitions in the dataset (behaviour samples, equal weight per mode in expectation)
    num_transitions: int = 10_000
    # size of the (constant) observation the agents get as context
    obs_dim: int = 2
    # seed of the behaviour samples
    seed: int = 0

    def __post_init__(self) -> None:
        self.check_circle()
        if not 0 <= self.best_mode < self.num_modes:
            raise ValueError(f"best_mode must be in [0, {self.num_modes - 1}], got {self.best_mode}.")

    @property
    def dataset_id(self) -> str:
        """The task's id, `BANDIT_ID`."""
        return BANDIT_ID

    def reward(self, actions: Float[Array, "n 2"]) -> Float[Array, " n"]:
        """The reward of each action: a Gaussian bump of height `reward_scale` on the best mode."""
        best = self.mode_centers()[self.best_mode]
        sq = jnp.sum((actions - best[None, :]) ** 2, axis=-1)
        return self.reward_scale * jnp.exp(-sq / (2.0 * self.reward_width**2))

    def make_dataset(self) -> OfflineDataset:
        """The behaviour data as an `OfflineDataset` (see `make_dataset`)."""
        return make_dataset(self)

    def score_actions(self, actions: ArrayLike) -> dict[str, float]:
        """`score_actions(self, actions)`: the mean reward and the share of actions on the best mode."""
        return score_actions(self, actions)

    def evaluate(self, policy: Policy, *, key: PRNGKeyArray, num_samples: int = 1024) -> dict[str, float]:
        """`score_actions` of `num_samples` actions of the policy, with `"score"` = the mean reward.

        Returns:
            `{"score", "mean_reward", "best_mode_fraction"}`.
        """
        out = evaluate_policy(policy, self, key=key, num_samples=num_samples)
        return {"score": out["mean_reward"], **out}


def make_dataset(task: BanditTask | None = None) -> OfflineDataset:
    """The bandit's behaviour data as an `OfflineDataset` (one-step episodes, `terminal = 1`).

    The observation statistics are `mean = 0`, `std = 1`, so normalisation leaves the constant observation as is.

    Args:
        task: the task; default `BanditTask()`.

    Returns:
        The dataset, with `dataset_id = BANDIT_ID`, `task = task`, no environment and no reference scores.
    """
    task = BanditTask() if task is None else task
    if not isinstance(task, BanditTask):
        raise TypeError(f"task must be a BanditTask, got {type(task).__name__}.")
    actions, rewards, obs = _behaviour_data(task)
    return one_step_dataset(task, actions, rewards, obs, recipe={"builtin": "bandit", **asdict(task)})


@eqx.filter_jit
def _behaviour_data(task: BanditTask) -> tuple[Float[Array, "n 2"], Float[Array, " n"], Float[Array, "n obs_dim"]]:
    actions = task.sample_behaviour(jax.random.key(task.seed), task.num_transitions)
    return actions, task.reward(actions), task.observations(task.num_transitions)


@eqx.filter_jit
def _score(task: BanditTask, actions: Float[Array, "n 2"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    centers = task.mode_centers()
    sq = jnp.sum((actions[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    nearest = jnp.argmin(sq, axis=-1)
    # a non-finite action is on no mode (argmin of NaN distances would name one); its NaN reward shows in the mean
    on_best = (nearest == task.best_mode) & jnp.all(jnp.isfinite(actions), axis=-1)
    return jnp.mean(task.reward(actions)), jnp.mean(on_best.astype(jnp.float32))


def score_actions(task: BanditTask, actions: ArrayLike) -> dict[str, float]:
    """Mean reward and fraction of actions whose nearest behaviour mode is the best one.

    Args:
        task: the bandit.
        actions: `[n, 2]` actions, any array-like (e.g. samples of a policy, or the dataset's actions).

    Returns:
        `{"mean_reward": ..., "best_mode_fraction": ...}`; behaviour cloning scores about `1 / num_modes` on the
        latter.
    """
    actions = jnp.asarray(actions, jnp.float32)
    if actions.ndim != 2 or actions.shape[1] != 2 or actions.shape[0] < 1:
        raise ValueError(f"actions must have shape [n, 2] with n >= 1, got {actions.shape}.")
    mean_reward, fraction = _score(task, actions)
    return {"mean_reward": float(mean_reward), "best_mode_fraction": float(fraction)}


def evaluate_policy(
    policy: Policy, task: BanditTask, *, key: PRNGKeyArray, num_samples: int = 1024
) -> dict[str, float]:
    """Score a policy on the bandit: draw `num_samples` actions for the constant observation.

    Args:
        policy: `policy(key, obs[n, obs_dim]) -> actions[n, 2]` (observations are already normalised; for the
            bandit that changes nothing). It is jitted: pass an `equinox.Module` holding the parameters rather than a
            fresh closure, so that new parameters do not recompile.
        task: the bandit.
        key: PRNG key of the policy's samples.
        num_samples: number of actions drawn.

    Returns:
        `score_actions` of the drawn actions.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    actions = policy_actions(policy, key, task.observations(num_samples))
    return score_actions(task, actions)

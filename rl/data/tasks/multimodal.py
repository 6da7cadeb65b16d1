"""The multimodal bandit (`multimodal`, `builtin/bandit-multimodal-v0`): several separate, equally good regions.

The behaviour data is the single-optimum bandit's (`rl.data.tasks.bandit`, same seed, same actions): `num_modes`
narrow Gaussian modes evenly spaced on a circle, one-step episodes with a constant observation. The reward is a
narrow bump of the same height on each of several *non-adjacent* modes (`good_modes`) and almost nothing elsewhere:

    r(a) = reward_scale * max_{k in good_modes} exp(-|a - m_k|^2 / (2 reward_width^2))

This is the case flow policies exist for. The target of energy-guided policy extraction,
`pi(a) ∝ pi_beta(a) exp(beta Q(a))`, keeps every good mode with an equal share (the behaviour data weighs the
modes equally and the reward treats them alike), while a Gaussian fitted to the same weighted actions (IQL's
advantage-weighted regression) puts its mean near their average, between the modes, where the reward is ~0.

Scoring (`score_actions`): each action is assigned to its nearest behaviour mode (a non-finite action to none);
`good_mode_fraction` is the share of actions on a rewarded mode, and `evenness` is how evenly those actions are
spread over the rewarded modes: the smallest share divided by the largest, `min_k n_k / max_k n_k` over the good
modes `k` (1 = an even split, 0 = a good mode left empty, or no action on any good mode). Finite samples read a
little below 1 for an even policy: with 2048 actions over three good modes the count on each varies by ~3%, so
an even policy scores about 0.9.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from rl.data.dataset import OfflineDataset

from .base import CircleModes, Policy, one_step_dataset, policy_actions

__all__ = ["MULTIMODAL_ID", "MultimodalBanditTask"]

MULTIMODAL_ID = "builtin/bandit-multimodal-v0"
"""The id of the multimodal bandit (`--dataset multimodal` or this id)."""


@dataclass(frozen=True)
class MultimodalBanditTask(CircleModes):
    """The 2-D offline bandit with several equally rewarded, separate behaviour modes."""

    # number of Gaussian behaviour modes, evenly spaced on a circle
    num_modes: int = 8
    # radius of that circle (the modes stay well inside [-1, 1]^2)
    radius: float = 0.6
    # standard deviation of each behaviour mode (per coordinate)
    mode_std: float = 0.08
    # indices of the rewarded modes (mode k sits at angle 2 pi k / num_modes); all get a bump of the same height
    good_modes: tuple[int, ...] = (0, 3, 5)
    # width of each reward bump: with 0.2 a neighbour of a good mode gets 7% of the peak, the circle's centre 1%
    reward_width: float = 0.2
    # height of the reward bumps (the reward lies in [0, reward_scale])
    reward_scale: float = 1.0
    # number of transitions in the dataset (behaviour samples, equal weight per mode in expectation)
    num_transitions: int = 10_000
    # size of the (constant) observation the agents get as context
    obs_dim: int = 2
    # seed of the behaviour samples
    seed: int = 0

    def __post_init__(self) -> None:
        self.check_circle()
        good = self.good_modes
        if (
            not isinstance(good, tuple)
            or not good
            or len(set(good)) != len(good)
            or not all(isinstance(k, int) and 0 <= k < self.num_modes for k in good)
        ):
            raise ValueError(
                f"good_modes must be a non-empty tuple of distinct mode indices in [0, {self.num_modes - 1}], "
                f"got {good!r}."
            )

    @property
    def dataset_id(self) -> str:
        """The task's id, `MULTIMODAL_ID`."""
        return MULTIMODAL_ID

    def reward(self, actions: Float[Array, "n 2"]) -> Float[Array, " n"]:
        """The reward of each action: the highest of the equal Gaussian bumps on the good modes."""
        good = self.mode_centers()[jnp.asarray(self.good_modes)]
        sq = jnp.sum((actions[:, None, :] - good[None, :, :]) ** 2, axis=-1)
        return self.reward_scale * jnp.exp(-jnp.min(sq, axis=-1) / (2.0 * self.reward_width**2))

    def make_dataset(self) -> OfflineDataset:
        """The behaviour data as an `OfflineDataset` (one-step episodes; `task` is this task)."""
        actions, rewards, obs = _behaviour_data(self)
        return one_step_dataset(self, actions, rewards, obs, recipe={"builtin": "bandit-multimodal", **asdict(self)})

    def score_actions(self, actions: ArrayLike) -> dict[str, float]:
        """Mean reward, share of actions on a good mode, and how evenly they are spread over the good modes.

        Args:
            actions: `[n, 2]` actions, any array-like (e.g. samples of a policy, or the dataset's actions).

        Returns:
            `{"mean_reward", "good_mode_fraction", "evenness"}` (see the module docstring). A non-finite action is on
            no mode, and its NaN reward shows in the mean.
        """
        actions = jnp.asarray(actions, jnp.float32)
        if actions.ndim != 2 or actions.shape[1] != 2 or actions.shape[0] < 1:
            raise ValueError(f"actions must have shape [n, 2] with n >= 1, got {actions.shape}.")
        mean_reward, fraction, evenness = _score(self, actions)
        return {"mean_reward": float(mean_reward), "good_mode_fraction": float(fraction), "evenness": float(evenness)}

    def good_mode_counts(self, actions: ArrayLike) -> Array:
        """How many of the `[n, 2]` actions lie nearest each good mode, in the order of `good_modes`."""
        return _good_counts(self, jnp.asarray(actions, jnp.float32))

    def evaluate(self, policy: Policy, *, key: PRNGKeyArray, num_samples: int = 1024) -> dict[str, float]:
        """Score `num_samples` actions of `policy(key, obs)` at the constant observation.

        Returns:
            `{"score", "mean_reward", "good_mode_fraction", "evenness"}`, with `"score"` = the mean reward.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        out = self.score_actions(policy_actions(policy, key, self.observations(num_samples)))
        return {"score": out["mean_reward"], **out}


@eqx.filter_jit
def _behaviour_data(
    task: MultimodalBanditTask,
) -> tuple[Float[Array, "n 2"], Float[Array, " n"], Float[Array, "n obs_dim"]]:
    actions = task.sample_behaviour(jax.random.key(task.seed), task.num_transitions)
    return actions, task.reward(actions), task.observations(task.num_transitions)


def _good_counts(task: MultimodalBanditTask, actions: Float[Array, "n 2"]) -> Float[Array, " good"]:
    centers = task.mode_centers()
    nearest = jnp.argmin(jnp.sum((actions[:, None, :] - centers[None, :, :]) ** 2, axis=-1), axis=-1)
    # a non-finite action is on no mode (argmin of NaN distances would name one)
    finite = jnp.all(jnp.isfinite(actions), axis=-1)
    on = (nearest[:, None] == jnp.asarray(task.good_modes)[None, :]) & finite[:, None]
    return jnp.sum(on.astype(jnp.float32), axis=0)


@eqx.filter_jit
def _score(
    task: MultimodalBanditTask, actions: Float[Array, "n 2"]
) -> tuple[Float[Array, ""], Float[Array, ""], Float[Array, ""]]:
    counts = _good_counts(task, actions)
    fraction = jnp.sum(counts) / actions.shape[0]
    # min / max share over the good modes; 0 when no action is on any of them
    evenness = jnp.where(jnp.max(counts) > 0, jnp.min(counts) / jnp.maximum(jnp.max(counts), 1.0), 0.0)
    return jnp.mean(task.reward(actions)), fraction, evenness

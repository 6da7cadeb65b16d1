"""What the built-in bandits share: the policy type, modes on a circle, drawing a policy's actions, and the
one-step `OfflineDataset` they all make."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from rl.data.dataset import OfflineDataset, Task
from rl.data.transitions import ACTION_CLIP, Transitions

__all__ = ["CircleModes", "Policy", "circle_centers", "one_step_dataset", "policy_actions", "sample_circle_mixture"]

Policy = Callable[[PRNGKeyArray, Float[Array, "n obs_dim"]], Float[Array, "n act_dim"]]
"""`policy(key, obs[n, obs_dim]) -> actions[n, act_dim]` (observations already normalised)."""


def circle_centers(num_modes: int, radius: float) -> Float[Array, "modes 2"]:
    """`num_modes` points evenly spaced on a circle of `radius`; point `k` is at angle `2 pi k / num_modes`."""
    angles = 2.0 * math.pi * jnp.arange(num_modes) / num_modes
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def sample_circle_mixture(
    key: PRNGKeyArray, centers: Float[Array, "modes 2"], std: float, n: int
) -> Float[Array, "n 2"]:
    """`n` draws of an equal-weight mixture of isotropic Gaussians at `centers`, clipped like dataset actions."""
    k_mode, k_noise = jax.random.split(key)
    modes = jax.random.randint(k_mode, (n,), 0, centers.shape[0])
    noise = std * jax.random.normal(k_noise, (n, 2))
    return jnp.clip(centers[modes] + noise, -ACTION_CLIP, ACTION_CLIP)


def one_step_dataset(
    task: Task,
    actions: Float[Array, "n act_dim"],
    rewards: Float[Array, " n"],
    obs: Float[Array, "n obs_dim"],
    recipe: dict[str, Any],
) -> OfflineDataset:
    """A dataset of one-step episodes (`terminal = 1`, `next_obs = obs`) that carries its `task`.

    The observation statistics are `mean = 0`, `std = 1`, so normalisation leaves the (constant) observation as is.
    """
    n, obs_dim = obs.shape
    transitions = Transitions(
        obs=obs,
        action=actions,
        reward=rewards,
        next_obs=obs,
        terminal=jnp.ones((n,), jnp.float32),
    )
    return OfflineDataset(
        transitions=transitions,
        obs_mean=jnp.zeros((obs_dim,), jnp.float32),
        obs_std=jnp.ones((obs_dim,), jnp.float32),
        env_id=None,
        ref_min_score=None,
        ref_max_score=None,
        dataset_id=task.dataset_id,
        data_path="",
        episode_returns=np.asarray(rewards, np.float64),
        episode_lengths=np.ones((n,), np.int64),
        recipe=recipe,
        task=task,
    )


def policy_actions(policy: Policy, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
    """`policy(key, obs)`, jitted: pass an `equinox.Module` holding the parameters rather than a fresh closure, so
    that new parameters do not recompile."""
    return _policy_actions(policy, key, obs)


@eqx.filter_jit
def _policy_actions(policy: Policy, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
    return policy(key, obs)


class CircleModes:
    """What the bandit tasks share: behaviour modes on a circle around a constant observation.

    A mixin for frozen dataclasses with the fields `num_modes`, `radius`, `mode_std`, `reward_width`,
    `reward_scale`, `num_transitions` and `obs_dim`; each task calls `check_circle()` from its `__post_init__`.
    """

    num_modes: int
    radius: float
    mode_std: float
    reward_width: float
    reward_scale: float
    num_transitions: int
    obs_dim: int

    def check_circle(self) -> None:
        """Validate the shared fields (one-line errors naming the field and the value)."""
        if self.num_modes < 2:
            raise ValueError(f"num_modes must be >= 2, got {self.num_modes}.")
        if not (0 < self.radius and self.radius + 3 * self.mode_std < 1):
            raise ValueError(
                f"the modes must lie inside [-1, 1]^2: need 0 < radius and radius + 3 * mode_std < 1, got "
                f"radius={self.radius}, mode_std={self.mode_std}."
            )
        if self.mode_std <= 0 or self.reward_width <= 0 or self.reward_scale <= 0:
            raise ValueError("mode_std, reward_width and reward_scale must be > 0.")
        if self.num_transitions < 1 or self.obs_dim < 1:
            raise ValueError(
                f"num_transitions and obs_dim must be >= 1, got {self.num_transitions} and {self.obs_dim}."
            )

    @property
    def act_dim(self) -> int:
        """Action size (always 2)."""
        return 2

    def mode_centers(self) -> Float[Array, "modes 2"]:
        """Centres of the behaviour modes, `[num_modes, 2]`; mode `k` is at angle `2 pi k / num_modes`."""
        return circle_centers(self.num_modes, self.radius)

    def observations(self, n: int) -> Float[Array, "n obs_dim"]:
        """The constant observation, repeated `n` times."""
        return jnp.ones((n, self.obs_dim), jnp.float32)

    def sample_behaviour(self, key: PRNGKeyArray, n: int) -> Float[Array, "n 2"]:
        """`n` actions from the behaviour mixture (uniform over modes), clipped like dataset actions."""
        return sample_circle_mixture(key, self.mode_centers(), self.mode_std, n)

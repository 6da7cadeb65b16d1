"""`Transitions`: a batch (or a whole dataset) of environment steps, as one pytree of float32 device arrays."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float

__all__ = ["ACTION_CLIP", "Transitions"]

# Data actions are clipped to ±ACTION_CLIP (keeps atanh of a tanh-squashed action finite).
ACTION_CLIP = 1.0 - 1e-5


class Transitions(eqx.Module):
    """A batch (or a whole dataset) of transitions, float32 arrays on the device."""

    # observation s, [n, obs_dim]
    obs: Float[Array, "n obs_dim"]
    # action a taken in s, clipped to ±ACTION_CLIP, [n, act_dim]
    action: Float[Array, "n act_dim"]
    # reward r, [n]
    reward: Float[Array, " n"]
    # observation s' after the step (the true last observation when an episode is truncated), [n, obs_dim]
    next_obs: Float[Array, "n obs_dim"]
    # 1.0 where s' is a true termination (no bootstrap), 0.0 otherwise (including truncations), [n]
    terminal: Float[Array, " n"]

    def __len__(self) -> int:
        return int(self.reward.shape[0])

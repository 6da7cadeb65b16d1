"""Evaluate a policy in Gymnasium environments: raw and D4RL-normalised returns.

Episodes run in a `gymnasium.vector.SyncVectorEnv` and the actions of all environments
come from one batched, jitted call of the policy. Episode `k` (0-based) always starts from
`env.reset(seed=seed + k)`, whatever the number of environments, so a deterministic policy
gets the same returns with `num_envs=1` and `num_envs=10` (up to the float32 rounding of the
batched policy, which can differ with the batch size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from rl.data import normalized_score

__all__ = ["EvalResult", "evaluate", "make_env"]

ActFn = Callable[[PRNGKeyArray, Float[Array, "n obs_dim"]], Float[Array, "n act_dim"]]


@dataclass(frozen=True)
class EvalResult:
    """Returns of the evaluation episodes, raw and normalised."""

    # undiscounted return of each episode, in episode order, [num_episodes]
    returns: np.ndarray
    # number of steps of each episode, [num_episodes]
    lengths: np.ndarray
    # 100 * (return - ref_min) / (ref_max - ref_min) per episode, or None without references
    normalized: np.ndarray | None

    @property
    def mean(self) -> float:
        """Mean raw return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Standard deviation of the raw returns (over episodes, ddof=0)."""
        return float(np.std(self.returns))

    @property
    def normalized_mean(self) -> float | None:
        """Mean normalised return, or None without reference scores."""
        return None if self.normalized is None else float(np.mean(self.normalized))

    @property
    def normalized_std(self) -> float | None:
        """Standard deviation of the normalised returns, or None without reference scores."""
        return None if self.normalized is None else float(np.std(self.normalized))

    def __str__(self) -> str:
        text = f"return {self.mean:.1f} ± {self.std:.1f} over {len(self.returns)} episodes"
        if self.normalized is not None:
            text += f", normalised {self.normalized_mean:.1f} ± {self.normalized_std:.1f}"
        return text


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """`gym.make(env_id)` with a clear error for an unknown or uninstalled environment.

    Args:
        env_id: Gymnasium id, e.g. `"HalfCheetah-v5"`.
        **kwargs: passed on to `gym.make`.

    Returns:
        The environment.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a Gymnasium id string such as 'HalfCheetah-v5', got {env_id!r}.")
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(
            f"Unknown Gymnasium environment {env_id!r} ({e}). Expected a registered id such as "
            "'HalfCheetah-v5', 'Hopper-v5' or 'Walker2d-v5' (MuJoCo envs need `pip install gymnasium[mujoco]`)."
        ) from e
    return gym.make(env_id, **kwargs)


@eqx.filter_jit
def _act(
    act_fn: ActFn,
    key: PRNGKeyArray,
    obs: Float[Array, "n obs_dim"],
    obs_mean: Float[Array, " obs_dim"],
    obs_std: Float[Array, " obs_dim"],
) -> Float[Array, "n act_dim"]:
    norm_obs = (obs - obs_mean[None, :]) / obs_std[None, :]
    return act_fn(key, norm_obs)


def _check_stats(name: str, value: Any, obs_dim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != (obs_dim,):
        raise ValueError(f"{name} must have shape ({obs_dim},) for this environment, got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite.")
    return arr


def evaluate(
    act_fn: ActFn,
    env_id: str,
    *,
    num_episodes: int = 10,
    seed: int = 0,
    obs_mean: Any = None,
    obs_std: Any = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    num_envs: int | None = None,
    jit: bool = True,
) -> EvalResult:
    """Run a policy for `num_episodes` episodes and return its raw and normalised returns.

    Args:
        act_fn: `act_fn(key, obs) -> actions`, obs `[n, obs_dim]` float32, actions `[n, act_dim]`.
            It receives normalised observations `(obs - obs_mean) / obs_std` when these are
            given. It is jitted once per distinct function: pass an `equinox.Module` (a pytree
            holding the parameters) rather than a fresh closure to avoid recompiling when the
            parameters change between calls. Actions are clipped to the action space.
        env_id: Gymnasium id, e.g. `"HalfCheetah-v5"`.
        num_episodes: number of episodes; episode `k` starts from `reset(seed=seed + k)`.
        seed: seed of the first episode and of the policy's PRNG key.
        obs_mean: `[obs_dim]` observation mean used to normalise, or None for none.
        obs_std: `[obs_dim]` observation scale used to normalise (with `obs_mean`).
        ref_min_score: return that maps to 0 (D4RL: random policy), or None.
        ref_max_score: return that maps to 100 (D4RL: expert policy), or None.
        num_envs: number of synchronous environments; default `min(num_episodes, 10)`.
        jit: False to call `act_fn` eagerly (e.g. a numpy policy); it then gets numpy inputs.

    Returns:
        An `EvalResult` with per-episode returns, lengths and (with references) normalised scores.
    """
    if not isinstance(num_episodes, int | np.integer) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive integer, got {num_episodes!r}.")
    if num_envs is None:
        num_envs = min(int(num_episodes), 10)
    if not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer or None, got {num_envs!r}.")
    if (ref_min_score is None) != (ref_max_score is None):
        raise ValueError(
            "Give both ref_min_score and ref_max_score or neither; got "
            f"ref_min_score={ref_min_score!r}, ref_max_score={ref_max_score!r}."
        )
    if (obs_mean is None) != (obs_std is None):
        raise ValueError("Give both obs_mean and obs_std or neither.")
    num_envs = min(int(num_envs), int(num_episodes))
    num_episodes = int(num_episodes)

    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    try:
        obs_space = envs.single_observation_space
        act_space = envs.single_action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"evaluate needs a flat Box observation space; {env_id} has {obs_space}.")
        if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
            raise ValueError(f"evaluate needs a flat Box action space; {env_id} has {act_space}.")
        obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
        if obs_mean is None:
            mean = np.zeros(obs_dim, np.float32)
            std = np.ones(obs_dim, np.float32)
        else:
            mean = _check_stats("obs_mean", obs_mean, obs_dim)
            std = _check_stats("obs_std", obs_std, obs_dim)
            if not np.all(std > 0):
                raise ValueError("obs_std must be > 0 everywhere.")
        if jit:
            mean_j, std_j = jnp.asarray(mean), jnp.asarray(std)

            def policy(k: PRNGKeyArray, o: np.ndarray) -> np.ndarray:
                return np.asarray(_act(act_fn, k, jnp.asarray(o, dtype=jnp.float32), mean_j, std_j))

        else:

            def policy(k: PRNGKeyArray, o: np.ndarray) -> np.ndarray:
                return np.asarray(act_fn(k, ((o - mean[None, :]) / std[None, :]).astype(np.float32)))

        returns, lengths = _run(envs, policy, num_episodes, seed, act_dim, act_space)
    finally:
        envs.close()
    normalized = None
    if ref_min_score is not None and ref_max_score is not None:
        normalized = normalized_score(returns, ref_min_score, ref_max_score)
    return EvalResult(returns=returns, lengths=lengths, normalized=normalized)


def _run(
    envs: gym.vector.SyncVectorEnv,
    policy: Callable[[PRNGKeyArray, np.ndarray], np.ndarray],
    num_episodes: int,
    seed: int,
    act_dim: int,
    act_space: gym.spaces.Box,
) -> tuple[np.ndarray, np.ndarray]:
    n = envs.num_envs
    episode = np.arange(n)  # episode index each env is running; -1 once it has nothing to do
    obs, _ = envs.reset(seed=[seed + int(k) for k in episode])
    ret = np.zeros(n)
    length = np.zeros(n, dtype=np.int64)
    returns = np.zeros(num_episodes)
    lengths = np.zeros(num_episodes, dtype=np.int64)
    next_episode, finished = n, 0
    key = jax.random.key(seed)
    low, high = act_space.low, act_space.high
    while finished < num_episodes:
        key, sub = jax.random.split(key)
        action = policy(sub, obs)
        if action.shape != (n, act_dim):
            raise ValueError(
                f"act_fn must return actions of shape [n, {act_dim}] for observations [n, obs_dim]; "
                f"got {action.shape} for n={n}."
            )
        if not np.all(np.isfinite(action)):
            raise ValueError("act_fn returned non-finite actions.")
        obs, reward, terminated, truncated, _ = envs.step(np.clip(action, low, high))
        ret += reward
        length += 1
        done = terminated | truncated
        if not done.any():
            continue
        seeds: list[int | None] = [None] * n
        for i in np.flatnonzero(done):
            if episode[i] >= 0:
                returns[episode[i]] = ret[i]
                lengths[episode[i]] = length[i]
                finished += 1
            if next_episode < num_episodes:
                episode[i] = next_episode
                seeds[i] = seed + next_episode
                next_episode += 1
            else:
                episode[i] = -1
            ret[i], length[i] = 0.0, 0
        obs, _ = envs.reset(seed=seeds, options={"reset_mask": done})
    return returns, lengths

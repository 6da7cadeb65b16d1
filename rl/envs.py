"""Environment knowledge in one place: ids, short names, reference scores, `make_env` and evaluation.

- `ENV_IDS` / `resolve_env_id`: the short names the command lines accept (`"hopper"` -> `"Hopper-v5"`);
- `env_short_name`: `"HalfCheetah-v5"` -> `"halfcheetah"`, the key of `REF_SCORES`;
- `REF_SCORES` / `ref_scores_for` / `normalized_score`: D4RL's normalised score, where a return equal to
  the random policy's scores 0 and one equal to the expert's scores 100;
- `make_env` and `check_box_spaces`: Gymnasium environments with clear errors;
- `evaluate` / `EvalResult`: a policy's returns over Gymnasium episodes, kept per episode.

Evaluation runs the episodes in a `gymnasium.vector.SyncVectorEnv` and gets the actions of all
environments from one batched, jitted call of the policy. Episode `k` (0-based) always starts from
`env.reset(seed=seed + k)`, whatever the number of environments, so a deterministic policy gets the
same returns with `num_envs=1` and `num_envs=10` (up to the float32 rounding of the batched policy,
which can differ with the batch size).

This module is the bottom layer of `rl`: it imports nothing else of `rl`. The observation normaliser
that `evaluate` applies is any object with `obs_mean`, `obs_std` and `obs(x)`, i.e. an
`rl.data.Normalizer`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

__all__ = [
    "ENV_IDS",
    "REF_SCORES",
    "EvalResult",
    "ObsNormalizer",
    "RefScores",
    "check_box_spaces",
    "env_short_name",
    "evaluate",
    "make_env",
    "normalized_score",
    "ref_scores_for",
    "resolve_env_id",
]

# Short names accepted by the command lines (`--env hopper`), and the Gymnasium environments they stand for.
ENV_IDS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}


class RefScores(NamedTuple):
    """Returns that normalise to 0 (`min_score`, random policy) and 100 (`max_score`, expert)."""

    min_score: float
    max_score: float


# D4RL's published references (random and expert returns, measured on the older MuJoCo v2
# environments with D4RL's own policies). Keyed by the short environment name.
REF_SCORES: dict[str, RefScores] = {
    "halfcheetah": RefScores(-280.178953, 12135.0),
    "hopper": RefScores(-20.272305, 3234.3),
    "walker2d": RefScores(1.629008, 4592.3),
}


def resolve_env_id(env: str) -> str:
    """Gymnasium id for a short name (`"hopper"` -> `"Hopper-v5"`) or a Gymnasium id itself.

    Args:
        env: a key of `ENV_IDS` or a registered Gymnasium id.

    Returns:
        The Gymnasium id.

    Raises:
        ValueError: `env` is neither.
    """
    if not isinstance(env, str):
        raise TypeError(f"env must be a string such as 'hopper' or 'Hopper-v5', got {env!r}.")
    if env.lower() in ENV_IDS:
        return ENV_IDS[env.lower()]
    try:
        gym.spec(env)
    except gym.error.Error:
        raise ValueError(
            f"Unknown environment {env!r}: expected one of {sorted(ENV_IDS)} or a Gymnasium id such as 'Hopper-v5'."
        ) from None
    return env


def env_short_name(env_id: str) -> str:
    """Short lower-case name of an environment: `"HalfCheetah-v5"` -> `"halfcheetah"`.

    Args:
        env_id: a Gymnasium id (`"Walker2d-v5"`) or already a short name (`"walker2d"`).

    Returns:
        The name without namespace and version, lower case.
    """
    name = env_id.split("/")[-1]
    if "-v" in name:
        name = name[: name.rindex("-v")]
    return name.lower()


def ref_scores_for(env: str) -> RefScores | None:
    """D4RL reference scores for an environment, or None if D4RL has none.

    Args:
        env: a Gymnasium id (`"Hopper-v5"`) or a short name (`"hopper"`).

    Returns:
        The `RefScores` of `REF_SCORES`, or None.
    """
    return REF_SCORES.get(env_short_name(env))


def normalized_score(raw_return: Any, ref_min: float, ref_max: float) -> Any:
    """D4RL-normalised score: `100 * (raw_return - ref_min) / (ref_max - ref_min)`.

    Args:
        raw_return: one return (float) or an array of returns.
        ref_min: the return that maps to 0 (random policy).
        ref_max: the return that maps to 100 (expert policy).

    Returns:
        A float for a scalar input, otherwise a float64 numpy array of the input's shape.
    """
    ref_min, ref_max = float(ref_min), float(ref_max)
    if not (np.isfinite(ref_min) and np.isfinite(ref_max)) or ref_max <= ref_min:
        raise ValueError(
            f"Reference scores must be finite with ref_max > ref_min; got ref_min={ref_min}, ref_max={ref_max}."
        )
    raw = np.asarray(raw_return, dtype=np.float64)
    score = 100.0 * (raw - ref_min) / (ref_max - ref_min)
    return float(score) if score.ndim == 0 else score


# MuJoCo (from 4.0) warns, at every compile, that the `settotalmass` attribute of Gymnasium's own half_cheetah.xml
# is deprecated: a note for Gymnasium's maintainers that would otherwise fill every halfcheetah log (one per
# environment of every evaluation). The compiled model is unchanged (the datasets made with MuJoCo 4 are bit-identical
# to those made with 3.x), so `make_env` drops that one message and lets every other warning through.
_QUIET_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def _mujoco_warning(message: str) -> None:
    if not any(m in message for m in _QUIET_MUJOCO_WARNINGS):
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def _quiet_known_mujoco_warnings() -> None:
    """Route MuJoCo's warnings through `_mujoco_warning`, unless the user installed a handler of their own."""
    try:
        import mujoco
    except ImportError:  # no MuJoCo: nothing to quiet
        return
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """`gym.make(env_id)` with a clear error for an unknown or uninstalled environment.

    MuJoCo's deprecation warning about Gymnasium's half_cheetah.xml (`settotalmass`) is dropped; other MuJoCo
    warnings still print.

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
    _quiet_known_mujoco_warnings()
    return gym.make(env_id, **kwargs)


def check_box_spaces(
    where: str, obs_space: gym.Space, act_space: gym.Space, *, unit_actions: bool = True
) -> tuple[int, int]:
    """Check that observations and actions are flat Boxes (and actions lie in `[-1, 1]`).

    Args:
        where: what the spaces belong to, for the message (an env id or a dataset path).
        obs_space: the observation space.
        act_space: the action space.
        unit_actions: also require the action bounds to be exactly `[-1, 1]`.

    Returns:
        `(obs_dim, act_dim)`.

    Raises:
        ValueError: naming the space that does not fit.
    """
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"rl needs a flat Box observation space; {where} has {obs_space}.")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(f"rl needs a flat Box action space; {where} has {act_space}.")
    if unit_actions and not (np.all(act_space.low == -1.0) and np.all(act_space.high == 1.0)):
        raise ValueError(
            f"rl needs actions in [-1, 1]; {where} has action bounds low={act_space.low}, high={act_space.high}."
        )
    return int(obs_space.shape[0]), int(act_space.shape[0])


# ----------------------------------------------------------------------------- evaluation

ActFn = Callable[[PRNGKeyArray, Float[Array, "n obs_dim"]], Float[Array, "n act_dim"]]


@runtime_checkable
class ObsNormalizer(Protocol):
    """What `evaluate` needs of an observation normaliser (an `rl.data.Normalizer` is one)."""

    obs_mean: ArrayLike
    obs_std: ArrayLike

    def obs(self, x: Any) -> Any:
        """Normalised observations of the same shape."""
        ...


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


@eqx.filter_jit
def _act(
    policy: ActFn, normalizer: ObsNormalizer | None, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]
) -> Float[Array, "n act_dim"]:
    return policy(key, obs if normalizer is None else normalizer.obs(obs))


def _check_normalizer(normalizer: Any, obs_dim: int) -> None:
    if not isinstance(normalizer, ObsNormalizer):
        raise TypeError(
            "normalizer must be an rl.data.Normalizer (obs_mean, obs_std, obs()) or None, "
            f"got {type(normalizer).__name__}."
        )
    for name in ("obs_mean", "obs_std"):
        arr = np.asarray(getattr(normalizer, name))
        if arr.shape != (obs_dim,):
            raise ValueError(f"normalizer.{name} must have shape ({obs_dim},) for this environment, got {arr.shape}.")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"normalizer.{name} must be finite.")
    if not np.all(np.asarray(normalizer.obs_std) > 0):
        raise ValueError("normalizer.obs_std must be > 0 everywhere.")


def evaluate(
    policy: ActFn,
    env_id: str,
    *,
    num_episodes: int = 10,
    seed: int = 0,
    normalizer: ObsNormalizer | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    num_envs: int | None = None,
    jit: bool = True,
) -> EvalResult:
    """Run a policy for `num_episodes` episodes and return its raw and normalised returns.

    Args:
        policy: `policy(key, obs) -> actions`, obs `[n, obs_dim]` float32, actions `[n, act_dim]`.
            It receives the observations normalised by `normalizer` when one is given. It is jitted
            once per distinct function: pass an `equinox.Module` (a pytree holding the parameters)
            rather than a fresh closure to avoid recompiling when the parameters change between
            calls. Actions are clipped to the action space.
        env_id: Gymnasium id, e.g. `"HalfCheetah-v5"`.
        num_episodes: number of episodes; episode `k` starts from `reset(seed=seed + k)`.
        seed: seed of the first episode and of the policy's PRNG key.
        normalizer: the observation statistics the policy was trained with (an
            `rl.data.Normalizer`; only its observation part is used), or None for raw observations.
        ref_min_score: return that maps to 0 (D4RL: random policy), or None.
        ref_max_score: return that maps to 100 (D4RL: expert policy), or None.
        num_envs: number of synchronous environments; default `min(num_episodes, 10)`.
        jit: False to call `policy` eagerly (e.g. a numpy policy); it then gets numpy inputs.

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
    num_envs = min(int(num_envs), int(num_episodes))
    num_episodes = int(num_episodes)

    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    try:
        act_space = envs.single_action_space
        obs_dim, act_dim = check_box_spaces(env_id, envs.single_observation_space, act_space, unit_actions=False)
        if normalizer is not None:
            _check_normalizer(normalizer, obs_dim)
        if jit:

            def act(k: PRNGKeyArray, o: np.ndarray) -> np.ndarray:
                return np.asarray(_act(policy, normalizer, k, jnp.asarray(o, dtype=jnp.float32)))

        else:

            def act(k: PRNGKeyArray, o: np.ndarray) -> np.ndarray:
                x = o if normalizer is None else normalizer.obs(o)
                return np.asarray(policy(k, np.asarray(x).astype(np.float32)))

        returns, lengths = _run(envs, act, num_episodes, seed, act_dim, act_space)
    finally:
        envs.close()
    normalized = None
    if ref_min_score is not None and ref_max_score is not None:
        normalized = normalized_score(returns, ref_min_score, ref_max_score)
    return EvalResult(returns=returns, lengths=lengths, normalized=normalized)


def _run(
    envs: gym.vector.SyncVectorEnv,
    act: Callable[[PRNGKeyArray, np.ndarray], np.ndarray],
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
        action = act(sub, obs)
        if action.shape != (n, act_dim):
            raise ValueError(
                f"the policy must return actions of shape [n, {act_dim}] for observations [n, obs_dim]; "
                f"got {action.shape} for n={n}."
            )
        if not np.all(np.isfinite(action)):
            raise ValueError("the policy returned non-finite actions.")
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

"""How a dataset is presented to an agent: observation statistics and the reward transform.

`DataConfig` says which reward transform a run uses; `OfflineDataset.normalizer(config)` turns it,
with the dataset's observation statistics, into a `Normalizer`. The normaliser is applied to the
dataset once before training and to every observation at evaluation time, and it is saved as JSON
beside the policy, so that a trained policy can act without its dataset.

The reward transforms (`DataConfig.reward`):

- `"none"`: `r`;
- `"iql"`: `r * 1000 / (max - min episode return)`, the rescaling IQL uses on MuJoCo. The returns
  are those of every episode the dataset stores, as IQL's reference code splits them (an episode
  that a collection budget cut short counts too; CORL drops a trailing unfinished one instead);
- `"manual"`: `reward_scale * r + reward_bias`;
- `"auto"` (the default): `"iql"` for datasets of Gymnasium environments with reference scores
  (the MuJoCo locomotion tasks), `"none"` for built-in tasks and every other dataset.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from rl.data.transitions import Transitions

__all__ = ["OBS_STD_FLOOR", "REWARD_MODES", "DataConfig", "Normalizer", "iql_reward_scale", "obs_statistics"]

# Smallest observation std used for normalisation (constant dimensions would divide by 0).
OBS_STD_FLOOR = 1e-3
REWARD_MODES = ("auto", "none", "iql", "manual")
# 1000 / (max - min episode return): IQL's reward scale on MuJoCo.
_IQL_RETURN_RANGE = 1000.0
_FORMAT = "rl.normalizer/1"


@dataclass(frozen=True)
class DataConfig:
    """How a run's dataset is presented to the agent (the `--data.*` options)."""

    # reward transform: "auto" ("iql" for Gymnasium datasets with reference scores, else "none"), "none" (r),
    # "iql" (r * 1000 / (max - min episode return)) or "manual" (reward_scale * r + reward_bias)
    reward: Literal["auto", "none", "iql", "manual"] = "auto"
    # multiplies the reward when reward="manual"
    reward_scale: float = 1.0
    # added to the scaled reward when reward="manual"
    reward_bias: float = 0.0

    def __post_init__(self) -> None:
        if self.reward not in REWARD_MODES:
            raise ValueError(f"DataConfig.reward must be one of {REWARD_MODES}, got {self.reward!r}.")
        for name in ("reward_scale", "reward_bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"DataConfig.{name} must be a finite number, got {value!r}.")
        if self.reward != "manual" and (self.reward_scale, self.reward_bias) != (1.0, 0.0):
            raise ValueError(
                "DataConfig.reward_scale and reward_bias are used with reward='manual' only; got "
                f"reward={self.reward!r} with reward_scale={self.reward_scale}, reward_bias={self.reward_bias}."
            )


def obs_statistics(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and floored standard deviation of observations, computed in float64, returned as float32.

    Args:
        obs: `[n, obs_dim]` observations.

    Returns:
        `(mean, std)`, each float32 `[obs_dim]`; `std >= OBS_STD_FLOOR`.
    """
    mean = obs.mean(axis=0, dtype=np.float64)
    std = np.maximum(obs.std(axis=0, dtype=np.float64), OBS_STD_FLOOR)
    return mean.astype(np.float32), std.astype(np.float32)


def iql_reward_scale(episode_returns: ArrayLike, *, name: str = "the dataset") -> float:
    """IQL's MuJoCo reward scale, `1000 / (max - min)` of the episode returns.

    Args:
        episode_returns: the return of every episode, `[num_episodes]`.
        name: what the returns belong to, for the error message.

    Returns:
        The scale, a python float (computed in float64).

    Raises:
        ValueError: fewer than two distinct returns (the range is 0) or non-finite returns.
    """
    returns = np.asarray(episode_returns, dtype=np.float64)
    if returns.ndim != 1 or returns.size < 1 or not np.all(np.isfinite(returns)):
        raise ValueError(f"reward='iql' needs finite episode returns of {name}; got {returns.size} of them.")
    spread = returns.max() - returns.min()
    if not spread > 0:
        raise ValueError(
            f"reward='iql' divides by the range of episode returns, which is 0 for {name} "
            f"({returns.size} episode(s), all returning {returns.max():g}); use --data.reward=none or manual."
        )
    return float(_IQL_RETURN_RANGE / spread)


class Normalizer(eqx.Module):
    """Observation statistics and reward transform of a dataset: what a policy needs besides its parameters.

    `obs(x) = (x - obs_mean) / obs_std` and `reward(r) = reward_scale * r + reward_bias`. The statistics
    are arrays (float32 for datasets; a behaviour-policy file keeps its float64 ones); the reward
    transform is two python floats, static, so that under `jit` they are constants. `to_dict` /
    `from_dict` and `save` / `load` round-trip every value exactly.
    """

    # observation mean, [obs_dim]
    obs_mean: Float[ArrayLike, " obs_dim"]
    # observation scale, floored at OBS_STD_FLOOR when computed from data, [obs_dim]
    obs_std: Float[ArrayLike, " obs_dim"]
    # multiplies the reward
    reward_scale: float = eqx.field(static=True, default=1.0, converter=float)
    # added to the scaled reward
    reward_bias: float = eqx.field(static=True, default=0.0, converter=float)

    def __check_init__(self) -> None:
        mean, std = np.shape(self.obs_mean), np.shape(self.obs_std)
        if len(mean) != 1 or mean != std:
            raise ValueError(
                f"Normalizer: obs_mean and obs_std must be 1-d of equal length, got shapes {mean} and {std}."
            )
        if self.obs_mean.dtype != self.obs_std.dtype:
            raise ValueError(
                f"Normalizer: obs_mean and obs_std must have one dtype, got {self.obs_mean.dtype} and {self.obs_std.dtype}."
            )
        for name in ("reward_scale", "reward_bias"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"Normalizer.{name} must be finite, got {value!r}.")

    @classmethod
    def identity(cls, obs_dim: int) -> Normalizer:
        """Mean 0, std 1, reward unchanged: normalising changes nothing."""
        return cls(jnp.zeros((obs_dim,), jnp.float32), jnp.ones((obs_dim,), jnp.float32))

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return int(np.shape(self.obs_mean)[0])

    @property
    def transforms_reward(self) -> bool:
        """Whether `reward` changes anything (False for the identity transform)."""
        return (self.reward_scale, self.reward_bias) != (1.0, 0.0)

    def obs(self, x: Float[ArrayLike, "*batch obs_dim"]) -> Float[ArrayLike, "*batch obs_dim"]:
        """`(x - obs_mean) / obs_std` over the last axis, with any leading dimensions.

        A numpy `x` is normalised in numpy, in the dtype numpy promotes to (float64 for float64
        observations); anything else in `jax.numpy`.
        """
        shape = (1,) * (np.ndim(x) - 1) + (self.obs_dim,)
        if isinstance(x, np.ndarray):
            return (x - np.reshape(np.asarray(self.obs_mean), shape)) / np.reshape(np.asarray(self.obs_std), shape)
        return (x - jnp.reshape(self.obs_mean, shape)) / jnp.reshape(self.obs_std, shape)

    def reward(self, r: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
        """`reward_scale * r + reward_bias` (the identity transform returns `r` itself)."""
        if not self.transforms_reward:
            return r
        return self.reward_scale * r + self.reward_bias

    def transitions(self, t: Transitions) -> Transitions:
        """The transitions as the agent sees them: `obs` and `next_obs` normalised, `reward` transformed."""
        return Transitions(
            obs=self.obs(t.obs),
            action=t.action,
            reward=self.reward(t.reward),
            next_obs=self.obs(t.next_obs),
            terminal=t.terminal,
        )

    # ------------------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_dict` gives back the same values bit for bit."""
        mean, std = np.asarray(self.obs_mean), np.asarray(self.obs_std)
        return {
            "format": _FORMAT,
            "dtype": str(mean.dtype),
            "obs_mean": [float(v) for v in mean],
            "obs_std": [float(v) for v in std],
            "reward_scale": self.reward_scale,
            "reward_bias": self.reward_bias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "the normaliser") -> Normalizer:
        """The normaliser `to_dict` described (float32 statistics come back as jax arrays).

        Args:
            d: the dict.
            source: where it came from, for error messages (e.g. a file name).

        Raises:
            ValueError: a key is missing or a value has the wrong type or shape.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}.")
        keys = {"format", "dtype", "obs_mean", "obs_std", "reward_scale", "reward_bias"}
        if set(d) != keys:
            raise ValueError(f"{source}: expected the keys {sorted(keys)}, got {sorted(d)}.")
        if d["format"] != _FORMAT:
            raise ValueError(f"{source}: expected format {_FORMAT!r}, got {d['format']!r}.")
        if d["dtype"] not in ("float32", "float64"):
            raise ValueError(f"{source}: dtype must be 'float32' or 'float64', got {d['dtype']!r}.")
        try:
            mean = np.asarray(d["obs_mean"], dtype=np.float64).astype(d["dtype"])
            std = np.asarray(d["obs_std"], dtype=np.float64).astype(d["dtype"])
            scale, bias = float(d["reward_scale"]), float(d["reward_bias"])
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{source}: obs_mean, obs_std must be lists of numbers and the reward values numbers ({e})."
            ) from None
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(
                f"{source}: obs_mean and obs_std must be lists of equal length, got {mean.shape} and {std.shape}."
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"{source}: obs_mean must be finite and obs_std finite and > 0.")
        if d["dtype"] == "float32":
            return cls(jnp.asarray(mean), jnp.asarray(std), scale, bias)
        return cls(mean, std, scale, bias)

    def save(self, path: str | os.PathLike) -> None:
        """Write `to_dict()` as JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normalizer:
        """Read a file written by `save`.

        Raises:
            FileNotFoundError: no file there.
            ValueError: the file is not such JSON (the message names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No normaliser file at {path}.")
        try:
            d = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"{path} is not valid JSON ({e}); it should hold a normaliser written by Normalizer.save."
            ) from None
        return cls.from_dict(d, source=str(path))

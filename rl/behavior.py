"""Behaviour policies stored as plain `.npz` files, run with numpy.

A behaviour policy is a deterministic MLP that maps an observation to an action in
`[-1, 1]`. The file format (documented in `docs/data.md`) needs nothing but `np.load`:

- `obs_mean`, `obs_std`: float32 `[obs_dim]`; `obs_clip`: float32 scalar (`inf` for none);
- `layer_0_w` `[in, out]`, `layer_0_b` `[out]`, `layer_1_w`, ... in order, float32;
- `hidden_activation`: `'relu'` or `'tanh'`; `output_squash`: `'tanh'` or `'clip'`;
- `env_id` (e.g. `'HalfCheetah-v5'`), `algo`, `source`: 0-d string arrays.

The action for an observation `obs`:

1. `x = clip((obs - obs_mean) / obs_std, -obs_clip, obs_clip)` in float64, cast to float32;
2. every layer but the last: `h = act(h @ w + b)`;
3. last layer: `a = h @ w + b`, then `tanh(a)` or `clip(a, -1, 1)`.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from rl.data.normalizer import Normalizer

__all__ = ["BehaviorPolicy", "load_behavior_policy", "save_behavior_policy"]

_ACTIVATIONS = ("relu", "tanh")
_SQUASHES = ("tanh", "clip")
_STRING_KEYS = ("hidden_activation", "output_squash", "env_id", "algo", "source")
_LAYER_KEY = re.compile(r"^layer_(\d+)_([wb])$")
# The first bytes of a zip archive (an .npz) holding files, or an empty one.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class BehaviorPolicy:
    """A deterministic MLP policy held as numpy arrays.

    Call it on a batch of observations `[n, obs_dim]` (or a single `[obs_dim]`) to get
    actions `[n, act_dim]` (or `[act_dim]`) in `[-1, 1]`, as float32.
    """

    # observation normaliser: x = clip((obs - obs_mean) / obs_std, -obs_clip, obs_clip)
    obs_mean: np.ndarray
    # per-dimension scale of the normaliser (must be > 0)
    obs_std: np.ndarray
    # symmetric clip after normalisation; `inf` for none
    obs_clip: float
    # weight matrices `[in, out]`, first layer first
    weights: tuple[np.ndarray, ...]
    # bias vectors `[out]`, one per weight matrix
    biases: tuple[np.ndarray, ...]
    # activation of every layer but the last: "relu" or "tanh"
    hidden_activation: str
    # map of the last layer's output into [-1, 1]: "tanh" or "clip"
    output_squash: str
    # Gymnasium id of the environment the policy acts in, e.g. "HalfCheetah-v5"
    env_id: str
    # name of the algorithm that trained it (informative only)
    algo: str = ""
    # where the weights came from (informative only)
    source: str = ""

    @property
    def obs_dim(self) -> int:
        """Size of the observation the policy expects."""
        return int(self.weights[0].shape[0])

    @property
    def act_dim(self) -> int:
        """Size of the action the policy returns."""
        return int(self.weights[-1].shape[1])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for a batch (or a single) observation.

        The normalisation runs in numpy (float64, as the format says); the layers run in one
        jitted XLA call. (numpy's BLAS spreads small matrix products over threads, which on a
        busy machine made a 256-unit policy 40x slower per step than XLA.)

        Args:
            obs: observations `[n, obs_dim]` or `[obs_dim]`.

        Returns:
            Actions `[n, act_dim]` (or `[act_dim]`) in `[-1, 1]`, float32.
        """
        batch, single = self._normalise(obs)
        a = np.asarray(_layers(self._device_params, jnp.asarray(batch), self.hidden_activation, self.output_squash))
        return a[0] if single else a

    def numpy_actions(self, obs: np.ndarray) -> np.ndarray:
        """The same actions computed in numpy alone (the reference for the format)."""
        h, single = self._normalise(obs)
        act = np.tanh if self.hidden_activation == "tanh" else _relu
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                h = act(h)
        a = np.tanh(h) if self.output_squash == "tanh" else np.clip(h, -1.0, 1.0)
        a = a.astype(np.float32)
        return a[0] if single else a

    def _normalise(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        obs = np.asarray(obs)
        single = obs.ndim == 1
        batch = obs[None, :] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(
                f"BehaviorPolicy for {self.env_id} expects observations of shape "
                f"[n, {self.obs_dim}] or [{self.obs_dim}], got shape {obs.shape}."
            )
        x = self.normalizer.obs(batch.astype(np.float64))
        return np.clip(x, -self.obs_clip, self.obs_clip).astype(np.float32), single

    @functools.cached_property
    def normalizer(self) -> Normalizer:
        """The file's observation statistics as a `rl.data.Normalizer` (float64, as the format says)."""
        return Normalizer(np.asarray(self.obs_mean, np.float64), np.asarray(self.obs_std, np.float64))

    @functools.cached_property
    def _device_params(self) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        return tuple(jnp.asarray(w) for w in self.weights), tuple(jnp.asarray(b) for b in self.biases)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


@functools.partial(jax.jit, static_argnames=("activation", "squash"))
def _layers(
    params: tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]], h: jax.Array, activation: str, squash: str
) -> jax.Array:
    weights, biases = params
    act = jnp.tanh if activation == "tanh" else jax.nn.relu
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w + b[None, :]
        if i < len(weights) - 1:
            h = act(h)
    return jnp.tanh(h) if squash == "tanh" else jnp.clip(h, -1.0, 1.0)


def _string(z: np.lib.npyio.NpzFile, key: str, path: str) -> str:
    value = z[key]
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise ValueError(
            f"Behaviour policy {path}: '{key}' must be a 0-d string array, "
            f"got dtype {value.dtype} and shape {value.shape}."
        )
    return str(value)


def load_behavior_policy(path: str | os.PathLike) -> BehaviorPolicy:
    """Load and validate a behaviour policy `.npz` file.

    Args:
        path: path to the `.npz` file (format in the module docstring and `docs/data.md`).

    Returns:
        The policy, ready to call on numpy observations.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a key is missing or has the wrong shape, dtype or value.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Behaviour policy file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGIC:
        raise ValueError(
            f"Behaviour policy {path} is not a plain .npz file (a zip archive of .npy arrays, as np.savez "
            f"writes); its first bytes are {head!r}."
        )
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # a damaged zip, or pickled content
        raise ValueError(
            f"Behaviour policy {path} is not a plain .npz file readable by "
            f"np.load(allow_pickle=False): {e}"
        ) from e
    with z:
        keys = set(z.files)
        required = {"obs_mean", "obs_std", "obs_clip", "hidden_activation", "output_squash", "env_id"}
        missing = sorted(required - keys)
        if missing:
            raise ValueError(
                f"Behaviour policy {path} lacks the keys {missing}; it has {sorted(keys)}. "
                "See docs/data.md for the format."
            )
        strings = {k: _string(z, k, path) for k in _STRING_KEYS if k in keys}
        layer_ids: dict[int, set[str]] = {}
        for k in keys:
            m = _LAYER_KEY.match(k)
            if m:
                layer_ids.setdefault(int(m.group(1)), set()).add(m.group(2))
        n_layers = len(layer_ids)
        if n_layers == 0 or sorted(layer_ids) != list(range(n_layers)):
            raise ValueError(
                f"Behaviour policy {path} must have layers layer_0_w, layer_0_b, layer_1_w, ... "
                f"numbered from 0 without gaps; found layer numbers {sorted(layer_ids)}."
            )
        for i, parts in sorted(layer_ids.items()):
            if parts != {"w", "b"}:
                raise ValueError(
                    f"Behaviour policy {path}: layer {i} needs both layer_{i}_w and layer_{i}_b."
                )
        weights = tuple(np.asarray(z[f"layer_{i}_w"], dtype=np.float32) for i in range(n_layers))
        biases = tuple(np.asarray(z[f"layer_{i}_b"], dtype=np.float32) for i in range(n_layers))
        obs_mean = np.asarray(z["obs_mean"], dtype=np.float64)
        obs_std = np.asarray(z["obs_std"], dtype=np.float64)
        obs_clip_arr = np.asarray(z["obs_clip"])
    if obs_clip_arr.shape != () or obs_clip_arr.dtype.kind != "f":
        raise ValueError(
            f"Behaviour policy {path}: 'obs_clip' must be a float scalar, "
            f"got dtype {obs_clip_arr.dtype} and shape {obs_clip_arr.shape}."
        )
    obs_clip = float(obs_clip_arr)
    if not obs_clip > 0:
        raise ValueError(f"Behaviour policy {path}: 'obs_clip' must be > 0 (or inf), got {obs_clip}.")
    fan_in = obs_mean.shape[0] if obs_mean.ndim == 1 else None
    if fan_in is None or obs_std.shape != obs_mean.shape:
        raise ValueError(
            f"Behaviour policy {path}: 'obs_mean' and 'obs_std' must be 1-d of equal length, "
            f"got shapes {obs_mean.shape} and {obs_std.shape}."
        )
    if not np.all(obs_std > 0) or not np.all(np.isfinite(obs_std)):
        raise ValueError(f"Behaviour policy {path}: 'obs_std' must be finite and > 0 everywhere.")
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.ndim != 2 or w.shape[0] != fan_in or b.shape != (w.shape[1],):
            raise ValueError(
                f"Behaviour policy {path}: layer {i} must have w [{fan_in}, out] and b [out]; "
                f"got w {w.shape} and b {b.shape}."
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ValueError(f"Behaviour policy {path}: layer {i} has non-finite weights.")
        fan_in = w.shape[1]
    activation = strings["hidden_activation"]
    squash = strings["output_squash"]
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"Behaviour policy {path}: 'hidden_activation' must be one of {_ACTIVATIONS}, got {activation!r}."
        )
    if squash not in _SQUASHES:
        raise ValueError(
            f"Behaviour policy {path}: 'output_squash' must be one of {_SQUASHES}, got {squash!r}."
        )
    return BehaviorPolicy(
        obs_mean=obs_mean,
        obs_std=obs_std,
        obs_clip=obs_clip,
        weights=weights,
        biases=biases,
        hidden_activation=activation,
        output_squash=squash,
        env_id=strings["env_id"],
        algo=strings.get("algo", ""),
        source=strings.get("source", ""),
    )


def save_behavior_policy(path: str | os.PathLike, policy: BehaviorPolicy) -> None:
    """Write a behaviour policy in the `.npz` format that `load_behavior_policy` reads.

    Args:
        path: destination file (conventionally ending in `.npz`).
        policy: the policy to write.
    """
    arrays: dict[str, np.ndarray] = {
        "obs_mean": np.asarray(policy.obs_mean, dtype=np.float32),
        "obs_std": np.asarray(policy.obs_std, dtype=np.float32),
        "obs_clip": np.asarray(policy.obs_clip, dtype=np.float32),
        "hidden_activation": np.asarray(policy.hidden_activation),
        "output_squash": np.asarray(policy.output_squash),
        "env_id": np.asarray(policy.env_id),
        "algo": np.asarray(policy.algo),
        "source": np.asarray(policy.source),
    }
    for i, (w, b) in enumerate(zip(policy.weights, policy.biases, strict=True)):
        arrays[f"layer_{i}_w"] = np.asarray(w, dtype=np.float32)
        arrays[f"layer_{i}_b"] = np.asarray(b, dtype=np.float32)
    with open(path, "wb") as f:
        np.savez(f, **arrays)

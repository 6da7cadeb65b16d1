"""Offline datasets: from a Minari dataset id (or path) to transitions on the device.

`load_dataset` turns a Minari dataset into one `Transitions` pytree of float32 arrays
(`obs, action, reward, next_obs, terminal`) that lives on the device, so that agents can sample
batches inside `jit`. Only true terminations stop bootstrapping (`terminal = 1`); time-limit
truncations keep `terminal = 0` and their `next_obs` is the real final observation (Minari
stores it). Data actions are clipped to `±(1 - 1e-5)` so that `atanh` and flow targets stay
finite.

The first load converts the Minari episodes and writes the arrays to a cache file (keyed by the
dataset's path and its files' sizes and modification times); later loads read that file.

Reference scores for normalisation follow D4RL: a return equal to the random policy's scores
0 and one equal to the expert's scores 100 (`normalized_score`).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "ACTION_CLIP",
    "OBS_STD_FLOOR",
    "REF_SCORES",
    "DatasetNotFoundError",
    "OfflineDataset",
    "RefScores",
    "Transitions",
    "default_cache_dir",
    "env_short_name",
    "load_dataset",
    "normalize_obs",
    "normalized_score",
    "ref_scores_for",
    "resolve_dataset_path",
]

# Data actions are clipped to ±ACTION_CLIP (keeps atanh of a tanh-squashed action finite).
ACTION_CLIP = 1.0 - 1e-5
# Smallest observation std used for normalisation (constant dimensions would divide by 0).
OBS_STD_FLOOR = 1e-3
# Bump when the cached arrays' layout or meaning changes; old cache files are then ignored.
_CACHE_VERSION = 1
# How long `load_dataset` waits to learn whether the Minari server is reachable.
_NETWORK_TIMEOUT_S = 0.5
_MINARI_HOST = ("huggingface.co", 443)


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


def env_short_name(env_id: str) -> str:
    """Short lower-case name of an environment: `"HalfCheetah-v5"` -> `"halfcheetah"`.

    Args:
        env_id: a Gymnasium id (`"Walker2d-v5"`) or already a short name (`"walker2d"`).

    Returns:
        The name without version, lower case.
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


def normalize_obs(
    obs: Float[Array, "*batch obs_dim"], obs_mean: Float[Array, " obs_dim"], obs_std: Float[Array, " obs_dim"]
) -> Float[Array, "*batch obs_dim"]:
    """`(obs - obs_mean) / obs_std` with explicit broadcasting over leading dimensions.

    Args:
        obs: observations `[..., obs_dim]`.
        obs_mean: `[obs_dim]` mean.
        obs_std: `[obs_dim]` scale (already floored).

    Returns:
        Normalised observations of the same shape.
    """
    shape = (1,) * (obs.ndim - 1) + obs_mean.shape
    return (obs - jnp.reshape(obs_mean, shape)) / jnp.reshape(obs_std, shape)


@dataclass(frozen=True)
class OfflineDataset:
    """A Minari dataset loaded onto the device, with its statistics and references."""

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
    # Minari dataset id stored in the dataset's metadata
    dataset_id: str
    # directory holding the dataset's Minari files
    data_path: str
    # undiscounted return of each episode, in order, [num_episodes]
    episode_returns: np.ndarray
    # number of transitions of each episode, [num_episodes]
    episode_lengths: np.ndarray
    # the `rl.collect` recipe recorded in the metadata (empty for datasets made elsewhere)
    recipe: dict[str, Any] = field(default_factory=dict)

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

    def normalized_transitions(self) -> Transitions:
        """The transitions with `obs` and `next_obs` normalised by `obs_mean` and `obs_std`."""
        t = self.transitions
        return eqx.tree_at(
            lambda x: (x.obs, x.next_obs),
            t,
            (normalize_obs(t.obs, self.obs_mean, self.obs_std), normalize_obs(t.next_obs, self.obs_mean, self.obs_std)),
        )

    def normalized_score(self, raw_return: Any) -> Any:
        """`normalized_score` with this dataset's references (error if it has none)."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ValueError(f"Dataset {self.dataset_id} has no reference scores to normalise with.")
        return normalized_score(raw_return, self.ref_min_score, self.ref_max_score)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither on this machine nor downloadable now."""


# ----------------------------------------------------------------------------- locating


def _minari_root() -> Path:
    root = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        return Path(root).expanduser()
    return Path.home() / ".minari" / "datasets"


def _data_dir_of(path: Path) -> Path | None:
    if (path / "data" / "metadata.json").is_file():
        return path / "data"
    if (path / "metadata.json").is_file():
        return path
    return None


def resolve_dataset_path(dataset: str | os.PathLike) -> Path | None:
    """The local `data` directory of a dataset id or path, or None if it is not on this machine.

    Args:
        dataset: a Minari id (`"mujoco/hopper/medium-v0"`, looked up under
            `MINARI_DATASETS_PATH` or `~/.minari/datasets`) or a path to a dataset directory
            (the one holding `data/`, or `data/` itself).

    Returns:
        The directory holding `metadata.json`, or None.
    """
    path = Path(os.fspath(dataset)).expanduser()
    if path.is_dir():
        found = _data_dir_of(path)
        if found is None:
            raise ValueError(
                f"{path} is a directory but not a Minari dataset (expected {path}/data/metadata.json)."
            )
        return found.resolve()
    if isinstance(dataset, os.PathLike) or path.is_absolute() or os.fspath(dataset).startswith((".", "~")):
        raise DatasetNotFoundError(f"No dataset directory at {path}.")
    return _data_dir_of(_minari_root() / os.fspath(dataset))


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _network_available(timeout: float = _NETWORK_TIMEOUT_S) -> bool:
    """Whether the Minari server accepts a TCP connection within `timeout` seconds."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(_MINARI_HOST, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.1)
    return bool(result and result[0])


def _collect_hint(dataset_id: str) -> str:
    parts = dataset_id.split("/")
    env = parts[-2] if len(parts) >= 2 else "<env>"
    recipe = parts[-1].split("-v")[0] if "-v" in parts[-1] else parts[-1]
    local_id = f"local/{env}/{recipe}-v0"
    if recipe in ("medium", "expert"):
        args = f"{recipe} --env {env} --policy PATH/TO/POLICY.npz"
    elif recipe in ("random", "medium-replay", "medium-expert"):
        args = f"{recipe} --env {env}"
    else:
        args = f"{{random,medium,expert,medium-replay,medium-expert}} --env {env} ..."
    return f"python -m rl.collect {args} --dataset-id {local_id}"


def _missing_message(dataset_id: str, reason: str) -> str:
    return (
        f"Dataset {dataset_id!r} is not on this machine (looked in {_minari_root()}, set by "
        f"MINARI_DATASETS_PATH) and {reason}.\n"
        f"  - to download it where there is a network:  minari download {dataset_id}\n"
        f"    (then copy it into {_minari_root()} or point MINARI_DATASETS_PATH at it);\n"
        f"  - or make a dataset locally:  {_collect_hint(dataset_id)}\n"
        f"    and load it by that id (see docs/data.md)."
    )


def _locate(dataset: str | os.PathLike, download: bool) -> Path:
    found = resolve_dataset_path(dataset)
    if found is not None:
        return found
    dataset_id = os.fspath(dataset)
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError as e:
        raise ValueError(
            f"{dataset_id!r} is neither an existing dataset directory nor a Minari id of the form "
            "'namespace/env/name-vN' (e.g. 'mujoco/halfcheetah/medium-v0')."
        ) from e
    if not download:
        raise DatasetNotFoundError(_missing_message(dataset_id, "download=False"))
    if _offline_env():
        raise DatasetNotFoundError(_missing_message(dataset_id, "HF_HUB_OFFLINE is set, so it cannot be downloaded"))
    if not _network_available():
        raise DatasetNotFoundError(
            _missing_message(dataset_id, f"the Minari server ({_MINARI_HOST[0]}) cannot be reached")
        )
    import minari

    minari.load_dataset(dataset_id, download=True)
    found = resolve_dataset_path(dataset_id)
    if found is None:
        raise DatasetNotFoundError(f"Minari reported downloading {dataset_id!r} but it is not under {_minari_root()}.")
    return found


# ----------------------------------------------------------------------------- caching


def default_cache_dir() -> Path:
    """Where converted datasets are cached: `$RL_DATA_CACHE_DIR`, else `$XDG_CACHE_HOME/energyflow/rl-data`."""
    explicit = os.environ.get("RL_DATA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "energyflow" / "rl-data"


def _cache_key(data_dir: Path) -> tuple[str, str]:
    path_hash = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    content = hashlib.sha256(f"v{_CACHE_VERSION} clip={ACTION_CLIP!r} floor={OBS_STD_FLOOR!r}".encode())
    for f in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        st = f.stat()
        content.update(f"{f.relative_to(data_dir)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return path_hash, content.hexdigest()[:16]


def _cache_file(cache_dir: Path, data_dir: Path) -> Path:
    path_hash, content_hash = _cache_key(data_dir)
    return cache_dir / f"{path_hash}-{content_hash}.npz"


def _write_cache(file: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, file)
        prefix = file.name.split("-")[0] + "-"
        for old in file.parent.glob(prefix + "*.npz"):
            if old != file:
                old.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"Could not write the dataset cache {file}: {e}; the next load will convert again.")


def _read_cache(file: Path) -> dict[str, np.ndarray] | None:
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # a truncated or foreign file: convert again
        warnings.warn(f"Ignoring unreadable dataset cache {file}: {e}")
        return None


# ----------------------------------------------------------------------------- converting


def _check_spaces(data_dir: Path, obs_space: Any, act_space: Any) -> None:
    import gymnasium as gym

    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"rl needs a flat Box observation space; the dataset at {data_dir} has {obs_space}.")
    if not isinstance(act_space, gym.spaces.Box) or len(act_space.shape) != 1:
        raise ValueError(f"rl needs a flat Box action space; the dataset at {data_dir} has {act_space}.")
    if not (np.all(act_space.low == -1.0) and np.all(act_space.high == 1.0)):
        raise ValueError(
            f"rl expects actions in [-1, 1]; the dataset at {data_dir} has action bounds "
            f"low={act_space.low}, high={act_space.high}."
        )


_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations")


def _hdf5_episodes(file: Path, num_episodes: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(observations, actions, rewards, terminations) of each episode of Minari's HDF5 storage.

    Reads with h5py's low-level API: about 4x faster than `MinariDataset.iterate_episodes` on
    datasets of many short episodes, where per-object overhead dominates.
    """
    import h5py

    with h5py.File(file, "r") as f:
        fid = f.id
        for i in range(num_episodes):
            out = []
            for k in _EPISODE_KEYS:
                ds = h5py.h5d.open(fid, f"episode_{i}/{k}".encode())
                arr = np.empty(ds.shape, ds.dtype)
                ds.read(h5py.h5s.ALL, h5py.h5s.ALL, arr)
                out.append(arr)
            yield tuple(out)


def _minari_episodes(mds: Any) -> Iterator[tuple[np.ndarray, ...]]:
    for ep in mds.iterate_episodes():
        yield np.asarray(ep.observations), np.asarray(ep.actions), np.asarray(ep.rewards), np.asarray(ep.terminations)


def _convert(data_dir: Path) -> dict[str, np.ndarray]:
    """Read the Minari episodes into flat numpy arrays (float32) plus metadata."""
    import minari

    mds = minari.MinariDataset(data_dir)
    _check_spaces(data_dir, mds.observation_space, mds.action_space)
    n = int(mds.total_steps)
    obs_dim = mds.observation_space.shape[0]
    act_dim = mds.action_space.shape[0]
    obs = np.empty((n, obs_dim), np.float32)
    next_obs = np.empty((n, obs_dim), np.float32)
    action = np.empty((n, act_dim), np.float32)
    reward = np.empty((n,), np.float32)
    terminal = np.empty((n,), np.float32)
    returns, lengths = [], []
    i = 0
    main_file = data_dir / "main_data.hdf5"
    if mds.storage.metadata.get("data_format") == "hdf5" and main_file.is_file():
        episodes = _hdf5_episodes(main_file, mds.total_episodes)
    else:
        episodes = _minari_episodes(mds)
    for k, (o, a, r, term) in enumerate(episodes):
        t = len(r)
        if t == 0:
            continue
        if o.shape != (t + 1, obs_dim) or a.shape != (t, act_dim) or term.shape != (t,):
            raise ValueError(
                f"Episode {k} of {data_dir} has observations {o.shape}, actions {a.shape}, terminations "
                f"{term.shape}; expected ({t + 1}, {obs_dim}), ({t}, {act_dim}), ({t},) "
                "(Minari stores one more observation than actions)."
            )
        if i + t > n:
            raise ValueError(f"The dataset at {data_dir} declares {n} steps but its episodes hold more.")
        obs[i : i + t] = o[:-1]
        next_obs[i : i + t] = o[1:]
        action[i : i + t] = a
        reward[i : i + t] = r
        terminal[i : i + t] = term.astype(bool)
        returns.append(float(np.sum(r, dtype=np.float64)))
        lengths.append(t)
        i += t
    if i != n:
        raise ValueError(f"The dataset at {data_dir} declares {n} steps but its episodes hold {i}.")
    if n == 0:
        raise ValueError(f"The dataset at {data_dir} has no transitions.")
    np.clip(action, -ACTION_CLIP, ACTION_CLIP, out=action)
    mean = obs.mean(axis=0, dtype=np.float64)
    std = np.maximum(obs.std(axis=0, dtype=np.float64), OBS_STD_FLOOR)

    metadata = mds.storage.metadata
    env_spec = mds.spec.env_spec
    env_id = env_spec.id if env_spec is not None else None
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if (ref_min is None or ref_max is None) and env_id is not None:
        ref = ref_scores_for(env_id)
        if ref is not None:
            ref_min, ref_max = ref
    meta = {
        "env_id": env_id,
        "ref_min_score": None if ref_min is None else float(ref_min),
        "ref_max_score": None if ref_max is None else float(ref_max),
        "dataset_id": str(metadata.get("dataset_id", data_dir.parent.name)),
        "recipe": _recipe_of(metadata),
    }
    return {
        "obs": obs,
        "action": action,
        "reward": reward,
        "next_obs": next_obs,
        "terminal": terminal,
        "obs_mean": mean.astype(np.float32),
        "obs_std": std.astype(np.float32),
        "episode_returns": np.asarray(returns, np.float64),
        "episode_lengths": np.asarray(lengths, np.int64),
        "meta": np.asarray(json.dumps(meta)),
    }


def _recipe_of(metadata: dict[str, Any]) -> dict[str, Any]:
    recipe = metadata.get("rl_recipe")
    if isinstance(recipe, str):
        try:
            recipe = json.loads(recipe)
        except json.JSONDecodeError:
            recipe = {"text": recipe}
    return recipe if isinstance(recipe, dict) else {}


def load_dataset(
    dataset: str | os.PathLike,
    *,
    download: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> OfflineDataset:
    """Load a Minari dataset as device arrays of transitions.

    Args:
        dataset: a Minari id (`"mujoco/halfcheetah/medium-v0"`, or a local one made by
            `python -m rl.collect` such as `"local/halfcheetah/medium-v0"`) looked up under
            `MINARI_DATASETS_PATH` (default `~/.minari/datasets`), or a path to a dataset directory.
        download: if the id is not on this machine, download it with Minari. Without a network
            (or with `HF_HUB_OFFLINE=1`) this fails within a second with instructions.
        cache: read/write the converted arrays from/to the cache.
        cache_dir: cache directory; default `default_cache_dir()`.

    Returns:
        The `OfflineDataset`, with `transitions` on the default device.

    Raises:
        DatasetNotFoundError: the dataset is not local and cannot be downloaded now.
        ValueError: the dataset is not usable by `rl` (non-Box spaces, actions outside [-1, 1]).
    """
    if not isinstance(dataset, str | os.PathLike):
        raise TypeError(f"dataset must be a Minari id or a path, got {type(dataset).__name__}: {dataset!r}.")
    data_dir = _locate(dataset, download)
    arrays = None
    file = None
    if cache:
        file = _cache_file(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(), data_dir)
        arrays = _read_cache(file)
    if arrays is None:
        arrays = _convert(data_dir)
        if file is not None:
            _write_cache(file, arrays)
    meta = json.loads(str(arrays["meta"]))
    transitions = Transitions(
        obs=jnp.asarray(arrays["obs"]),
        action=jnp.asarray(arrays["action"]),
        reward=jnp.asarray(arrays["reward"]),
        next_obs=jnp.asarray(arrays["next_obs"]),
        terminal=jnp.asarray(arrays["terminal"]),
    )
    return OfflineDataset(
        transitions=transitions,
        obs_mean=jnp.asarray(arrays["obs_mean"]),
        obs_std=jnp.asarray(arrays["obs_std"]),
        env_id=meta["env_id"],
        ref_min_score=meta["ref_min_score"],
        ref_max_score=meta["ref_max_score"],
        dataset_id=meta["dataset_id"],
        data_path=str(data_dir),
        episode_returns=arrays["episode_returns"],
        episode_lengths=arrays["episode_lengths"],
        recipe=meta["recipe"],
    )

"""Minari datasets: from a dataset id (or path) to an `OfflineDataset` on the device.

`load_dataset` turns a Minari dataset into one `Transitions` pytree of float32 arrays
(`obs, action, reward, next_obs, terminal`) that lives on the device, so that agents can sample
batches inside `jit`. Only true terminations stop bootstrapping (`terminal = 1`); time-limit
truncations keep `terminal = 0` and their `next_obs` is the real final observation (Minari
stores it). Data actions are clipped to `±(1 - 1e-5)` so that `atanh` and flow targets stay
finite.

The first load converts the Minari episodes (`rl.data.convert`) and writes the arrays to a cache
file (`rl.data.cache`); later loads read that file. Damaged dataset files (a broken
`metadata.json`, a truncated or overwritten HDF5 file) raise `CorruptDatasetError` naming the file.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import jax.numpy as jnp

from rl.data.cache import cache_file, default_cache_dir, read_cache, write_cache
from rl.data.convert import convert
from rl.data.dataset import DatasetNotFoundError, OfflineDataset
from rl.data.transitions import Transitions

__all__ = ["check_dataset_id", "load_dataset", "minari_root", "resolve_dataset_path"]

# How long `load_dataset` waits to learn whether the Minari server is reachable.
_NETWORK_TIMEOUT_S = 0.5
_MINARI_HOST = ("huggingface.co", 443)
_ID_FORM = "'namespace/env/name-vN' (e.g. 'mujoco/halfcheetah/medium-v0')"


# ----------------------------------------------------------------------------- locating


def minari_root() -> Path:
    """Where dataset ids are looked up: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets` (as Minari does)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        return Path(root).expanduser()
    return Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> str:
    """Check that `dataset_id` is a Minari id with a version, `namespace/env/name-vN`.

    Args:
        dataset_id: the id.

    Returns:
        The id, unchanged.

    Raises:
        ValueError: a one-line message saying what form was expected.
    """
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None or match.group("version") is None:
        raise ValueError(f"{dataset_id!r} is not a Minari dataset id of the form {_ID_FORM}.")
    return dataset_id


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
            raise ValueError(f"{path} is a directory but not a Minari dataset (expected {path}/data/metadata.json).")
        return found.resolve()
    if isinstance(dataset, os.PathLike) or path.is_absolute() or os.fspath(dataset).startswith((".", "~")):
        raise DatasetNotFoundError(f"No dataset directory at {path}.")
    return _data_dir_of(minari_root() / os.fspath(dataset))


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
        f"Dataset {dataset_id!r} is not on this machine (looked in {minari_root()}, set by "
        f"MINARI_DATASETS_PATH) and {reason}.\n"
        f"  - to download it where there is a network:  minari download {dataset_id}\n"
        f"    (then copy it into {minari_root()} or point MINARI_DATASETS_PATH at it);\n"
        f"  - or make a dataset locally:  {_collect_hint(dataset_id)}\n"
        f"    and load it by that id (see docs/data.md)."
    )


def _locate(dataset: str | os.PathLike, download: bool) -> Path:
    found = resolve_dataset_path(dataset)
    if found is not None:
        return found
    dataset_id = os.fspath(dataset)
    try:
        check_dataset_id(dataset_id)
    except ValueError:
        raise ValueError(
            f"{dataset_id!r} is neither an existing dataset directory nor a Minari id of the form {_ID_FORM}."
        ) from None
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
        raise DatasetNotFoundError(f"Minari reported downloading {dataset_id!r} but it is not under {minari_root()}.")
    return found


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
        cache_dir: cache directory; default `rl.data.default_cache_dir()`.

    Returns:
        The `OfflineDataset`, with `transitions` on the default device.

    Raises:
        DatasetNotFoundError: the dataset is not local and cannot be downloaded now.
        CorruptDatasetError: the dataset's files are damaged (the message names the file).
        ValueError: `dataset` is not an id of the form `namespace/env/name-vN`, or the dataset is
            not usable by `rl` (non-Box spaces, actions outside [-1, 1]).
    """
    if not isinstance(dataset, str | os.PathLike):
        raise TypeError(f"dataset must be a Minari id or a path, got {type(dataset).__name__}: {dataset!r}.")
    data_dir = _locate(dataset, download)
    arrays = None
    file = None
    if cache:
        file = cache_file(Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(), data_dir)
        arrays = read_cache(file)
    if arrays is None:
        arrays = convert(data_dir)
        if file is not None:
            write_cache(file, arrays)
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

"""The cache of converted datasets: one uncompressed `.npz` of flat arrays per dataset.

A cache file is keyed by the dataset directory's path and by the names, sizes and modification
times of its files, so a dataset remade in place is converted again. A cache file that cannot be
read, or whose arrays do not fit together, is reported in one warning line and rebuilt: it holds
nothing that the dataset itself does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from rl.data.normalizer import OBS_STD_FLOOR
from rl.data.transitions import ACTION_CLIP

__all__ = ["cache_file", "default_cache_dir", "read_cache", "write_cache"]

# Bump when the cached arrays' layout or meaning changes; old cache files are then ignored.
_CACHE_VERSION = 1
META_KEYS = ("env_id", "ref_min_score", "ref_max_score", "dataset_id", "recipe")


def default_cache_dir() -> Path:
    """Where converted datasets are cached: `$RL_DATA_CACHE_DIR`, else `$XDG_CACHE_HOME/energyflow/rl-data`."""
    explicit = os.environ.get("RL_DATA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "energyflow" / "rl-data"


def cache_file(cache_dir: Path, data_dir: Path) -> Path:
    """The cache file of the dataset in `data_dir` as its files are now."""
    path_hash = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    content = hashlib.sha256(f"v{_CACHE_VERSION} clip={ACTION_CLIP!r} floor={OBS_STD_FLOOR!r}".encode())
    for f in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        st = f.stat()
        content.update(f"{f.relative_to(data_dir)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return cache_dir / f"{path_hash}-{content.hexdigest()[:16]}.npz"


def write_cache(file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays atomically and remove older cache files of the same dataset (a failure only warns)."""
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
        warnings.warn(f"Could not write the dataset cache {file}: {e}; the next load will convert again.", stacklevel=3)


def read_cache(file: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there is no usable cache file (a damaged one is reported and ignored)."""
    if not file.is_file():
        return None
    try:
        with open(file, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz file: no zip header")
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        problem = _layout_problem(arrays)
    except Exception as e:  # a truncated, overwritten or foreign file (zip, CRC and format errors alike)
        problem = f"{type(e).__name__}: {e}"
    if problem is not None:
        warnings.warn(
            f"Ignoring unreadable dataset cache {file} ({problem}); converting the dataset again.", stacklevel=3
        )
        return None
    return arrays


def _layout_problem(a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays of a cache file, or None if they fit together."""
    expected = {"obs", "action", "reward", "next_obs", "terminal", "obs_mean", "obs_std", "episode_returns",
                "episode_lengths", "meta"}
    if set(a) != expected:
        return f"expected the arrays {sorted(expected)}, found {sorted(a)}"
    n = a["reward"].shape[0] if a["reward"].ndim == 1 else -1
    d = a["obs"].shape[1] if a["obs"].ndim == 2 else -1
    shapes = {
        "obs": (n, d),
        "next_obs": (n, d),
        "reward": (n,),
        "terminal": (n,),
        "obs_mean": (d,),
        "obs_std": (d,),
    }
    for name, shape in shapes.items():
        if a[name].shape != shape or a[name].dtype != np.float32:
            return f"{name} has shape {a[name].shape} and dtype {a[name].dtype}, expected {shape} float32"
    if a["action"].ndim != 2 or a["action"].shape[0] != n or a["action"].dtype != np.float32:
        return f"action has shape {a['action'].shape} and dtype {a['action'].dtype}, expected ({n}, act_dim) float32"
    lengths, returns = a["episode_lengths"], a["episode_returns"]
    if lengths.ndim != 1 or returns.shape != lengths.shape or int(lengths.sum()) != n:
        return f"episode lengths {lengths.shape} and returns {returns.shape} do not add up to {n} transitions"
    try:
        meta = json.loads(str(a["meta"]))
    except json.JSONDecodeError as e:
        return f"its metadata is not JSON ({e})"
    if not isinstance(meta, dict) or set(meta) != set(META_KEYS):
        found = sorted(meta) if isinstance(meta, dict) else repr(meta)
        return f"its metadata has the keys {found}, expected {sorted(META_KEYS)}"
    return None

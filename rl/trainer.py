"""The training loop that drives any agent of `rl.agents` on an offline dataset.

How it runs (the design that makes it fast on one device and scale to many seeds and devices):

- The whole dataset lives on the device, with observations normalised once by the dataset's statistics.
- A jitted *chunk* runs `updates_per_call` updates with `lax.scan`; each update draws a batch of random indices
  inside `jit` and calls the agent's pure `update`. Python only sees the loop every chunk.
- Several seeds (`RunConfig.seeds`) train together: `init` and the scanned chunk are `vmap`ped over seeds, so the
  seeds share one compiled program; each seed keeps its own RNG stream and its own logs.
- With more than one device, training is data-parallel: a `jax.sharding.Mesh` over the devices, each batch sharded
  along its leading axis, parameters and optimiser states replicated (the gradient mean becomes an all-reduce).

Around the chunks: a divergence guard (a NaN or inf in any diagnostic stops the run with a message naming the step,
the seed and the value, after saving the last good state), periodic evaluation (`rl.evaluate` in Gymnasium, or the
built-in bandit's scorer), CSV logs per seed (and TensorBoard when `tensorboardX` or `torch` is installed), a tqdm
progress bar, and atomic checkpoints from which `resume` continues the same RNG streams, so a resumed run equals the
uninterrupted one.

Run directory layout::

    RUN_DIR/
      config.json        # the resolved RunConfig (agent, dataset, seeds, agent config, loop config)
      checkpoint.eqx     # the latest good state of all seeds: agent states, RNG keys, step (atomic)
      seed_<s>/
        train.csv        # one row per chunk: step, time, updates/s, chunk means of the agent's diagnostics
        eval.csv         # one row per evaluation
        tb/              # TensorBoard events (only when a writer is installed)
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import sys
import time
import types
import typing
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, PRNGKeyArray

from rl import bandit
from rl.agents import AGENTS, get_agent
from rl.data import OfflineDataset, Transitions

__all__ = [
    "CONFIG_FILE",
    "CHECKPOINT_FILE",
    "Carry",
    "DivergenceError",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "config_from_dict",
    "config_to_dict",
    "evaluate_run",
    "init_carry",
    "load_checkpoint",
    "load_named_dataset",
    "load_run_config",
    "make_chunk_fn",
    "make_mesh",
    "resume",
    "save_checkpoint",
    "seed_state",
    "train",
]

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.eqx"
# Seeds of evaluation episodes: 1_000_000 + 1_000 * training seed (+ episode index), fixed over a run so that
# successive evaluations of one seed start from the same states and a learning curve is not evaluation noise.
_EVAL_SEED_BASE = 1_000_000
_EVAL_SEED_STRIDE = 1_000
_CONFIG_VERSION = 1


class DivergenceError(RuntimeError):
    """A run stopped because a loss or diagnostic became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the loop (the agent's own hyper-parameters live in its `Config`)."""

    # gradient updates per seed in the whole run
    steps: int = 1_000_000
    # transitions per update, drawn uniformly with replacement inside jit (divisible by the number of devices)
    batch_size: int = 256
    # updates per jitted call (one lax.scan); logging and the divergence check happen between calls
    updates_per_call: int = 1_000
    # evaluate every this many updates, and always at the end (0: only at the end)
    eval_every: int = 10_000
    # episodes per evaluation in Gymnasium (0: no evaluation at all, on any dataset)
    eval_episodes: int = 10
    # policy samples per evaluation on the built-in bandit
    eval_samples: int = 2_048
    # write a checkpoint every this many updates, and always at the end (0: only at the end)
    checkpoint_every: int = 50_000
    # train data-parallel over all local devices when there is more than one
    data_parallel: bool = True
    # show a tqdm progress bar (rate and ETA)
    progress: bool = True
    # print each evaluation as it happens
    verbose: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "updates_per_call", "eval_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("eval_every", "eval_episodes", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}.")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved as `config.json` in the run directory."""

    # agent name, one of rl.agents.AGENTS
    agent: str
    # dataset: a Minari id or path, or "bandit" for the built-in task
    dataset: str
    # training seeds, trained together (vmapped) in one process; each has its own RNG stream and logs
    seeds: tuple[int, ...] = (0,)
    # the agent's Config (None: its defaults)
    agent_config: Any = None
    # loop settings
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"Unknown agent {self.agent!r}; expected one of {', '.join(AGENTS)}.")
        seeds = tuple(self.seeds)
        if not seeds or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"seeds must be a non-empty sequence of integers, got {self.seeds!r}.")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds!r}.")
        if any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be >= 0, got {self.seeds!r}.")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        config_cls = get_agent(self.agent).Config
        if self.agent_config is None:
            object.__setattr__(self, "agent_config", config_cls())
        elif not isinstance(self.agent_config, config_cls):
            raise TypeError(
                f"agent_config must be an rl.agents.{self.agent}.Config, got {type(self.agent_config).__name__}."
            )
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {type(self.train).__name__}.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the content of `config.json`)."""
        return {
            "version": _CONFIG_VERSION,
            "agent": self.agent,
            "dataset": self.dataset,
            "seeds": list(self.seeds),
            "agent_config": config_to_dict(self.agent_config),
            "train": config_to_dict(self.train),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of `to_dict`; unknown or missing keys are errors."""
        expected = {"version", "agent", "dataset", "seeds", "agent_config", "train"}
        if set(data) != expected:
            raise ValueError(f"a run config needs exactly the keys {sorted(expected)}, got {sorted(data)}.")
        if data["version"] != _CONFIG_VERSION:
            raise ValueError(
                f"run config version {data['version']!r} is not {_CONFIG_VERSION} (made by another release)."
            )
        agent = data["agent"]
        if agent not in AGENTS:
            raise ValueError(f"Unknown agent {agent!r} in run config; expected one of {', '.join(AGENTS)}.")
        return cls(
            agent=agent,
            dataset=data["dataset"],
            seeds=tuple(data["seeds"]),
            agent_config=config_from_dict(get_agent(agent).Config, data["agent_config"]),
            train=config_from_dict(TrainConfig, data["train"]),
        )


@dataclass(frozen=True)
class TrainResult:
    """What `train` and `resume` return."""

    # the run directory
    run_dir: Path
    # the resolved run config
    config: RunConfig
    # updates done per seed
    step: int
    # the final agent states of all seeds, stacked along a leading seed axis (see `seed_state`)
    state: Any
    # per seed, the evaluations of this process: a list of {"step": ..., metric: value, ...}
    evals: dict[int, list[dict[str, float | int]]]
    # seconds of the first chunk (compilation included) and the mean per-update seconds of the others
    timings: dict[str, float]

    def final_eval(self, seed: int) -> dict[str, float | int] | None:
        """The last evaluation of `seed`, or None if there was none."""
        rows = self.evals.get(seed, [])
        return rows[-1] if rows else None


class Carry(eqx.Module):
    """What a chunk carries from update to update, for all seeds: agent states and RNG keys."""

    # the agent states, with a leading seed axis on every array
    agent: Any
    # one training PRNG key per seed, [seeds]
    key: Any


# ----------------------------------------------------------------------------- configs <-> JSON


def config_to_dict(config: Any) -> dict[str, Any]:
    """A frozen config dataclass as a JSON-ready dict (tuples become lists, nested dataclasses dicts)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}.")

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise TypeError(f"config value {value!r} of type {type(value).__name__} cannot be saved as JSON.")

    return plain(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build config dataclass `cls` from a dict (as read from JSON), coercing values to the fields' types.

    Args:
        cls: the config dataclass.
        data: field name -> value; missing fields keep their defaults.

    Raises:
        ValueError: an unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise TypeError(f"expected a dict for {cls.__name__}, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {', '.join(names)}.")
    kwargs = {name: coerce_value(value, hints[name], f"{cls.__name__}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def coerce_value(value: Any, tp: Any, where: str = "value") -> Any:
    """Convert a JSON value to type `tp` (int, float, bool, str, None, tuples, Literal, unions, dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce_value(value, arg, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{where}: {value!r} matches none of {tp} ({'; '.join(errors)}).")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}.")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, got {value!r}.")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [coerce_value(v, args[0], where) for v in value]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ValueError(f"{where} must have {len(args)} items, got {value!r}.")
            items = [coerce_value(v, a, where) for v, a in zip(value, args, strict=True)]
        else:
            items = [coerce_value(v, args[0], where) if args else v for v in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value)
    if tp is type(None):
        if value is not None:
            raise ValueError(f"{where} must be null, got {value!r}.")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be a boolean, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ValueError(f"{where} must be an integer, got {value!r}.")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}.")
        return value
    raise TypeError(f"{where}: fields of type {tp} are not supported in configs.")


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read `RUN_DIR/config.json`."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run directory made by rl.train.")
    with open(path) as f:
        return RunConfig.from_dict(json.load(f))


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- state, chunks, devices


def init_carry(
    agent: types.ModuleType, config: Any, seeds: Sequence[int], *, obs_dim: int, act_dim: int
) -> Carry:
    """Initialise every seed's agent state and training key, vmapped over seeds.

    Seed `s` starts from `jax.random.key(s)`, split into the agent's init key and the training stream, so a seed
    gets the same run whichever other seeds train beside it (up to floating-point reassociation under `vmap`).

    Each seed is initialised eagerly and the results are stacked: compiling an initialisation costs seconds, while
    its eager operations are compiled once per shape and shared by every seed and agent of the process.
    """
    carries = []
    for s in seeds:
        k_init, k_train = jax.random.split(jax.random.key(int(s)))
        carries.append(Carry(agent=agent.init(config, obs_dim=obs_dim, act_dim=act_dim, key=k_init), key=k_train))
    dynamic, static = eqx.partition(carries[0], eqx.is_array)
    leaves = [jax.tree.leaves(eqx.filter(c, eqx.is_array)) for c in carries]
    stacked = [jnp.stack(xs) for xs in zip(*leaves, strict=True)]
    return eqx.combine(jax.tree.unflatten(jax.tree.structure(dynamic), stacked), static)


def seed_state(state: Any, index: int) -> Any:
    """The agent state of the `index`-th seed of a stacked (vmapped) state."""
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, state)


def make_mesh(batch_size: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A one-axis (`"data"`) mesh over `devices` (default all), or None for a single device.

    Raises:
        ValueError: if `batch_size` does not split evenly over the devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the number of devices ({len(devices)}) for data-parallel "
            "training; change --train.batch_size or set --train.data_parallel=false."
        )
    return Mesh(np.asarray(devices), ("data",))


def _replicate(tree: Any, mesh: Mesh | None) -> Any:
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, tree)


@functools.lru_cache(maxsize=32)
def make_chunk_fn(
    agent: types.ModuleType, *, batch_size: int, mesh: Mesh | None = None
) -> Callable[[Carry, Transitions, int], tuple[Carry, dict[str, Array]]]:
    """The jitted chunk: `chunk(carry, data, length) -> (carry, infos)` runs `length` updates on every seed.

    Each update splits the seed's key into (next key, index key, update key), draws `batch_size` indices uniformly
    from the dataset, gathers the batch and calls `agent.update`. `infos` holds each diagnostic per seed and update,
    shape `[seeds, length]`. With a `mesh`, each batch is sharded over its `"data"` axis and the carry stays
    replicated; call it with a carry and data placed replicated on the mesh.

    One compiled program per distinct `length` (keep it fixed: `TrainConfig.updates_per_call`) and agent config;
    the function is cached, so later runs in the same process (same agent, batch size and mesh) reuse the programs.
    """
    batch_sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec("data"))
    replicated = None if mesh is None else NamedSharding(mesh, PartitionSpec())

    def run_seed(carry: Carry, step: Array, data: Transitions, length: int) -> tuple[Carry, dict[str, Array]]:
        # one step counter for all seeds, unbatched under `vmap`: a phase switch on it (`lax.cond`, as in QIPO's
        # warm-up) then runs only its taken branch, where a per-seed (batched) predicate would run both
        carry = eqx.tree_at(lambda c: c.agent.step, carry, step)
        n = data.reward.shape[0]
        dynamic, static = eqx.partition(carry, eqx.is_array)  # scan carries arrays only

        def body(dyn: Carry, _: None) -> tuple[Carry, dict[str, Array]]:
            c = eqx.combine(dyn, static)
            key, k_index, k_update = jax.random.split(c.key, 3)
            index = jax.random.randint(k_index, (batch_size,), 0, n)
            batch = jax.tree.map(lambda x: jnp.take(x, index, axis=0), data)
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            agent_state, info = agent.update(c.agent, batch, key=k_update)
            return eqx.filter(Carry(agent=agent_state, key=key), eqx.is_array), info

        dynamic, infos = jax.lax.scan(body, dynamic, None, length=length)
        return eqx.combine(dynamic, static), infos

    @eqx.filter_jit
    def chunk(carry: Carry, data: Transitions, length: int) -> tuple[Carry, dict[str, Array]]:
        # the seeds always train together, so they share one step (every agent state has one, see rl.agents.base;
        # `init_carry` stacks equal ones): take the first
        step = carry.agent.step[0]
        carry, infos = eqx.filter_vmap(run_seed, in_axes=(eqx.if_array(0), None, None, None))(
            carry, step, data, length
        )
        if replicated is not None:
            dynamic, static = eqx.partition(carry, eqx.is_array)
            dynamic = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, replicated), dynamic)
            carry = eqx.combine(dynamic, static)
        return carry, infos

    return chunk


# ----------------------------------------------------------------------------- checkpoints


def _checkpoint_tree(carry: Carry, step: int) -> dict[str, Any]:
    return {"agent": carry.agent, "key": jax.random.key_data(carry.key), "step": np.asarray(step, np.int64)}


def save_checkpoint(path: str | os.PathLike, carry: Carry, step: int) -> None:
    """Write the agent states, RNG keys and step atomically (a temporary file, then `os.replace`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        eqx.tree_serialise_leaves(f, _checkpoint_tree(jax.device_get(carry), step))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, like: Carry) -> tuple[Carry, int]:
    """Read a checkpoint written by `save_checkpoint` into the structure of `like` (arrays or shape structs).

    Returns:
        `(carry, step)`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    skeleton = {
        "agent": like.agent,
        "key": jax.eval_shape(jax.random.key_data, like.key),
        "step": np.asarray(0, np.int64),
    }
    try:
        tree = eqx.tree_deserialise_leaves(path, skeleton)
    except Exception as e:
        raise RuntimeError(
            f"could not read the checkpoint {path} into the state of this config ({e}); was it written by another "
            "agent or config?"
        ) from e
    carry = Carry(agent=tree["agent"], key=jax.random.wrap_key_data(tree["key"]))
    return carry, int(tree["step"])


# ----------------------------------------------------------------------------- logging


def _tensorboard_writer(log_dir: Path) -> Any | None:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(str(log_dir))


class _CsvLog:
    """Appends rows to a CSV file; the header is fixed by the first row (or by the existing file on resume)."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if r.get("step") and int(float(r["step"])) <= resume_step]
            if self.fields is not None:  # drop rows logged after the checkpoint we resume from
                with open(path, "w", newline="") as f:
                    writer = csv.DictWriter(f, self.fields)
                    writer.writeheader()
                    writer.writerows(rows)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        extra = [k for k in row if k not in self.fields]
        if extra:
            raise ValueError(f"{self.path}: new columns {extra} after the header {self.fields}.")
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)


class _SeedLog:
    def __init__(self, directory: Path, resume_step: int | None):
        directory.mkdir(parents=True, exist_ok=True)
        self.train = _CsvLog(directory / "train.csv", resume_step)
        self.eval = _CsvLog(directory / "eval.csv", resume_step)
        self.tb = _tensorboard_writer(directory / "tb")

    def log_train(self, row: dict[str, Any]) -> None:
        self.train.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def log_eval(self, row: dict[str, Any]) -> None:
        self.eval.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(f"eval/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- evaluation


class _Policy(eqx.Module):
    """`policy(key, obs) -> actions` for one seed's state (a pytree, so new parameters do not recompile)."""

    state: Any
    act: Callable = eqx.field(static=True)

    def __call__(self, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        return self.act(self.state, obs, key=key)


def _make_evaluator(
    dataset: OfflineDataset, train_cfg: TrainConfig
) -> Callable[[_Policy, int], dict[str, float]] | None:
    if train_cfg.eval_episodes == 0:
        return None
    if bandit.is_bandit(dataset):
        recipe = {k: v for k, v in dataset.recipe.items() if k != "builtin"}
        task = bandit.BanditTask(**recipe)

        def score_bandit(policy: _Policy, seed: int) -> dict[str, float]:
            key = jax.random.fold_in(jax.random.key(seed), _EVAL_SEED_BASE)
            out = bandit.evaluate_policy(policy, task, key=key, num_samples=train_cfg.eval_samples)
            return {"score": out["mean_reward"], **out}

        return score_bandit
    if dataset.env_id is None:
        warnings.warn(f"dataset {dataset.dataset_id} names no environment: the run is not evaluated.")
        return None
    from rl.evaluate import evaluate

    def score_env(policy: _Policy, seed: int) -> dict[str, float]:
        result = evaluate(
            policy,
            dataset.env_id,
            num_episodes=train_cfg.eval_episodes,
            seed=_EVAL_SEED_BASE + _EVAL_SEED_STRIDE * seed,
            obs_mean=dataset.obs_mean,
            obs_std=dataset.obs_std,
            ref_min_score=dataset.ref_min_score,
            ref_max_score=dataset.ref_max_score,
        )
        out = {"return_mean": result.mean, "return_std": result.std}
        if result.normalized_mean is not None:
            out["normalized_mean"] = result.normalized_mean
            out["normalized_std"] = result.normalized_std
        out["score"] = out.get("normalized_mean", result.mean)
        return out

    return score_env


# ----------------------------------------------------------------------------- the loop


def load_named_dataset(name: str) -> OfflineDataset:
    """The dataset a run names: the built-in bandit for `"bandit"`, else `rl.data.load_dataset(name)`."""
    if bandit.is_bandit(name):
        return bandit.make_dataset()
    from rl.data import load_dataset

    return load_dataset(name)


def _check_dataset(dataset: OfflineDataset) -> None:
    if not isinstance(dataset, OfflineDataset):
        raise TypeError(f"dataset must be an rl.data.OfflineDataset, got {type(dataset).__name__}.")
    if len(dataset) < 1:
        raise ValueError("the dataset is empty.")


def _first_nonfinite(infos: dict[str, np.ndarray]) -> tuple[int, int, dict[str, float]] | None:
    """`(seed index, update index, {name: value})` of the earliest update with a non-finite diagnostic, or None."""
    bad = {name: ~np.isfinite(values) for name, values in infos.items()}
    hits = [np.argwhere(b) for b in bad.values() if b.any()]
    if not hits:
        return None
    where = np.concatenate(hits)
    seed_idx, upd = where[np.lexsort((where[:, 0], where[:, 1]))[0]]
    values = {name: float(infos[name][seed_idx, upd]) for name, b in bad.items() if b[seed_idx, upd]}
    return int(seed_idx), int(upd), values


def _next_stop(step: int, total: int, every: int) -> int:
    return total if every == 0 else min(total, (step // every + 1) * every)


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    dataset: OfflineDataset | None = None,
) -> TrainResult:
    """Train `config.agent` on `config.dataset` for every seed of `config.seeds`, in one process.

    Args:
        config: the run (agent, dataset, seeds, agent config, loop config).
        run_dir: the run directory; it must not already hold a run (use `resume` for that).
        dataset: the dataset already loaded (else `config.dataset` is loaded; `"bandit"` is the built-in task).

    Returns:
        A `TrainResult` with the final states and the evaluations.

    Raises:
        DivergenceError: a diagnostic became NaN/inf; the last good state is in `RUN_DIR/checkpoint.eqx`.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}.")
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).exists() or (run_dir / CHECKPOINT_FILE).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; resume it (--resume {run_dir}) or choose another run directory."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    return _run(config, run_dir, dataset, resume=False)


def resume(
    run_dir: str | os.PathLike,
    *,
    steps: int | None = None,
    dataset: OfflineDataset | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Continue a run from its last checkpoint, with the same RNG streams (a resumed run equals an uninterrupted one).

    Args:
        run_dir: the run directory written by `train`.
        steps: a new total number of updates (to extend a finished run); default the saved one.
        dataset: the dataset already loaded (else the saved `dataset` id is loaded).
        progress: override the progress-bar setting.

    Returns:
        A `TrainResult`.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CHECKPOINT_FILE} to resume from (the run stopped before its first checkpoint)."
        )
    changes: dict[str, Any] = {}
    if steps is not None:
        changes["steps"] = steps
    if progress is not None:
        changes["progress"] = progress
    if changes:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
        _write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    return _run(config, run_dir, dataset, resume=True)


EVALUATIONS_FILE = "evaluations.jsonl"
"""Where `evaluate_run` appends its results in the run directory (one JSON object per call)."""


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    agent_config: Any | None = None,
    episodes: int | None = None,
    dataset: OfflineDataset | None = None,
    record: bool = True,
) -> tuple[int, dict[int, dict[str, Any]]]:
    """Evaluate every seed of a run's checkpoint again, optionally with other action-time settings.

    The episodes start from the same states as the run's own evaluations (the same evaluation seeds), so a change of
    setting (`best_of_n`, `sample_steps`, `solver`, ...) is compared on the same episodes.

    Args:
        run_dir: a run directory written by `train` (it needs its checkpoint).
        agent_config: the agent config to act with; default the run's own. Fields that shape the networks cannot
            change (the checkpoint would not fit them).
        episodes: episodes per seed; default the run's `eval_episodes`.
        dataset: the dataset already loaded (else the run's `dataset` is loaded).
        record: append the result to `RUN_DIR/evaluations.jsonl`.

    Returns:
        `(step, {seed: metrics})`: the checkpoint's step and each seed's evaluation metrics.

    Raises:
        FileNotFoundError: no run or no checkpoint in `run_dir`.
        TypeError: `agent_config` is not the run agent's `Config`.
        ValueError: `episodes` is not positive, or the config changes the shapes of the networks.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    agent = get_agent(config.agent)
    if agent_config is None:
        agent_config = config.agent_config
    elif type(agent_config) is not type(config.agent_config):
        raise TypeError(
            f"the run {run_dir} trained {config.agent}: expected a {type(config.agent_config).__module__}.Config, "
            f"got {type(agent_config).__module__}.{type(agent_config).__qualname__}"
        )
    episodes = config.train.eval_episodes if episodes is None else episodes
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT_FILE} to evaluate.")
    dataset = load_named_dataset(config.dataset) if dataset is None else dataset
    like = eqx.filter_eval_shape(
        init_carry, agent, agent_config, config.seeds, obs_dim=dataset.obs_dim, act_dim=dataset.act_dim
    )
    try:
        carry, step = load_checkpoint(run_dir / CHECKPOINT_FILE, like)
    except RuntimeError as e:
        saved = config_to_dict(config.agent_config)
        changed = {k: v for k, v in config_to_dict(agent_config).items() if saved[k] != v}
        raise ValueError(
            f"the run's checkpoint does not fit the agent config changed by {changed}: only settings that leave "
            "the networks' shapes alone (e.g. best_of_n, sample_steps, solver) can change at evaluation"
        ) from e
    evaluator = _make_evaluator(dataset, dataclasses.replace(config.train, eval_episodes=episodes))
    if evaluator is None:
        raise ValueError(f"the run's dataset {config.dataset!r} names no environment to evaluate in.")
    results = {
        s: evaluator(_Policy(seed_state(carry.agent, i), agent.act), s) for i, s in enumerate(config.seeds)
    }
    if record:
        entry = {
            "time": round(time.time(), 3),
            "step": step,
            "episodes": episodes,
            "agent_config": config_to_dict(agent_config),
            "results": {str(s): r for s, r in results.items()},
        }
        with open(run_dir / EVALUATIONS_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")
    return step, results


def _run(config: RunConfig, run_dir: Path, dataset: OfflineDataset | None, *, resume: bool) -> TrainResult:
    from tqdm.auto import tqdm

    tc = config.train
    agent = get_agent(config.agent)
    dataset = load_named_dataset(config.dataset) if dataset is None else dataset
    _check_dataset(dataset)
    mesh = make_mesh(tc.batch_size) if tc.data_parallel else None
    seeds = config.seeds
    ckpt_path = run_dir / CHECKPOINT_FILE

    data = _replicate(dataset.normalized_transitions(), mesh)
    if resume:
        like = eqx.filter_eval_shape(
            init_carry, agent, config.agent_config, seeds, obs_dim=dataset.obs_dim, act_dim=dataset.act_dim
        )
        carry, step = load_checkpoint(ckpt_path, like)
        if step > tc.steps:
            raise ValueError(f"the checkpoint is at step {step}, beyond steps={tc.steps}; pass a larger --steps.")
    else:
        carry = init_carry(agent, config.agent_config, seeds, obs_dim=dataset.obs_dim, act_dim=dataset.act_dim)
        step = 0
    carry = _replicate(carry, mesh)
    chunk = make_chunk_fn(agent, batch_size=tc.batch_size, mesh=mesh)
    evaluator = _make_evaluator(dataset, tc)
    logs = {s: _SeedLog(run_dir / f"seed_{s}", step if resume else None) for s in seeds}
    evals: dict[int, list[dict[str, float | int]]] = {s: [] for s in seeds}
    saved_step = step if resume else -1
    timings: dict[str, float] = {}
    chunk_times: list[tuple[float, int]] = []
    bar = tqdm(
        total=tc.steps,
        initial=step,
        unit="upd",
        unit_scale=True,
        desc=f"{config.agent} {'x'.join(map(str, seeds)) if len(seeds) <= 4 else f'{len(seeds)} seeds'}",
        disable=not tc.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def say(text: str) -> None:
        if not tc.verbose:
            return
        if tc.progress:
            tqdm.write(text)  # above the bar, without breaking it
        else:
            print(text, flush=True)

    def checkpoint(c: Carry, at: int) -> None:
        nonlocal saved_step
        if at != saved_step:
            save_checkpoint(ckpt_path, c, at)
            saved_step = at

    def evaluate_all(c: Carry, at: int) -> None:
        if evaluator is None:
            return
        for i, s in enumerate(seeds):
            metrics = evaluator(_Policy(seed_state(c.agent, i), agent.act), s)
            row = {"step": at, **metrics}
            logs[s].log_eval(row)
            evals[s].append(row)
            shown = {k: v for k, v in metrics.items() if k != "score"}  # "score" repeats the headline metric
            say(f"[{config.agent} seed {s}] step {at}: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))

    try:
        while step < tc.steps:
            stop = min(
                step + tc.updates_per_call,
                _next_stop(step, tc.steps, tc.eval_every),
                _next_stop(step, tc.steps, tc.checkpoint_every),
            )
            length = stop - step
            t0 = time.perf_counter()
            new_carry, infos = chunk(carry, data, length)
            infos = {k: np.asarray(v) for k, v in jax.device_get(infos).items()}
            elapsed = time.perf_counter() - t0
            if not timings:
                timings["first_call_s"] = elapsed
            else:
                chunk_times.append((elapsed, length))
            bad = _first_nonfinite(infos)
            if bad is not None:
                seed_idx, upd, values = bad
                checkpoint(carry, step)
                named = ", ".join(f"{k} = {v}" for k, v in values.items())
                raise DivergenceError(
                    f"training diverged at step {step + upd + 1} (seed {seeds[seed_idx]}): {named}. "
                    f"The last good state (step {saved_step}) is in {ckpt_path}; resume from it with a smaller "
                    "learning rate or another config."
                )
            carry, step = new_carry, stop
            for i, s in enumerate(seeds):
                row = {"step": step, "time": round(time.time(), 3), "updates_per_s": length / elapsed}
                row.update({k: float(np.mean(v[i])) for k, v in infos.items()})
                logs[s].log_train(row)
            bar.update(length)
            bar.set_postfix({k: f"{float(np.mean(v[0])):.3g}" for k, v in list(infos.items())[:3]}, refresh=False)
            if step == tc.steps or (tc.eval_every and step % tc.eval_every == 0):
                evaluate_all(carry, step)
            if step == tc.steps or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
                checkpoint(carry, step)
    except KeyboardInterrupt:
        checkpoint(carry, step)
        say(f"interrupted at step {step}; saved {ckpt_path} (continue with --resume {run_dir}).")
        raise
    finally:
        bar.close()
        for log in logs.values():
            log.close()
    if chunk_times:
        timings["seconds_per_update"] = sum(t for t, _ in chunk_times) / sum(n for _, n in chunk_times)
    return TrainResult(
        run_dir=run_dir,
        config=config,
        step=step,
        state=carry.agent,
        evals=evals,
        timings=timings,
    )

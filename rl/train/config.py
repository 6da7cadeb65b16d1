"""What defines a run: `RunConfig` (agent, dataset, seeds, and the agent's, loop's and data layer's configs) and
`TrainConfig` (the loop), saved as `config.json` in the run directory (through `rl.train.fields`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl.agents import AGENTS, get_agent
from rl.data import DataConfig

from .fields import config_from_dict, config_to_dict, convert_value, with_added
from .sweep import Member, members_of, parse_sweep

__all__ = [
    "CONFIG_FILE",
    "RunConfig",
    "TrainConfig",
    "load_run_config",
    "write_json_atomic",
]

CONFIG_FILE = "config.json"
_CONFIG_VERSION = 2  # 2: nested agent configs and the data section


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
    # episodes of the final evaluation in Gymnasium (>= eval_episodes, <= 1000); its first eval_episodes episodes are
    # the ones every periodic evaluation plays, so the learning curve's last point is part of it
    final_eval_episodes: int = 50
    # policy samples per evaluation on a built-in task
    eval_samples: int = 2_048
    # write a checkpoint every this many updates, and always at the end (0: only at the end)
    checkpoint_every: int = 50_000
    # use all local devices when there is more than one: the members split over them when their number is a multiple
    # of the device count, else every batch split over them (data parallel)
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
        final = self.final_eval_episodes
        if not isinstance(final, int) or isinstance(final, bool) or not max(1, self.eval_episodes) <= final <= 1000:
            raise ValueError(
                f"TrainConfig.final_eval_episodes must be an integer from eval_episodes ({self.eval_episodes}) to 1000 "
                f"(the final evaluation extends the periodic one), got {final!r}."
            )


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved as `config.json` in the run directory."""

    # agent name, one of rl.agents.AGENTS
    agent: str
    # dataset: a Minari id or path, or a built-in task ("bandit")
    dataset: str
    # training seeds, trained together (vmapped) in one process; each has its own RNG stream and logs
    seeds: tuple[int, ...] = (0,)
    # the agent's Config (None: its defaults)
    agent_config: Any = None
    # loop settings
    train: TrainConfig = field(default_factory=TrainConfig)
    # how the data layer prepares the dataset (reward transform)
    data: DataConfig = field(default_factory=DataConfig)
    # swept agent fields and their values, `(("beta", (1.0, 3.0)), ...)`: every combination times every seed is one
    # member, all trained together (see rl.train.sweep); empty: a plain run, one member per seed
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; expected one of {', '.join(AGENTS)}.")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}.")
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
        if not isinstance(self.data, DataConfig):
            raise TypeError(f"data must be an rl.data.DataConfig, got {type(self.data).__name__}.")
        if self.sweep:
            texts = [f"agent.{name}=" + ",".join(repr(float(v)) for v in values) for name, values in self.sweep]
            object.__setattr__(self, "sweep", parse_sweep(texts, self.agent_config))

    @property
    def members(self) -> list[Member]:
        """The independent runs this run trains together: every swept combination times every seed."""
        return members_of(self.agent_config, self.seeds, self.sweep)

    def member_run(self, member: Member) -> RunConfig:
        """The plain run (one seed, no sweep) that `member` is: what its summary and the ledger record."""
        return dataclasses.replace(self, seeds=(member.seed,), agent_config=member.config, sweep=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the content of `config.json`; `sweep` only when there is one)."""
        out = {
            "version": _CONFIG_VERSION,
            "agent": self.agent,
            "dataset": self.dataset,
            "seeds": list(self.seeds),
            "agent_config": config_to_dict(self.agent_config),
            "train": config_to_dict(self.train),
            "data": config_to_dict(self.data),
        }
        if self.sweep:
            out["sweep"] = {name: list(values) for name, values in self.sweep}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Inverse of `to_dict`; unknown or missing keys are errors (a `history` list is allowed and ignored). An agent
        config that lacks fields added since the run was made gets the values that reproduce it (its agent's `ADDED`),
        other missing fields their defaults."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a run config must be a JSON object, got {type(data).__name__}.")
        expected = {"version", "agent", "dataset", "seeds", "agent_config", "train", "data"}
        keys = set(data) - {"history", "sweep"}
        if data.get("version") != _CONFIG_VERSION:
            raise ValueError(
                f"run config version {data.get('version')!r} is not {_CONFIG_VERSION} (written by another release "
                "of rl; start a new run)."
            )
        if keys != expected:
            raise ValueError(f"a run config needs exactly the keys {sorted(expected)}, got {sorted(keys)}.")
        agent = data["agent"]
        if agent not in AGENTS:
            raise ValueError(f"unknown agent {agent!r} in run config; expected one of {', '.join(AGENTS)}.")
        module = get_agent(agent)
        return cls(
            agent=agent,
            dataset=convert_value(data["dataset"], str, "dataset"),
            seeds=convert_value(data["seeds"], tuple[int, ...], "seeds"),
            agent_config=config_from_dict(module.Config, with_added(data["agent_config"], module.ADDED)),
            train=config_from_dict(TrainConfig, data["train"]),
            data=config_from_dict(DataConfig, data["data"]),
            sweep=_sweep_from_json(data.get("sweep", {})),
        )


def _sweep_from_json(data: Any) -> tuple[tuple[str, tuple[float, ...]], ...]:
    if not isinstance(data, Mapping) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"sweep: expected an object of field -> list of numbers, got {data!r}.")
    return tuple((str(k), tuple(convert_value(x, float, f"sweep.{k}") for x in v)) for k, v in data.items())


# ----------------------------------------------------------------------------- files


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read `RUN_DIR/config.json`.

    Raises:
        FileNotFoundError: no run there.
        ValueError: the file is not valid JSON or not a run config (the message names the file).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run directory made by rl.train.")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the run's config is damaged.") from None
    try:
        return RunConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically (a temporary file, fsync, then `os.replace`)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


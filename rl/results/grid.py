"""The grid of the results page: datasets × agents × seeds at a budget, and the exact run behind each cell.

A cell is `(dataset, agent, steps, seed)`. Its run is `python -m rl.train` with the agent's `Config` defaults, the
grid's evaluation protocol, the per-dataset settings of `DATASET_SETTINGS` and any `--agent.`/`--train.`/`--data.`
overrides given to the grid; `Grid.config` builds that `RunConfig` and `Grid.command` the command line that makes it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rl.agents import AGENTS as ALL_AGENTS
from rl.agents import get_agent
from rl.data import DataConfig
from rl.train.config import RunConfig, TrainConfig
from rl.train.fields import apply_overrides

__all__ = [
    "AGENTS",
    "DATASET_SETTINGS",
    "ENVS",
    "ERAS",
    "FIRST_DEFAULTS",
    "FORMER_DEFAULTS",
    "KINDS",
    "SECOND_DEFAULTS",
    "SEEDS",
    "STEPS",
    "Era",
    "Grid",
    "dataset_id",
    "parse_overrides",
    "shown",
]

ENVS = ("halfcheetah", "hopper", "walker2d")
KINDS = ("medium", "medium-replay", "medium-expert")
"""D4RL's three locomotion kinds (`python -m rl.results datasets` makes them; medium-replay trains SAC first,
10-40 min per env on a CPU; docs/data.md)."""
AGENTS = ("iql", "flowq", "qipo")
SEEDS = (0, 1, 2)
STEPS = (100_000,)
# Minari namespace of the locally made datasets (`results/<env>/<kind>-v0`), apart from other local ones
NAMESPACE = "results"

FORMER_DEFAULTS: dict[str, dict[str, str]] = {
    "flowq": {"agent.weight_unit": "energy", "agent.beta": "3", "agent.policy.best_of_n": "1",
              "agent.policy.solver": "euler", "agent.min_ess": "none"},
    "iql": {"agent.policy.best_of_n": "1", "agent.min_ess": "none"},
    "qipo": {"agent.policy.best_of_n": "1"},
}
"""The defaults of version 0.1 where the study moved them (FlowQ's weights, beta and ODE solver, best-of-N acting), per
agent:
the results page shows the grid under them too (`Grid.agent_settings`), and the screens run under them keep their
runs (`rl.results.screens.Screen.baseline`)."""



@dataclass(frozen=True)
class Era:
    """Defaults the study has since moved, and the grid under them: the results page shows it apart, as a record."""

    # how the page names it ("the defaults of 0.1")
    name: str
    # the prefix of its figures' file names
    tag: str
    # per agent, the settings that were the defaults then (`Grid.agent_settings`)
    settings: Mapping[str, Mapping[str, str]]
    # what it stays on the page as
    record: str = "a record"


FIRST_DEFAULTS: dict[str, dict[str, str]] = {"flowq": {"agent.min_ess": "none"}, "iql": {"agent.min_ess": "none"}}
"""The study's first defaults where it has since moved them: FlowQ's and IQL's weights at temperature 3 whatever
their effective sample size, before the floor `min_ess=0.5` (docs/study.md, flowq-temperature)."""
SECOND_DEFAULTS: dict[str, dict[str, str]] = {"iql": {"agent.min_ess": "none"}}
"""The study's second defaults where it has since moved them: FlowQ with its floor, IQL still at the paper's weights,
before the baseline got the same floor (docs/study.md, iql-temperature-me and iql-floor-other)."""
ERAS: tuple[Era, ...] = (Era("the defaults of 0.1", "former", FORMER_DEFAULTS, "the record the study started from"),
                         Era("the study's first defaults", "first", FIRST_DEFAULTS,
                             "the grid before FlowQ's floor on its weights' effective sample size"),
                         Era("the study's second defaults", "second", SECOND_DEFAULTS,
                             "the grid with FlowQ's floor and IQL at the paper's weights, before the baseline got the "
                             "same floor"))
"""Every earlier set of defaults the grid ran under, oldest first."""

DATASET_SETTINGS: dict[str, dict[str, dict[str, str]]] = {}
"""Per-dataset settings, where the papers' practice has them: `{"<env>/<kind>": {agent: {"agent.beta": "3"}}}`.

The one place they are listed: `run` trains with them, `missing` and `report` expect them."""

_GROUPS = ("agent", "train", "data")
_OVERRIDE = re.compile(r"^--(agent|train|data)\.([A-Za-z_][A-Za-z0-9_.]*)=(.*)$", re.DOTALL)


def dataset_id(env: str, kind: str, namespace: str = NAMESPACE) -> str:
    """The Minari id of a grid dataset: `results/hopper/medium-v0`."""
    return f"{namespace}/{env}/{kind}-v0"


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """`["--agent.beta=3", "--train.batch_size=64"]` -> `{"agent.beta": "3", "train.batch_size": "64"}`."""
    out: dict[str, str] = {}
    for arg in args:
        match = _OVERRIDE.match(arg)
        if match is None:
            raise ValueError(f"unrecognised argument {arg!r} (grid settings are --agent.FIELD=VALUE, "
                             "--train.FIELD=VALUE or --data.FIELD=VALUE)")
        out[f"{match.group(1)}.{match.group(2)}"] = match.group(3)
    return out


def _grouped(overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {g: {} for g in _GROUPS}
    for key, value in overrides.items():
        group, _, name = key.partition(".")
        if group not in out or not name:
            raise ValueError(f"setting {key!r} must start with agent., train. or data.")
        out[group][name] = value
    return out


@dataclass(frozen=True)
class Grid:
    """Datasets × agents × seeds at one or more budgets, with one evaluation protocol."""

    # environments and dataset kinds: the datasets are `dataset_id(env, kind)` for every pair
    envs: tuple[str, ...] = ENVS
    kinds: tuple[str, ...] = KINDS
    # agents, seeds and budgets (updates per seed)
    agents: tuple[str, ...] = AGENTS
    seeds: tuple[int, ...] = SEEDS
    steps: tuple[int, ...] = STEPS
    # the evaluation protocol: periodic evaluations every eval_every updates on eval_episodes, final on more
    eval_every: int = 10_000
    eval_episodes: int = 10
    final_eval_episodes: int = 50
    # checkpoints (a run interrupted between sittings resumes from the last one)
    checkpoint_every: int = 10_000
    # namespace of the dataset ids
    namespace: str = NAMESPACE
    # settings for every run of the grid, dotted ("agent.beta" -> "3"), on top of DATASET_SETTINGS
    overrides: Mapping[str, str] = field(default_factory=dict)
    # settings per agent ({"flowq": {"agent.beta": "3"}}), between DATASET_SETTINGS and overrides (e.g. FORMER_DEFAULTS)
    agent_settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.agents) - set(ALL_AGENTS))
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; expected some of {', '.join(ALL_AGENTS)}.")
        if not (self.envs and self.kinds and self.agents and self.seeds and self.steps):
            raise ValueError("a grid needs at least one env, kind, agent, seed and budget.")
        _grouped(self.overrides)
        for agent, settings in self.agent_settings.items():
            if agent not in ALL_AGENTS:
                raise ValueError(f"agent_settings for unknown agent {agent!r}; expected some of "
                                 f"{', '.join(ALL_AGENTS)}.")
            _grouped(settings)

    def datasets(self) -> list[str]:
        """The grid's dataset ids, env-major."""
        return [dataset_id(env, kind, self.namespace) for env in self.envs for kind in self.kinds]

    def settings_for(self, dataset: str, agent: str) -> dict[str, str]:
        """The dotted settings of a cell: `DATASET_SETTINGS` of its dataset, the agent's `agent_settings`, then the
        grid's overrides."""
        key = dataset.removeprefix(f"{self.namespace}/").removesuffix("-v0")
        return {**DATASET_SETTINGS.get(key, {}).get(agent, {}), **self.agent_settings.get(agent, {}), **self.overrides}

    def config(self, dataset: str, agent: str, steps: int, seeds: Sequence[int]) -> RunConfig:
        """The `RunConfig` of a cell's run (what `python -m rl.train` resolves `command(...)` to)."""
        groups = _grouped(self.settings_for(dataset, agent))
        module = get_agent(agent)
        agent_config = apply_overrides(module.Config(), groups["agent"], prefix="agent", renamed=module.RENAMED)
        train = dataclasses.replace(
            TrainConfig(), steps=steps, eval_every=self.eval_every, eval_episodes=self.eval_episodes,
            final_eval_episodes=self.final_eval_episodes, checkpoint_every=self.checkpoint_every,
        )
        train = dataclasses.replace(apply_overrides(train, groups["train"], prefix="train"), progress=False)
        data = apply_overrides(DataConfig(), groups["data"], prefix="data")
        return RunConfig(agent=agent, dataset=dataset, seeds=tuple(seeds), agent_config=agent_config, train=train,
                         data=data)

    def options(self, *, steps: int | None = None) -> list[str]:
        """The `python -m rl.results` options that select this grid (defaults left out), at `steps` if given."""
        default, out = Grid(), []
        for name in ("envs", "kinds", "agents", "seeds", "steps", "eval_every", "eval_episodes", "final_eval_episodes",
                     "namespace"):
            value = (steps,) if name == "steps" and steps is not None else getattr(self, name)
            if value != getattr(default, name):
                text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                out += [f"--{name.replace('_', '-')}", text]
        return out + [f"--{k}={v}" for k, v in self.overrides.items()]

    def command(self, dataset: str, agent: str, steps: int, seeds: Sequence[int], run_dir: Path | str) -> list[str]:
        """The `python -m rl.train` command line of a cell's run."""
        cmd = [
            sys.executable, "-m", "rl.train", "--agent", agent, "--dataset", dataset,
            "--seeds", ",".join(str(s) for s in seeds), "--steps", str(steps), "--eval-every", str(self.eval_every),
            "--eval-episodes", str(self.eval_episodes), "--final-eval-episodes", str(self.final_eval_episodes),
            "--checkpoint-every", str(self.checkpoint_every), "--run-dir", str(run_dir), "--no-progress",
        ]
        return cmd + [f"--{k}={v}" for k, v in self.settings_for(dataset, agent).items()]


def shown(cmd: Sequence[str]) -> str:
    """A command line as a user types it (`python` for this interpreter)."""
    return shlex.join(cmd).replace(shlex.quote(sys.executable), "python", 1)

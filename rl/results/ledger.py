"""The results ledger: one run summary per file under `results/ledger/`, and which grid cells it covers.

An entry is a finished run's `summary.json` (`rl.train.summary`) copied verbatim, named
`<dataset>__<agent>__<hash>.json` with `hash` the first 10 hex digits of the sha256 of its *setting* and seeds. The
setting is the resolved config (agent, dataset, agent config, loop and data configs) without the fields that change how
a run executes but not what it computes (`EXECUTION_FIELDS`). An entry covers the cells `(dataset, agent, steps,
seed)` of its seeds for exactly that setting, as the run recorded it: when a default changes or a field is added to a
config, the runs made before stop counting (they are listed on the page as other runs). The exception are the fields
of `NEUTRAL_ADDITIONS` (each agent module's `ADDED`), options added later whose listed value reproduces exactly what
runs did before the option existed: a recorded config without one is read with that value, as `rl.train` reads a run
directory's, so adding such an option keeps the ledger.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.agents import AGENTS, get_agent
from rl.train.config import RunConfig, load_run_config
from rl.train.fields import with_added
from rl.train.summary import SUMMARY_FILE, SUMMARY_VERSION

from .grid import Grid

__all__ = [
    "EXECUTION_FIELDS",
    "LEDGER",
    "NEUTRAL_ADDITIONS",
    "Entry",
    "Missing",
    "add",
    "add_run",
    "budgets",
    "coverage",
    "earlier_setting_hashes",
    "entry_name",
    "load",
    "missing",
    "other_entries",
    "setting_hash",
]

LEDGER = Path("results") / "ledger"
# TrainConfig fields that change how a run executes, not what it computes (checkpoints, chunking, display, devices)
EXECUTION_FIELDS = ("checkpoint_every", "updates_per_call", "data_parallel", "progress", "verbose")


NEUTRAL_ADDITIONS: dict[str, dict[str, Any]] = {name: dict(get_agent(name).ADDED) for name in AGENTS}
"""Agent -> dotted agent-config field -> the value that reproduces the runs made before the field existed (the agent
modules' `ADDED`: plain sampling, the energy-unit weights, IQL's mean action; `temperature` is read only with
`weight_unit="q"`; no cap on FlowQ's weights; no uphill step; FlowQ's weights relative to V; IQL's draws at the fitted
standard deviation; FlowQ's weighted batch rather than one drawn by its weights, at its temperature whatever the
effective sample size, and IQL's weights likewise)."""


def _with_additions(agent: Any, agent_config: Any) -> Any:
    """The recorded agent config with the `NEUTRAL_ADDITIONS` it lacks filled in."""
    return with_added(agent_config, NEUTRAL_ADDITIONS.get(agent, {}))


def _setting(config: dict[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in config.get("train", {}).items() if k not in EXECUTION_FIELDS}
    agent_config = _with_additions(config.get("agent"), config.get("agent_config"))
    return {"agent": config.get("agent"), "dataset": config.get("dataset"), "agent_config": agent_config,
            "train": train, "data": config.get("data")}


def setting_hash(config: dict[str, Any] | RunConfig, *, seeds: bool = False) -> str:
    """10 hex digits of the sha256 of a config's setting (with its seeds when `seeds`)."""
    data = config.to_dict() if isinstance(config, RunConfig) else config
    setting = _setting(data)
    if seeds:
        setting["seeds"] = sorted(data["seeds"])
    return _digest(setting)


def _digest(setting: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:10]


def earlier_setting_hashes(config: dict[str, Any] | RunConfig, *, seeds: bool = False) -> set[str]:
    """`setting_hash(config)` and the hashes the same setting had before any of the `NEUTRAL_ADDITIONS` it holds at
    its neutral value existed (a hash recorded then, such as a re-evaluation's `base_setting` or a ledger file's
    name, still names it); with its seeds when `seeds`, as `setting_hash`."""
    data = config.to_dict() if isinstance(config, RunConfig) else config
    setting = _setting(data)
    if seeds:
        setting["seeds"] = sorted(data["seeds"])
    present = [name for name, value in NEUTRAL_ADDITIONS.get(setting["agent"], {}).items()
               if _lookup(setting["agent_config"], name) == (True, value)]
    out = set()
    for chosen in itertools.product((False, True), repeat=len(present)):
        trimmed = json.loads(json.dumps(setting))
        for name, drop in zip(present, chosen):
            if drop:
                *parents, leaf = name.split(".")
                node = trimmed["agent_config"]
                for part in parents:
                    node = node[part]
                del node[leaf]
        out.add(_digest(trimmed))
    return out


def _lookup(tree: Any, dotted: str) -> tuple[bool, Any]:
    """`(True, value)` of a dotted field of a nested dict, or `(False, None)` where it is absent."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "dataset"


@dataclass(frozen=True)
class Entry:
    """A ledger file and the run summary it holds."""

    path: Path
    summary: dict[str, Any]

    @property
    def agent(self) -> str:
        """The agent's name."""
        return self.summary["agent"]

    @property
    def dataset(self) -> str:
        """The dataset the run was given (its id for a grid run)."""
        return self.summary["config"]["dataset"]

    @property
    def steps(self) -> int:
        """Updates per seed."""
        return int(self.summary["budget"]["steps"])

    @property
    def seeds(self) -> tuple[int, ...]:
        """The run's training seeds."""
        return tuple(int(s) for s in self.summary["budget"]["seeds"])

    @property
    def setting(self) -> str:
        """The hash of the setting without seeds: entries with the same one are runs of the same cells."""
        return setting_hash(self.summary["config"])

    def final(self, seed: int) -> float | None:
        """The seed's final score (all final episodes), or None."""
        return self.summary["final"]["score"].get(str(seed))


def entry_name(summary: dict[str, Any], digest: str | None = None) -> str:
    """`<dataset>__<agent>__<hash>.json`, the hash over the setting and the seeds (or `digest`)."""
    digest = digest or setting_hash(summary["config"], seeds=True)
    return f"{_slug(summary['dataset']['id'])}__{summary['agent']}__{digest}.json"


def _check(summary: Any, where: str) -> dict[str, Any]:
    keys = ("summary_version", "agent", "dataset", "budget", "final", "last3", "curve", "config")
    if not isinstance(summary, dict) or any(k not in summary for k in keys):
        raise ValueError(f"{where} is not a run summary (it needs the keys {', '.join(keys)}).")
    if summary["summary_version"] != SUMMARY_VERSION:
        raise ValueError(f"{where}: summary version {summary['summary_version']!r}, this release reads "
                         f"{SUMMARY_VERSION}.")
    return summary


def _read(path: Path) -> dict[str, Any]:
    try:
        return _check(json.loads(path.read_text()), str(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None


def add(run_dir: str | Path, ledger: str | Path = LEDGER, *, replace: bool = False) -> tuple[Path, str]:
    """Copy `RUN_DIR/summary.json` into the ledger.

    An entry of the same setting and seeds counts wherever it is, under today's name or one the setting had before a
    field was added to its agent (`earlier_setting_hashes`), so that adding a run again never makes a second entry.

    Returns:
        The ledger file and what happened: `"added"`, `"unchanged"` (the same summary is there) or `"replaced"`.

    Raises:
        FileNotFoundError: the run has no summary (it has not finished: resume it).
        FileExistsError: another summary of the same setting and seeds is there (pass `replace=True`).
    """
    source = Path(run_dir) / SUMMARY_FILE
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: the run has not finished (continue it with "
                                f"python -m rl.train --resume {run_dir}).")
    text = source.read_text()
    summary = _read(source)
    ledger = Path(ledger)
    ledger.mkdir(parents=True, exist_ok=True)
    target = ledger / entry_name(summary)
    earlier = sorted(ledger / entry_name(summary, h) for h in earlier_setting_hashes(summary["config"], seeds=True))
    held = next((p for p in (target, *earlier) if p.is_file()), None)
    if held is not None:
        if held.read_text() == text:
            return held, "unchanged"
        if not replace:
            raise FileExistsError(f"{held} already holds a run of this setting and these seeds (finished "
                                  f"{_read(held).get('finished')}); pass --replace to put {run_dir}'s instead.")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    if held is not None and held != target:
        held.unlink()
    return target, "added" if held is None else "replaced"


def add_run(run_dir: str | Path, ledger: str | Path = LEDGER, *, replace: bool = False) -> list[tuple[Path, str]]:
    """Copy a finished run's summaries into the ledger: its `summary.json`, or in a sweep every member's.

    Returns:
        `(ledger file, what happened)` per summary (see `add`).

    Raises:
        FileNotFoundError: the run (or a member of the sweep) has not finished; nothing is added then.
        FileExistsError: as `add`.
    """
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        return [add(run_dir, ledger, replace=replace)]
    try:
        config = load_run_config(run_dir)
    except (FileNotFoundError, ValueError):
        config = None
    if config is None or not config.sweep:
        return [add(run_dir, ledger, replace=replace)]  # raises the message of a run that has not finished
    unfinished = [m.path for m in config.members if not (run_dir / m.path / SUMMARY_FILE).is_file()]
    if unfinished:
        raise FileNotFoundError(f"{run_dir} is a sweep whose members {', '.join(unfinished)} have not finished "
                                f"(continue it with python -m rl.train --resume {run_dir}).")
    return [add(run_dir / m.path, ledger, replace=replace) for m in config.members]


def load(ledger: str | Path = LEDGER) -> list[Entry]:
    """Every entry of the ledger, in file-name order (an empty list if there is no ledger)."""
    ledger = Path(ledger)
    if not ledger.is_dir():
        return []
    return [Entry(path, _read(path)) for path in sorted(ledger.glob("*.json"))]


def coverage(grid: Grid, entries: Iterable[Entry], steps: int) -> dict[tuple[str, str], dict[int, Entry]]:
    """For each `(dataset, agent)` of the grid at `steps`: `{seed: entry}` of the entries of the grid's setting.

    Only finished seeds count (with a final score); when two entries hold the same seed, the later one wins.
    """
    expected = {(d, a): setting_hash(grid.config(d, a, steps, grid.seeds)) for d in grid.datasets()
                for a in grid.agents}
    out: dict[tuple[str, str], dict[int, Entry]] = {key: {} for key in expected}
    for entry in sorted(entries, key=lambda e: e.summary.get("finished", "")):
        key = (entry.dataset, entry.agent)
        if key in expected and entry.steps == steps and entry.setting == expected[key]:
            for s in entry.seeds:
                if entry.final(s) is not None:
                    out[key][s] = entry
    return out


@dataclass(frozen=True)
class Missing:
    """Seeds of a `(dataset, agent)` that the ledger lacks at `steps`: one run of `rl.train` makes them."""

    dataset: str
    agent: str
    steps: int
    seeds: tuple[int, ...]

    def run_name(self, grid: Grid) -> str:
        """The run directory's name: dataset, agent, budget, setting hash and seeds."""
        digest = setting_hash(grid.config(self.dataset, self.agent, self.steps, self.seeds))
        seeds = "-".join(str(s) for s in self.seeds)
        name = self.dataset.split("/", 1)[-1].removesuffix("-v0")  # without the namespace
        return f"{_slug(name)}-{self.agent}-{self.steps}-{digest}-s{seeds}"


def missing(grid: Grid, entries: Sequence[Entry]) -> list[Missing]:
    """The grid's cells the ledger lacks, grouped per run (agent-major: the cheap baseline first)."""
    out = []
    for steps in grid.steps:
        covered = coverage(grid, entries, steps)
        for agent in grid.agents:
            for dataset in grid.datasets():
                seeds = tuple(s for s in grid.seeds if s not in covered[(dataset, agent)])
                if seeds:
                    out.append(Missing(dataset, agent, steps, seeds))
    return out


def other_entries(grid: Grid, entries: Sequence[Entry], budgets: Sequence[int]) -> list[Entry]:
    """The entries no grid cell at `budgets` uses (other settings, datasets, agents or budgets)."""
    used = {id(e) for steps in budgets for cell in coverage(grid, entries, steps).values() for e in cell.values()}
    return [e for e in entries if id(e) not in used]


def budgets(grid: Grid, entries: Sequence[Entry]) -> list[int]:
    """The grid's budgets and every other budget at which the ledger holds a run of a grid cell's setting."""
    found = set(grid.steps)
    cells = {(d, a) for d in grid.datasets() for a in grid.agents}
    for e in entries:
        if (e.dataset, e.agent) in cells and e.setting == setting_hash(grid.config(e.dataset, e.agent, e.steps,
                                                                                  grid.seeds)):
            found.add(e.steps)
    return sorted(found)

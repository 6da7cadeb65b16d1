"""The results page (`docs/results.md`) and its figures, built from the ledger alone.

Per budget: a table per dataset (final score over the final evaluation's episodes, mean ± std over seeds and each
seed's, and each seed's mean over its last three evaluations, with the protocol of every row), the aggregate IQM and
mean over seeds × datasets with stratified-bootstrap 95% intervals, performance profiles and learning curves with
interval bands (`rl.results.stats`), the runs behind each row, and the cells the ledger still lacks.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import figures, stats
from .grid import ERAS, Era, Grid, dataset_id
from .ledger import Entry, budgets, coverage, missing, other_entries

__all__ = ["Cell", "cells", "render", "short_name", "write_report"]

NAMES = {"iql": "IQL", "flowq": "FlowQ", "qipo": "QIPO"}
HISTORY = """## History

An earlier table (3 seeds, 50 000 updates, 10-episode evaluations) was dropped because its per-seed logs were not
kept, so its runs could not enter the ledger; it can be read in commit 549d758 (`git show 549d758:docs/results.md`).
"""
BUILTIN = """## The built-in task

The built-in task that `python -m rl.train` runs with no arguments, and its table, are described in
[Training](training.md).
"""


@dataclass(frozen=True)
class Cell:
    """What the ledger holds for one `(dataset, agent)` at one budget: one value per finished seed."""

    dataset: str
    agent: str
    steps: int
    # seed -> the ledger entry holding it
    entries: dict[int, Entry]

    @property
    def seeds(self) -> list[int]:
        """The finished seeds, in order."""
        return sorted(self.entries)

    def final(self) -> np.ndarray:
        """Each seed's final score (the mean over the final evaluation's episodes)."""
        return np.array([self.entries[s].final(s) for s in self.seeds], dtype=np.float64)

    def last3(self) -> np.ndarray:
        """Each seed's mean over its last three evaluations."""
        return np.array([self.entries[s].summary["last3"]["score"][str(s)] for s in self.seeds], dtype=np.float64)

    def curve(self, steps: Sequence[int]) -> np.ndarray:
        """`[seeds, len(steps)]`: each seed's learning curve at `steps`."""
        rows = []
        for s in self.seeds:
            curve = self.entries[s].summary["curve"]
            at = dict(zip(curve["steps"], curve["score"][str(s)], strict=True))
            rows.append([at[t] for t in steps])
        return np.array(rows, dtype=np.float64)

    def curve_steps(self) -> list[int]:
        """The evaluation steps every seed has."""
        common = None
        for s in self.seeds:
            found = set(self.entries[s].summary["curve"]["steps"])
            common = found if common is None else common & found
        return sorted(common or [])

    def protocol(self) -> str:
        """Budget, batch, seeds and episodes of the row (of its first entry; entries of one setting share them)."""
        b = next(iter(self.entries.values())).summary["budget"]
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''}"
        return (f"{_budget(b['steps'])} updates × batch {b['batch_size']}, {seeds}, eval every "
                f"{_budget(b['eval_every'])} on {b['eval_episodes']} episodes, final on {b['final_eval_episodes']}")


def cells(grid: Grid, entries: Sequence[Entry], steps: int) -> dict[tuple[str, str], Cell]:
    """The grid's `(dataset, agent)` cells at `steps` that hold at least one seed."""
    return {key: Cell(key[0], key[1], steps, found) for key, found in coverage(grid, entries, steps).items() if found}


def _budget(steps: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if steps >= size and steps % (size // 10) == 0:
            return f"{steps / size:g}{unit}"
    return str(steps)


def short_name(dataset: str) -> str:
    """A dataset's name as the tables print it: `results/hopper/medium-v0` -> `hopper-medium`."""
    parts = dataset.split("/")
    return f"{parts[-2]}-{parts[-1].removesuffix('-v0')}" if len(parts) >= 2 else dataset


def _ms(x: np.ndarray) -> str:
    return f"{x.mean():.1f} ± {x.std():.1f}" if len(x) > 1 else f"{x.mean():.1f}"


def _behaviour(entries: Sequence[Entry], dataset: str) -> float | None:
    for e in entries:
        if e.dataset == dataset and e.summary["dataset"].get("normalized_return_mean") is not None:
            return e.summary["dataset"]["normalized_return_mean"]
    return None


def _complete(grid: Grid, found: dict[tuple[str, str], Cell]) -> list[str]:
    return [d for d in grid.datasets() if all((d, a) in found for a in grid.agents)]


def _matrices(grid: Grid, found: dict[tuple[str, str], Cell], datasets: list[str],
              agents: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """agent -> `[seeds, datasets]` final scores, over the seeds every one of `datasets` has for that agent (all the
    grid's agents unless `agents` names some)."""
    out = {}
    for a in grid.agents if agents is None else agents:
        seeds = sorted(set.intersection(*(set(found[(d, a)].seeds) for d in datasets)))
        if seeds:
            out[NAMES.get(a, a)] = np.array([[found[(d, a)].entries[s].final(s) for d in datasets] for s in seeds])
    return out


def _section(grid: Grid, entries: Sequence[Entry], steps: int, img: Path, link: str, reps: int, *,
             era: Era | None = None) -> list[str]:
    """One budget's tables and figures; `era`, the earlier defaults of a grid that is not today's (its figures get its
    tag as a prefix, and no "Missing" list: only today's grid is to be completed)."""
    found = cells(grid, entries, steps)
    lines = [f"## {_budget(steps)} updates per seed" + (f", {era.name}" if era else ""), ""]
    if not found:
        return lines + ["The ledger holds no run of this grid at this budget yet.", ""] + _missing(grid, entries, steps)
    lines += ["| dataset | behaviour data | " + " | ".join(NAMES.get(a, a) for a in grid.agents) + " |",
              "|---|---|" + "---|" * len(grid.agents)]
    for d in grid.datasets():
        data = _behaviour(entries, d)
        row = [_ms(found[(d, a)].final()) if (d, a) in found else "—" for a in grid.agents]
        lines.append(f"| {short_name(d)} | {'—' if data is None else f'{data:.1f}'} | " + " | ".join(row) + " |")
    lines += ["", "Final score: the mean normalised return over the final evaluation's episodes; mean ± standard "
              "deviation (ddof 0) over seeds. Each dataset's rows, with every seed and the protocol:", ""]
    for d in grid.datasets():
        rows = [found[(d, a)] for a in grid.agents if (d, a) in found]
        if not rows:
            continue
        lines += [f"**{short_name(d)}** (`{d}`)", "",
                  "| agent | final score | per seed | last three evaluations | protocol |", "|---|---|---|---|---|"]
        for c in rows:
            per_seed = ", ".join(f"{x:.1f}" for x in c.final())
            lines.append(f"| {NAMES.get(c.agent, c.agent)} | {_ms(c.final())} | {per_seed} | {_ms(c.last3())} | "
                         f"{c.protocol()} |")
        lines.append("")
    datasets = _complete(grid, found)
    if datasets:
        scores = _matrices(grid, found, datasets)
        agg = stats.aggregates(scores, reps=reps)
        runs = {k: v.size for k, v in scores.items()}
        over = f"{len(datasets)} dataset{'s' * (len(datasets) != 1)} ({', '.join(short_name(d) for d in datasets)})"
        lines += ["### Aggregate", "", f"Over {over} × "
                  "seeds; 95% stratified-bootstrap confidence intervals (seeds resampled within each dataset, "
                  f"{reps} resamples):", "", "| agent | IQM | mean | runs |", "|---|---|---|---|"]
        for name, a in agg.items():
            lines.append(f"| {name} | {a['IQM'].point:.1f} [{a['IQM'].low:.1f}, {a['IQM'].high:.1f}] | "
                         f"{a['mean'].point:.1f} [{a['mean'].low:.1f}, {a['mean'].high:.1f}] | {runs[name]} |")
        tag = _tag(steps, era)
        figures.aggregate(agg, img / f"{tag}-aggregate.png")
        figures.profiles(scores, img / f"{tag}-profiles.png", reps=min(reps, 2_000))
        lines += ["", f"![aggregate IQM and mean]({link}/{tag}-aggregate.png)", "",
                  f"![performance profiles]({link}/{tag}-profiles.png)", "",
                  "Performance profiles: the fraction of runs (seeds × datasets) whose final score exceeds each "
                  "threshold, with 95% intervals.", ""]
    lines += _head_to_head(grid, found, reps)
    tag = _tag(steps, era)
    if figures.curves(grid, found, img / f"{tag}-curves.png", reps=min(reps, 2_000), names=NAMES):
        lines += [f"![learning curves]({link}/{tag}-curves.png)", "",
                  "Learning curves: each evaluation's score (its periodic episodes) per dataset, mean over seeds with "
                  "a 95% bootstrap band; the last panel: the IQM over seeds × complete datasets, stratified band.",
                  ""]
    return lines + _runs_table(found) + ([] if era else _missing(grid, entries, steps))


def _head_to_head(grid: Grid, found: dict[tuple[str, str], Cell], reps: int) -> list[str]:
    """Each later agent against each earlier one (FlowQ and QIPO against IQL, QIPO against FlowQ) over every dataset
    the two share, so that a pair is compared on more than the datasets that all agents have while the grid fills."""
    rows = []
    for i, first in enumerate(grid.agents):
        for second in grid.agents[i + 1:]:
            shared = [d for d in grid.datasets() if (d, first) in found and (d, second) in found]
            if not shared:
                continue
            m = _matrices(grid, found, shared, (first, second))
            if len(m) < 2:  # one of them has no seed that every shared dataset has
                continue
            a, b = NAMES.get(first, first), NAMES.get(second, second)
            diff = stats.iqm_difference(m[b], m[a], reps=reps)
            agg = {k: float(stats.iqm(v)) for k, v in m.items()}
            rows.append(f"| {b} vs {a} | {len(shared)} | {agg[b]:.1f} | {agg[a]:.1f} | {float(diff.point):+.1f} "
                        f"[{float(diff.low):+.1f}, {float(diff.high):+.1f}] | {m[b].size}, {m[a].size} |")
    if not rows:
        return []
    return ["### Head to head", "",
            "Each pair of agents over every dataset both have (seeds every one of them has): the IQM of each, and "
            "the difference with a 95% interval of a stratified bootstrap that redraws the two agents' runs "
            f"independently ({reps} resamples). An interval that excludes 0 is a difference beyond seed noise.", "",
            "| A vs B | datasets | IQM of A | IQM of B | A − B | runs of A, B |", "|---|---|---|---|---|---|",
            *rows, ""]


def _tag(steps: int, era: Era | None) -> str:
    return f"results-{f'{era.tag}-' if era else ''}{_budget(steps)}"


def _runs_table(found: dict[tuple[str, str], Cell]) -> list[str]:
    lines = ["### Runs", "", "| dataset | agent | seeds | wall time (min) | machine | code | ledger file |",
             "|---|---|---|---|---|---|---|"]
    for c in found.values():
        for e in {id(e): e for e in c.entries.values()}.values():
            m = e.summary.get("machine", {})
            machine = f"{m.get('device_kind', '?')}, {m.get('cpu_count', '?')} CPUs"
            lines.append(f"| {short_name(c.dataset)} | {NAMES.get(c.agent, c.agent)} | "
                         f"{', '.join(map(str, e.seeds))} | {e.summary.get('wall_time_s', 0) / 60:.0f} | {machine} | "
                         f"{e.summary.get('code_version')} | `{e.path.name}` |")
    return lines + [""]


def _missing(grid: Grid, entries: Sequence[Entry], steps: int) -> list[str]:
    gaps = missing(dataclasses.replace(grid, steps=(steps,)), entries)
    if not gaps:
        return ["Every cell of the grid at this budget is in the ledger.", ""]
    command = shlex.join(["python", "-m", "rl.results", "run", *grid.options(steps=steps)])
    lines = ["### Missing", "", f"Cells of the grid the ledger lacks at this budget (`{command}` runs them, one run "
             "per line below, and adds each to the ledger):", ""]
    lines += [f"- {short_name(m.dataset)} × {NAMES.get(m.agent, m.agent)}: seeds {', '.join(map(str, m.seeds))}"
              for m in gaps]
    return lines + [""]


def _others(rest: Sequence[Entry]) -> list[str]:
    if not rest:
        return []
    lines = ["## Other runs in the ledger", "", "Runs of other settings, datasets or budgets than the grid's (each "
             "seed's final score):", "", "| ledger file | dataset | agent | updates | final score | setting |",
             "|---|---|---|---|---|---|"]
    for e in rest:
        finals = ", ".join(f"{x:.1f}" for x in (e.final(s) for s in e.seeds) if x is not None)
        lines.append(f"| `{e.path.name}` | {short_name(e.dataset)} | {NAMES.get(e.agent, e.agent)} | "
                     f"{_budget(e.steps)} | {finals} | {e.setting} |")
    return lines + [""]


def _recipes(grid: Grid, entries: Sequence[Entry]) -> list[str]:
    lines = ["## Datasets", "", "Our Gymnasium-v5 versions of D4RL's recipes, made by `python -m rl.results datasets` "
             "(the command each recipe recorded below); compare orderings and margins with published D4RL numbers, "
             "never the values themselves.", "",
             "| dataset | recipe | transitions | behaviour data | fingerprint |", "|---|---|---|---|---|"]
    for d in grid.datasets():
        seen = [e.summary["dataset"] for e in entries if e.dataset == d]
        if not seen:
            lines.append(f"| `{d}` | — | — | — | no run yet |")
            continue
        fps = sorted({x["fingerprint"] for x in seen})
        fp = ", ".join(f"`{f.removeprefix('sha256:')[:12]}`" for f in fps)
        if len(fps) > 1:
            fp += " (runs on different data!)"
        x = seen[0]
        behaviour = x.get("normalized_return_mean")
        lines.append(f"| `{d}` | `{x.get('recipe', {}).get('command', '?')}` | {x['transitions']} | "
                     f"{'—' if behaviour is None else f'{behaviour:.1f}'} | {fp} |")
    return lines + [""]


def render(grid: Grid, entries: Sequence[Entry], img: Path, *, link: str = "img", reps: int = 20_000) -> str:
    """The page's markdown (and its figures, written under `img` and linked as `link/NAME.png`), from the ledger."""
    shown = budgets(grid, entries)
    protocol = (f"seeds {', '.join(map(str, grid.seeds))}, each evaluated every {_budget(grid.eval_every)} updates on "
                f"{grid.eval_episodes} episodes (the learning curve) and at the end on {grid.final_eval_episodes} "
                f"(the final score; its first {grid.eval_episodes} episodes are the curve's last point)")
    lines = ["# Results", "",
             "*This page is written by `python -m rl.results report` from the ledger in `results/ledger/` alone "
             f"({len(entries)} run summaries); `python -m rl.results missing` lists what it lacks.*", "",
             f"The grid: {', '.join(short_name(d) for d in grid.datasets())} × "
             f"{', '.join(NAMES.get(a, a) for a in grid.agents)}; {protocol}. Scores are D4RL-normalised returns "
             "(0 = random policy, 100 = expert). Every agent runs at its `Config` defaults with the per-dataset "
             f"settings of `rl.results.grid.DATASET_SETTINGS`{_overrides(grid)} and IQL's reward scaling "
             "(`--data.reward=auto`); a ledger entry counts for a cell only if its whole setting is that one. What "
             "the agents' settings and the way they choose actions do, screened on short runs and on these runs' "
             "checkpoints, is on the [Study](study.md) page.", ""]
    for steps in shown:
        lines += _section(grid, entries, steps, img, link, reps)
    others = {id(e) for e in other_entries(grid, entries, shown)}
    for era in ERAS:
        era_lines, used = _era(grid, era, entries, img, link, reps)
        lines += era_lines
        others -= used
    rest = [e for e in entries if id(e) in others]
    lines += _others(rest) + _recipes(grid, entries) + [BUILTIN.strip(), "", HISTORY.strip(), ""]
    return "\n".join(lines)


def _era(grid: Grid, era: Era, entries: Sequence[Entry], img: Path, link: str,
         reps: int) -> tuple[list[str], set[int]]:
    """The grid under an earlier era's defaults, on the kinds it has runs of (a record, not a grid to complete), and
    the ids of the entries it shows."""
    former = dataclasses.replace(grid, agent_settings=era.settings)
    former_shown = [steps for steps in budgets(former, entries) if cells(former, entries, steps)]
    if not former_shown:
        return [], set()
    ran = {d for steps in former_shown for d, _ in cells(former, entries, steps)}
    former = dataclasses.replace(former, kinds=tuple(
        k for k in grid.kinds if any(dataset_id(env, k, grid.namespace) in ran for env in grid.envs)))
    settings = "; ".join(f"{NAMES.get(a, a)}: " + " ".join(f"`--{k}={v}`" for k, v in o.items())
                         for a, o in era.settings.items() if a in grid.agents)
    lines = [f"The grid under {era.name} follows: its runs were made before the study moved the defaults "
             f"({settings}), and it stays here as {era.record}.", ""]
    for steps in former_shown:
        lines += _section(former, entries, steps, img, link, reps, era=era)
    unused = {id(e) for e in other_entries(former, entries, former_shown)}
    return lines, {id(e) for e in entries} - unused


def _overrides(grid: Grid) -> str:
    return "" if not grid.overrides else ", then " + " ".join(f"`--{k}={v}`" for k, v in grid.overrides.items())


def write_report(grid: Grid, entries: Sequence[Entry], page: Path, img: Path, *, reps: int = 20_000) -> None:
    """Write the page and its figures."""
    img.mkdir(parents=True, exist_ok=True)
    link = Path(os.path.relpath(img, page.parent)).as_posix()
    text = render(grid, entries, img, link=link, reps=reps)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)

"""The results grid's head to head with IQL acting either way: by best-of-8 (its default) and by its mean.

Every agent of the grid acts by best-of-8 by `min_i Q_i` (`policy.best_of_n=8`). For IQL's Gaussian that choice is
the study's least settled one: against the mean it gains on the medium and medium-replay datasets and loses on
halfcheetah-medium-expert (docs/study.md, `iql-act`, `iql-act-kinds`). So that the flows are not held against a
baseline handicapped by how it acts, this prints the aggregate over the grid's datasets with IQL's scores taken
three ways, all on the same checkpoints (IQL's acting does not enter its training):

- best-of-8: the grid's cells (`docs/results.md`);
- mean: its mean action, re-evaluated on the same 50 final episodes: the `min_ess=0.5, plain` re-evaluations of
  the `iql-temperature-me` and `iql-floor-other` screens, whose `min_ess=0.5` runs are the grid's IQL cells
  (`results/study/`);
- the better of the two on each dataset by its mean over seeds, chosen on these very scores: a bar generous to the
  baseline (its IQM can still fall below best-of-8's, since the IQM pools seeds across datasets).

It prints a per-dataset table of the three agents' mean final scores, then, over the datasets every column has,
each IQM with a 95% stratified-bootstrap interval and FlowQ's and QIPO's differences against each IQL (rliable's
independent bootstrap, seeds resampled within each dataset). Only what is committed is read: the ledger and the
study's re-evaluation results.

`--iql paper` takes IQL at the paper's weights instead (the study's second defaults, before IQL got FlowQ's floor):
best-of-8 from that era's grid, the mean from the grid under the defaults of 0.1 on the medium datasets
(`best_of_n=1`, otherwise that training) and from the `iql-act-kinds` screen's `plain` re-evaluations elsewhere.

    python scripts/acting_aggregate.py
    python scripts/acting_aggregate.py --iql paper
    python scripts/acting_aggregate.py --kinds medium medium-expert --reps 2000
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from rl.results import ledger, stats
from rl.results.grid import FORMER_DEFAULTS, KINDS, SECOND_DEFAULTS, Grid
from rl.results.report import cells, short_name
from rl.results.study import load_results

MEAN_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "defaults": (("iql-temperature-me", "min_ess=0.5, plain"), ("iql-floor-other", "min_ess=0.5, plain")),
    "paper": (("iql-act-kinds", "plain"),),
}
"""Per IQL setting, the (screen, variant) re-evaluations of its grid runs by the mean action."""


def grid_scores(grid: Grid, entries: list, agent: str, steps: int) -> dict[str, dict[int, float]]:
    """dataset -> seed -> final score of the grid's `agent` cells at `steps`."""
    found = cells(grid, entries, steps)
    return {d: {s: cell.entries[s].final(s) for s in cell.seeds} for (d, a), cell in found.items() if a == agent}


def iql_mean_scores(grid: Grid, entries: list, steps: int, study_dir: Path,
                    iql: str = "defaults") -> dict[str, dict[int, float]]:
    """dataset -> seed -> IQL's final score acting by its mean (see the module's docstring for the sources)."""
    out = {}
    if iql == "paper":
        former = dataclasses.replace(grid, agent_settings={"iql": FORMER_DEFAULTS["iql"]})
        out = {d: seeds for d, seeds in grid_scores(former, entries, "iql", steps).items() if d.endswith("/medium-v0")}
    for (screen, variant, dataset), result in load_results(study_dir).items():
        if (screen, variant) in MEAN_SOURCES[iql] and dataset in grid.datasets() and dataset not in out:
            if result["step"] == steps:
                out[dataset] = {int(s): float(v["score"]) for s, v in result["seeds"].items()}
    return out


def matrix(scores: dict[str, dict[int, float]], datasets: list[str], seeds: list[int]) -> np.ndarray:
    """`[seeds, datasets]` of the given seeds on the given datasets."""
    return np.array([[scores[d][s] for d in datasets] for s in seeds], dtype=np.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ledger", type=Path, default=ledger.LEDGER, help="the ledger directory")
    parser.add_argument("--study", type=Path, default=Path("results/study"), help="the study's re-evaluations")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), help="dataset kinds to aggregate over")
    parser.add_argument("--steps", type=int, default=100_000, help="the grid's budget")
    parser.add_argument("--reps", type=int, default=20_000, help="bootstrap resamples")
    parser.add_argument("--iql", choices=tuple(MEAN_SOURCES), default="defaults",
                        help="IQL at today's defaults (with FlowQ's floor) or at the paper's weights")
    args = parser.parse_args(argv)

    grid = Grid(kinds=tuple(args.kinds))
    iql_grid = dataclasses.replace(grid, agent_settings=SECOND_DEFAULTS) if args.iql == "paper" else grid
    entries = ledger.load(args.ledger)
    columns = {"IQL, best-of-8": grid_scores(iql_grid, entries, "iql", args.steps),
               "IQL, mean": iql_mean_scores(grid, entries, args.steps, args.study, args.iql)}
    better = {}
    for d in set(columns["IQL, best-of-8"]) & set(columns["IQL, mean"]):
        pick = max(columns, key=lambda c: np.mean(list(columns[c][d].values())))
        better[d] = columns[pick][d]
    columns["IQL, the better per dataset"] = better
    columns |= {"FlowQ": grid_scores(grid, entries, "flowq", args.steps),
                "QIPO": grid_scores(grid, entries, "qipo", args.steps)}

    print(f"| dataset | {' | '.join(columns)} |")
    print("|---" * (len(columns) + 1) + "|")
    for d in grid.datasets():
        row = [f"{np.mean(list(c[d].values())):.1f}" if d in c else "–" for c in columns.values()]
        print(f"| {short_name(d)} | {' | '.join(row)} |")
    print()

    for flow in ("FlowQ", "QIPO"):
        shared = [d for d in grid.datasets() if all(d in columns[c] for c in (flow, *list(columns)[:3]))]
        if not shared:
            print(f"{flow}: no dataset where it and every IQL column have scores.")
            continue
        print(f"{flow} over {len(shared)} datasets ({', '.join(short_name(d) for d in shared)}):")
        m = {}
        for name in (*list(columns)[:3], flow):
            seeds = sorted(set.intersection(*(set(columns[name][d]) for d in shared)))
            m[name] = matrix(columns[name], shared, seeds)
        agg = stats.aggregates(m, reps=args.reps)
        for name, x in m.items():
            iqm = agg[name]["IQM"]
            print(f"  IQM {name:<30} {float(iqm.point):6.1f} [{float(iqm.low):.1f}, {float(iqm.high):.1f}]"
                  f"  ({x.shape[0]} seeds)")
        for name in list(columns)[:3]:
            diff = stats.iqm_difference(m[flow], m[name], reps=args.reps)
            print(f"  {flow} − {name:<30} {float(diff.point):+6.1f} [{float(diff.low):+.1f}, {float(diff.high):+.1f}]")
        print()


if __name__ == "__main__":
    main()

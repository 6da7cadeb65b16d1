"""Are the grid's agents still learning at its budget? The rise of each cell's periodic evaluations late in training.

The flows fit the medium-expert datasets more slowly than IQL's Gaussian regression (docs/study.md), so a longer
budget would favour them if their scores were still climbing when IQL's had levelled off. This reads the results
grid's cells at today's defaults from the ledger and prints, per dataset and agent, the mean over seeds of the
periodic evaluation scores (10 episodes each, as the runs act) in an early window and a late one, and the rise
between them; then each agent's mean rise over the datasets it has. Only the committed ledger is read.

    python scripts/late_gain.py
    python scripts/late_gain.py --early 20000 30000 40000 --late 80000 90000 100000
"""

import argparse

import numpy as np

from rl.results import ledger
from rl.results.grid import AGENTS, Grid
from rl.results.report import cells, short_name


def window_means(entry: ledger.Entry, seed: int, windows: tuple[tuple[int, ...], ...]) -> list[float]:
    """The seed's mean periodic score over each window of evaluation steps."""
    curve = entry.summary["curve"]
    at = dict(zip(curve["steps"], curve["score"][str(seed)], strict=True))
    lacking = sorted({step for window in windows for step in window} - set(at))
    if lacking:
        raise ValueError(f"{entry.path.name} has no periodic evaluation at step(s) {lacking} (it has {sorted(at)})")
    return [float(np.mean([at[step] for step in window])) for window in windows]


def late_gains(grid: Grid, entries: list, steps: int, early: tuple[int, ...],
               late: tuple[int, ...]) -> dict[str, dict[str, tuple[float, float]]]:
    """dataset -> agent -> (early mean, late mean), each over the cell's seeds."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for (dataset, agent), cell in sorted(cells(grid, entries, steps).items()):
        per_seed = np.array([window_means(cell.entries[s], s, (early, late)) for s in cell.seeds])
        out.setdefault(dataset, {})[agent] = (float(per_seed[:, 0].mean()), float(per_seed[:, 1].mean()))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", default=str(ledger.LEDGER))
    parser.add_argument("--steps", type=int, default=Grid().steps[0], help="the cells' budget (default: the grid's)")
    parser.add_argument("--early", type=int, nargs="+", default=[40_000, 50_000, 60_000],
                        help="evaluation steps of the early window")
    parser.add_argument("--late", type=int, nargs="+", default=[80_000, 90_000, 100_000],
                        help="evaluation steps of the late window")
    args = parser.parse_args(argv)
    grid = Grid()
    gains = late_gains(grid, ledger.load(args.ledger), args.steps, tuple(args.early), tuple(args.late))
    if not gains:
        raise SystemExit(f"no grid cells at {args.steps} updates in {args.ledger}")
    agents = [a for a in AGENTS if any(a in row for row in gains.values())]
    window = f"{args.early[0] // 1000}-{args.early[-1] // 1000}k -> {args.late[0] // 1000}-{args.late[-1] // 1000}k"
    print(f"mean periodic score over seeds, {window} updates (the rise in brackets)\n")
    print("| dataset | " + " | ".join(agents) + " |")
    print("|---|" + "---|" * len(agents))
    for dataset, row in gains.items():
        shown = [f"{row[a][0]:.1f} -> {row[a][1]:.1f} ({row[a][1] - row[a][0]:+.1f})" if a in row else "" for a in agents]
        print(f"| {short_name(dataset)} | " + " | ".join(shown) + " |")
    print()
    for agent in agents:
        rises = [row[agent][1] - row[agent][0] for row in gains.values() if agent in row]
        print(f"{agent}: mean rise {np.mean(rises):+.1f} over {len(rises)} datasets")


if __name__ == "__main__":
    main()

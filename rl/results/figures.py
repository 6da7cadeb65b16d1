"""The results page's figures (PNG, small): aggregate intervals, performance profiles, learning curves with bands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import stats

__all__ = ["aggregate", "curves", "profiles"]

_DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, metadata={"Software": None})  # no version stamp: the same ledger gives the same bytes
    _pyplot().close(fig)


def aggregate(agg: Mapping[str, Mapping[str, stats.Interval]], path: Path) -> None:
    """IQM and mean of each method as a point with its 95% interval."""
    plt = _pyplot()
    names = list(agg)
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 0.5 + 0.45 * len(names)), sharey=True)
    for ax, label in zip(axes, ("IQM", "mean"), strict=True):
        for i, name in enumerate(names):
            e = agg[name][label]
            ax.plot([e.low, e.high], [i, i], lw=6, alpha=0.35, color=f"C{i}", solid_capstyle="butt")
            ax.plot([e.point], [i], "|", ms=14, mew=2, color=f"C{i}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("normalised score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].set_ylim(len(names) - 0.4, -0.6)  # the first method on top
    fig.tight_layout()
    _save(fig, path)


def profiles(scores: Mapping[str, np.ndarray], path: Path, *, reps: int) -> None:
    """Performance profiles (fraction of runs above each threshold) with 95% bands."""
    plt = _pyplot()
    high = max(float(np.max(x)) for x in scores.values())
    taus = np.linspace(0.0, max(100.0, np.ceil(high / 10) * 10), 81)
    found = stats.performance_profiles(scores, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, (name, e) in enumerate(found.items()):
        ax.plot(taus, e.point, color=f"C{i}", label=name)
        ax.fill_between(taus, e.low, e.high, color=f"C{i}", alpha=0.2, lw=0)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def curves(grid: Any, found: Mapping[tuple[str, str], Any], path: Path, *, reps: int,
           names: Mapping[str, str]) -> bool:
    """One panel per dataset (mean over seeds, bootstrap band) and one of the IQM over complete datasets."""
    plt = _pyplot()
    datasets = [d for d in grid.datasets() if any((d, a) in found for a in grid.agents)]
    complete = [d for d in datasets if all((d, a) in found for a in grid.agents)]
    panels = len(datasets) + (1 if len(complete) > 1 else 0)
    if not panels:
        return False
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.0), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=False):
        for i, a in enumerate(grid.agents):
            if (d, a) not in found:
                continue
            c = found[(d, a)]
            steps = c.curve_steps()
            band = stats.curve_intervals({a: c.curve(steps)[:, None, :]}, statistic="mean", reps=reps)[a]
            _band(ax, steps, band, i, names.get(a, a))
        ax.set_title(d.split("/", 1)[-1], fontsize=9)
    if len(complete) > 1:
        ax = axes[0][-1]
        for i, a in enumerate(grid.agents):
            steps = sorted(set.intersection(*(set(found[(d, a)].curve_steps()) for d in complete)))
            seeds = sorted(set.intersection(*(set(found[(d, a)].seeds) for d in complete)))
            if not steps or not seeds:
                continue
            runs = np.stack([_rows(found[(d, a)], seeds, steps) for d in complete], axis=1)  # [seeds, datasets, steps]
            _band(ax, steps, stats.curve_intervals({a: runs}, statistic="IQM", reps=reps)[a], i, names.get(a, a))
        ax.set_title(f"IQM over {len(complete)} datasets", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("updates per seed")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("normalised score")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def _rows(cell: Any, seeds: list[int], steps: list[int]) -> np.ndarray:
    curve = cell.curve(steps)
    return curve[[cell.seeds.index(s) for s in seeds]]


def _band(ax: Any, steps: list[int], band: stats.Interval, i: int, label: str) -> None:
    ax.plot(steps, band.point, color=f"C{i}", marker="o", ms=2.5, label=label)
    ax.fill_between(steps, band.low, band.high, color=f"C{i}", alpha=0.2, lw=0)

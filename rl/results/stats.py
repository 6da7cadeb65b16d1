"""Aggregate scores as the field expects (Agarwal et al., 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"), computed with `rliable` (`pip install -e '.[results]'`).

Scores are matrices `[runs, tasks]`: one column per dataset, one row per seed. An interval is the percentile
interval of a *stratified* bootstrap: each resample draws, within every dataset independently, as many seeds as it
has, with replacement (`rliable.library.StratifiedBootstrap`), so every dataset keeps its weight. For a curve
(`[runs, tasks, points]`) the runs are redrawn at every point, which gives pointwise intervals. The resampling is
seeded, so a page rebuilt from the same ledger shows the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import scipy.stats

__all__ = ["Interval", "aggregates", "curve_intervals", "iqm", "iqm_difference", "performance_profiles"]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its 95% confidence interval (arrays for curves and profiles)."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half of the scores (25% trimmed from each end), over `axis`."""
    return scipy.stats.trim_mean(scores, proportiontocut=0.25, axis=axis)


def _library():
    try:
        from rliable import library
    except ImportError as e:
        raise ImportError(f"the results report needs rliable ({e}); install it with pip install -e '.[results]'.") \
            from None
    return library


def _check(scores: Mapping[str, np.ndarray], ndim: int) -> dict[str, np.ndarray]:
    out = {}
    for name, x in scores.items():
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != ndim or 0 in x.shape or not np.all(np.isfinite(x)):
            raise ValueError(f"scores of {name!r} must be a finite [runs, tasks{', points' if ndim == 3 else ''}] "
                             f"array, got shape {x.shape}.")
        out[name] = x
    return out


def _estimate(scores: dict[str, np.ndarray | tuple[np.ndarray, ...]], func: Callable[..., np.ndarray], reps: int,
              seed: int) -> dict[str, Interval]:
    """`func` of each method's scores with its interval; a tuple of arrays is passed to `func` as separate arguments,
    each redrawn independently."""
    library = _library()
    out = {}
    saved = np.random.get_state()
    try:
        for name, x in scores.items():  # seeded per method: adding a method leaves the others' intervals alone
            # rliable 1.2's StratifiedBootstrap draws its indices from numpy's global generator (a random_state
            # passed to it is not used for them), so the global generator is seeded here and restored afterwards
            np.random.seed(seed)
            points, intervals = library.get_interval_estimates(
                {name: x}, func, reps=reps, confidence_interval_size=CONFIDENCE
            )
            out[name] = Interval(np.asarray(points[name]), np.asarray(intervals[name][0]),
                                 np.asarray(intervals[name][1]))
    finally:
        np.random.set_state(saved)
    return out


def aggregates(
    scores: Mapping[str, np.ndarray], *, reps: int = 20_000, seed: int = 0
) -> dict[str, dict[str, Interval]]:
    """IQM and mean over all runs of all tasks, with stratified-bootstrap 95% intervals.

    Args:
        scores: method -> `[runs, tasks]` scores.
        reps: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        method -> {"IQM": Interval, "mean": Interval} (scalar arrays).
    """
    estimates = _estimate(_check(scores, 2), lambda x: np.array([iqm(x), np.mean(x)]), reps, seed)
    return {name: {label: Interval(*(np.asarray(v[i]) for v in (e.point, e.low, e.high)))
                   for i, label in enumerate(("IQM", "mean"))}
            for name, e in estimates.items()}


def iqm_difference(first: np.ndarray, second: np.ndarray, *, reps: int = 20_000, seed: int = 0) -> Interval:
    """`IQM(first) - IQM(second)` for two methods' `[runs, tasks]` scores on the same tasks (in the same order), with
    a 95% interval of a stratified bootstrap that redraws each method's runs independently (`rliable`'s
    `StratifiedIndependentBootstrap`: different methods' seeds are separate runs, not pairs). Scalar arrays."""
    checked = _check({"first": first, "second": second}, 2)
    a, b = checked["first"], checked["second"]
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"both methods need scores on the same tasks, got {a.shape[1]} and {b.shape[1]} columns.")
    e = _estimate({"difference": (a, b)}, lambda x, y: np.array([iqm(x) - iqm(y)]), reps, seed)["difference"]
    return Interval(*(np.asarray(v).reshape(-1)[0, ...] for v in (e.point, e.low, e.high)))  # 0-d arrays


def performance_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, *, reps: int = 2_000,
                         seed: int = 0) -> dict[str, Interval]:
    """Score distributions: the fraction of runs (all seeds of all tasks) scoring above each `tau`, with intervals."""
    taus = np.asarray(taus, dtype=np.float64)
    return _estimate(_check(scores, 2), lambda x: np.mean(x[..., None] > taus, axis=(0, 1)), reps, seed)


def curve_intervals(curves: Mapping[str, np.ndarray], *, statistic: str = "IQM", reps: int = 2_000,
                    seed: int = 0) -> dict[str, Interval]:
    """A statistic of the runs at every point of a learning curve, with stratified-bootstrap intervals.

    Args:
        curves: method -> `[runs, tasks, points]` scores.
        statistic: `"IQM"` or `"mean"` (over runs and tasks, at each point).
    """
    if statistic not in ("IQM", "mean"):
        raise ValueError(f"statistic must be 'IQM' or 'mean', got {statistic!r}.")

    def func(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1])
        return iqm(flat, axis=0) if statistic == "IQM" else flat.mean(axis=0)

    return _estimate(_check(curves, 3), func, reps, seed)

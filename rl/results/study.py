"""The study: screens (`rl.results.screens`), short two-seed experiments each asking one question about one agent.

A trained variant of a screen is a `Grid` of the screening protocol (`Screening`) with its settings, so its runs are ordinary ledger entries matched by setting hash (variants of
identical settings share them). A variant with `evaluate_from` changes only how actions are chosen (`ACT_SETTINGS`):
it re-evaluates the final checkpoints of a trained variant of its screen with `python -m rl.train --evaluate`, on the
episodes of their final evaluation, and its result is a small JSON under `results/study/`
(`<screen>__<variant>__<env>-<kind>.json`). `python -m rl.results study` (`rl.results.cli`) lists, runs and reports
them; the page, `docs/study.md`, is written from the ledger and `results/study/` alone.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl.agents import get_agent
from rl.train.fields import apply_overrides, config_to_dict

from . import ledger
from .figures import _pyplot, _save
from .ledger import Entry
from .report import NAMES, Cell, _budget, _ms, short_name
from .screens import ACT_SETTINGS, DEFAULT, ENVS, GRID, SCREENS, STEPS, Screen, Screening, Variant

__all__ = [
    "ACT_SETTINGS", "DEFAULT", "ENVS", "GRID", "SCREENS", "STEPS", "Reevaluation", "Screen", "Screening", "Variant", "check_screens", "current",
    "load_results", "pending", "render", "result_path", "select", "write_page", "write_result",
]

STUDY = Path("results") / "study"
RUNS = Path("runs") / "study"
FINDINGS = "findings.md"
RESULT_VERSION = 1
_RESULT_KEYS = ("screen", "variant", "dataset", "agent", "base_setting", "step", "episodes", "overrides", "seeds")


def check_screens(screens: Sequence[Screen] | None = None, screening: Screening | None = None) -> None:
    """Check that screens (default `SCREENS`) are consistent and that every variant's settings build a config.

    Raises:
        ValueError: one line listing every problem (each naming its screen, variant and setting).
    """
    screens, screening, problems = SCREENS if screens is None else screens, screening or Screening(), []
    names = [s.name for s in screens]
    for s in screens:
        slugs = [v.slug for v in s.variants]
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s.name) or names.count(s.name) > 1:
            problems.append(f"screen name {s.name!r} is not a unique slug")
        if not s.variants or not s.variants[0].trained:
            problems.append(f"screen {s.name}: its first variant (the reference) must be trained")
        if len(set(slugs)) < len(slugs) or not all(slugs):
            problems.append(f"screen {s.name}: variant labels must be unique (also as file names): {slugs}")
        for v in s.variants:
            where, other = f"screen {s.name}, variant {v.label!r}", sorted(set(v.overrides) - set(ACT_SETTINGS))
            if not v.trained and not any(b.label == v.evaluate_from and b.trained for b in s.variants):
                problems.append(f"{where}: evaluate_from={v.evaluate_from!r} is not a trained variant of the screen")
            elif not v.trained and (other or not v.overrides):
                problems.append(f"{where}: evaluation only, so it sets only some of {', '.join(ACT_SETTINGS)} "
                                f"(got {other or 'nothing'})")
            else:
                try:
                    grid, sc = s.grid(v, screening), s.screening(screening)
                    for d in grid.datasets():
                        _acting(s, v, grid.config(d, s.agent, sc.steps, sc.seeds).agent_config)
                except (ValueError, TypeError) as e:
                    problems.append(f"{where}: {str(e).split('; valid keys')[0]}")
    if problems:
        raise ValueError("; ".join(problems))


def _acting(screen: Screen, variant: Variant, config: Any) -> Any:
    """The agent config an evaluation-only variant acts with (`config` itself for a trained one)."""
    if variant.trained:
        return config
    act = {k.removeprefix("agent."): v for k, v in variant.overrides.items()}
    return apply_overrides(config, act, prefix="agent", renamed=get_agent(screen.agent).RENAMED)


def select(names: Sequence[str] | None, screens: Sequence[Screen] | None = None) -> tuple[Screen, ...]:
    """The screens called `names`, in the order of `screens` (default `SCREENS`; all of them for `names=None`)."""
    screens = SCREENS if screens is None else screens
    if names is None:
        return tuple(screens)
    known = {s.name for s in screens}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown screen(s) {', '.join(unknown)}; the screens are {', '.join(sorted(known))}.")
    return tuple(s for s in screens if s.name in names)


def result_path(study_dir: Path, screen: Screen, variant: Variant, dataset: str) -> Path:
    """Where an evaluation-only variant's result on a dataset is kept."""
    return Path(study_dir) / f"{screen.name}__{variant.slug}__{short_name(dataset)}.json"


def load_results(study_dir: Path = STUDY) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every re-evaluation result under `study_dir`, keyed `(screen, variant label, dataset)`."""
    out = {}
    for path in sorted(Path(study_dir).glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}).") from None
        if not isinstance(result, dict) or any(k not in result for k in _RESULT_KEYS):
            raise ValueError(f"{path} is not a re-evaluation result (it needs the keys {', '.join(_RESULT_KEYS)}).")
        out[(result["screen"], result["variant"], result["dataset"])] = result
    return out


def current(result: Mapping[str, Any] | None, screen: Screen, variant: Variant, dataset: str,
            screening: Screening) -> bool:
    """Whether a result re-evaluates today's base setting with the variant's settings under the protocol."""
    if result is None:
        return False
    screening = screen.screening(screening)
    base = screen.grid(variant, screening).config(dataset, screen.agent, screening.steps, screening.seeds)
    return (result["base_setting"] in ledger.earlier_setting_hashes(base)
            and result["overrides"] == dict(variant.overrides) and result["step"] == screening.steps
            and result["episodes"] == screening.final_eval_episodes
            and all(str(s) in result["seeds"] for s in screening.seeds))


def _covered(screen: Screen, variant: Variant, dataset: str, screening: Screening,
             entries: Sequence[Entry]) -> dict[int, Entry]:
    """The protocol's seeds the ledger holds for the runs behind `variant` on `dataset`, each with its entry."""
    screening = screen.screening(screening)
    found = ledger.coverage(screen.grid(variant, screening), entries, screening.steps)[(dataset, screen.agent)]
    return {s: e for s, e in sorted(found.items()) if s in screening.seeds}


@dataclass(frozen=True)
class Reevaluation:
    """An evaluation-only variant's result on one dataset that `results/study/` lacks (or holds for another base)."""

    screen: Screen
    variant: Variant
    dataset: str
    # the base's finished seeds (of the protocol's) -> its ledger entry
    entries: dict[int, Entry]
    # a result is there, but of another base setting or protocol
    stale: bool

    def ready(self, screening: Screening) -> bool:
        """Whether the ledger holds every seed of the base (its run directories may still be gone)."""
        return set(self.entries) == set(self.screen.screening(screening).seeds)


def pending(screen: Screen, screening: Screening, entries: Sequence[Entry],
            results: Mapping[tuple, dict]) -> list[Reevaluation]:
    """The re-evaluations a screen lacks, per evaluation-only variant and dataset."""
    screening = screen.screening(screening)
    return [Reevaluation(screen, v, d, _covered(screen, v, d, screening, entries), (screen.name, v.label, d) in results)
            for v in screen.variants if not v.trained for d in screening.datasets()
            if not current(results.get((screen.name, v.label, d)), screen, v, d, screening)]


def _dotted(tree: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key (`agent.policy.noise`) of a config as a nested dict (without `agent`)."""
    for part in key.split(".")[1:]:
        tree = tree[part]
    return tree


def write_result(item: Reevaluation, screening: Screening, study_dir: Path,
                 records: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a re-evaluation's result from what `python -m rl.train --evaluate` appended to each base run's
    `evaluations.jsonl` (`records`: ledger file name of the run -> that line).

    Raises:
        ValueError: a record is not the evaluation asked for (step, episodes, settings) or lacks one of the seeds.
    """
    screening = item.screen.screening(screening)
    base = item.screen.grid(item.variant, screening).config(item.dataset, item.screen.agent, screening.steps,
                                                            screening.seeds)
    expected, seeds = config_to_dict(_acting(item.screen, item.variant, base.agent_config)), {}
    for name, record in records.items():
        wrong = [k for k in item.variant.overrides if _dotted(record["agent_config"], k) != _dotted(expected, k)]
        if record["episodes"] != screening.final_eval_episodes or record["step"] != screening.steps or wrong:
            raise ValueError(f"the evaluation of {name} (step {record['step']}, {record['episodes']} episodes, "
                             f"settings {wrong or 'as asked'}) is not the one asked for.")
        seeds.update({str(s): {"entry": name, **record["results"][str(s)]} for s, e in item.entries.items()
                      if e.path.name == name and str(s) in record["results"]})
    if sorted(seeds) != sorted(map(str, screening.seeds)):
        raise ValueError(f"the evaluations hold seeds {sorted(seeds)}, not {list(screening.seeds)}.")
    result = {
        "result_version": RESULT_VERSION, "screen": item.screen.name, "variant": item.variant.label,
        "evaluate_from": item.variant.evaluate_from, "dataset": item.dataset, "agent": item.screen.agent,
        "base_entries": sorted(records), "base_setting": ledger.setting_hash(base), "step": screening.steps,
        "episodes": screening.final_eval_episodes, "overrides": dict(item.variant.overrides), "seeds": seeds,
        "score_mean": float(np.mean([x["score"] for x in seeds.values()])),
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = result_path(study_dir, item.screen, item.variant, item.dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------- the page


def _values(screen: Screen, screening: Screening, entries: Sequence[Entry],
            results: Mapping[tuple, dict]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]]:
    """`(variant, dataset)` -> each seed's final score and (trained variants) mean of its last three evaluations."""
    screening, out = screen.screening(screening), {}
    for v in screen.variants:
        for d in screening.datasets():
            if v.trained and (found := _covered(screen, v, d, screening, entries)):
                cell = Cell(d, screen.agent, screening.steps, found)
                out[(v.label, d)] = cell.final(), cell.last3()
            elif not v.trained and current(r := results.get((screen.name, v.label, d)), screen, v, d, screening):
                out[(v.label, d)] = np.array([r["seeds"][str(s)]["score"] for s in screening.seeds]), None
    return out


def _table(screen: Screen, datasets: list[str], found: Mapping[tuple[str, str], tuple]) -> list[str]:
    """Variants × datasets: final score (mean ± std, per seed), last three evaluations, difference from the first."""
    lines = ["| variant | settings | "
             + " | ".join(f"{short_name(d)}: final (per seed) | last 3 | Δ" for d in datasets) + " |",
             "|---|---|" + "---|---|---|" * len(datasets)]
    ref = screen.variants[0].label
    for v in screen.variants:
        row = [v.label, " ".join(f"`--{k}={val}`" for k, val in v.overrides.items())
               or ("earlier defaults" if screen.baseline else "defaults")]
        row[1] += "" if v.trained else f" on the final checkpoints of {v.evaluate_from!r}"
        for d in datasets:
            if (v.label, d) not in found:
                row += ["—"] * 3
                continue
            (final, last3), base = found[(v.label, d)], found.get((ref, d))
            row += [f"{_ms(final)} ({', '.join(f'{y:.1f}' for y in final)})", "n/a" if last3 is None else _ms(last3),
                    "ref." if v.label == ref else "—" if base is None else f"{final.mean() - base[0].mean():+.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def _figure(screen: Screen, datasets: list[str], found: Mapping[tuple[str, str], tuple], path: Path) -> None:
    """Each seed's final score (points) and their mean (bar) per variant, one panel per dataset."""
    plt, n = _pyplot(), len(screen.variants)
    fig, axes = plt.subplots(1, len(datasets), figsize=((1.2 + 0.55 * n) * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        for i, v in enumerate(screen.variants):
            if (v.label, d) in found:
                final, color = found[(v.label, d)][0], "C0" if v.trained else "C1"  # evaluation-only: orange
                ax.plot(i + np.linspace(-0.12, 0.12, len(final)), final, "o", ms=4, alpha=0.6, color=color)
                ax.plot([i], [final.mean()], "_", ms=18, mew=2.5, color=color)
                if i == 0:
                    ax.axhline(final.mean(), ls="--", lw=0.8, color="0.5")
        ax.set_xticks(range(n), [v.label for v in screen.variants], rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_title(short_name(d), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("final score")
    fig.tight_layout()
    _save(fig, path)


def _missing(screens: Sequence[Screen], screening: Screening, entries: Sequence[Entry],
             results: Mapping[tuple, dict]) -> list[str]:
    """The page's last section: the runs and re-evaluations the screens lack."""
    lines = []
    for s in screens:
        lines += [f"- {s.name}, {v.label}: {short_name(m.dataset)} seeds {', '.join(map(str, m.seeds))}"
                  for v in s.variants if v.trained for m in ledger.missing(s.grid(v, screening), entries)]
        lines += [f"- {s.name}, {x.variant.label}: {short_name(x.dataset)}, "
                  f"re-evaluation of {x.variant.evaluate_from!r}" + " (its result is of another base)" * x.stale
                  for x in pending(s, screening, entries, results)]
    command = " ".join(["python -m rl.results study run", *screening.options()])
    return ["## Missing", "", *([f"What the ledger and `results/study/` lack (`{command}` runs it):", "", *lines]
                                if lines else ["Every screen is complete."]), ""]


def render(screens: Sequence[Screen], screening: Screening, entries: Sequence[Entry],
           results: Mapping[tuple, dict], img: Path, *, link: str = "img", findings: str | None = None) -> str:
    """The page's markdown (and one figure per screen under `img`, linked as `link/study-<screen>.png`)."""
    datasets = screening.datasets()
    lines = [
        "# Screens", "",
        "*This page is written by `python -m rl.results study report` from the ledger in `results/ledger/` and the "
        "re-evaluations in `results/study/` alone; `python -m rl.results study missing` lists what it lacks.*", "",
        f"Each screen asks one question about one agent and compares a few variants of its settings on "
        f"{', '.join(map(short_name, datasets))}, seeds {', '.join(map(str, screening.seeds))}, "
        f"{_budget(screening.steps)} updates per seed, evaluated every {_budget(screening.eval_every)} updates on "
        f"{screening.eval_episodes} episodes and at the end on {screening.final_eval_episodes} (the final score, "
        f"D4RL-normalised). These are screens, with a short budget and {len(screening.seeds)} seeds, for choosing "
        "what to run: they are not the results grid ([Results](results.md)). The first variant of a screen (its "
        "defaults) is the reference; Δ is a variant's mean minus the reference's. An *evaluation-only* variant "
        "changes only how actions are chosen: it re-evaluates a trained variant's final checkpoints on the episodes "
        "of their final score (`python -m rl.train --evaluate`), so it has no learning curve (last 3: n/a).", "",
        "Final: mean ± standard deviation (ddof 0) over seeds, each seed's value in brackets; last 3: the mean of "
        "each seed's last three evaluations; —: not run yet.", "",
        *([findings.strip(), ""] if findings else []),
    ]
    for s in screens:
        found, own = _values(s, screening, entries, results), s.protocol
        lines += [f"## {s.name}: {NAMES.get(s.agent, s.agent)}", "", s.question, ""]
        if own is not None:
            datasets = own.datasets()
            lines += [f"*Protocol of this screen*: {', '.join(map(short_name, datasets))}, seeds "
                      f"{', '.join(map(str, own.seeds))}, {_budget(own.steps)} updates per seed, final score on "
                      f"{own.final_eval_episodes} episodes"
                      + (": the results grid's own runs." if s.grid_runs else "."), ""]
        else:
            datasets = screening.datasets()
        if s.baseline:
            lines += ["*Run on earlier defaults*: every variant's settings are on top of "
                      + " ".join(f"`--{k}={v}`" for k, v in s.baseline.items()) + ".", ""]
        lines += _table(s, datasets, found)
        if found:
            _figure(s, datasets, found, img / f"study-{s.name}.png")
            lines += [f"![{s.name}]({link}/study-{s.name}.png)", ""]
    return "\n".join(lines + _missing(screens, screening, entries, results))


def write_page(screens: Sequence[Screen], screening: Screening, entries: Sequence[Entry], study_dir: Path,
               page: Path, img: Path) -> None:
    """Write the page and its figures, with `study_dir/findings.md` (hand-written) after the header if it exists."""
    findings = Path(study_dir) / FINDINGS
    img.mkdir(parents=True, exist_ok=True)
    text = render(screens, screening, entries, load_results(study_dir), img,
                  link=Path(os.path.relpath(img, page.parent)).as_posix(),
                  findings=findings.read_text() if findings.is_file() else None)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)

"""`python -m rl.results`: make the datasets, fill the ledger a sitting at a time, and write the results page.

    python -m rl.results datasets --kinds medium   # make results/<env>/medium-v0 with rl.collect (behaviour policies)
    python -m rl.results datasets                  # all three D4RL kinds (medium-replay trains SAC: slow); each
                                                   # dataset is checked against the fingerprint the ledger's runs of it
                                                   # recorded (datasets are remade on every machine, never committed)
    python -m rl.results missing                   # the grid's cells the ledger lacks, with the run behind each
    python -m rl.results run --limit 2             # run (or resume) the first two missing runs, then add them
    python -m rl.results add runs/some-run         # copy a finished run's summary.json into results/ledger/
    python -m rl.results report                    # docs/results.md and docs/img/results-*.png, from the ledger alone
    python -m rl.results study missing             # the screens' runs and re-evaluations still to do (rl.results.study)
    python -m rl.results study run --limit 2       # train two of them (and add them), then the re-evaluations
                                                   # (a base run whose directory is gone is trained again
                                                   # first, and counts if it reproduces the ledger's scores)
    python -m rl.results study report              # docs/study.md and docs/img/study-*.png, from what is committed

The grid options (`--envs`, `--kinds`, `--agents`, `--seeds`, `--steps`, the evaluation protocol and any trailing
`--agent.FIELD=VALUE`, `--train.FIELD=VALUE`, `--data.FIELD=VALUE`) are shared by `missing`, `run` and `report`; the
defaults are the page's grid. `study` has the screening protocol's options instead (`rl.results.study.Screening`) and
`--screens`. Run from the repository root (paths are relative to it). Exit status: 0 done, 1 a run failed, 2 bad
command line or input.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rl.cli import Parser

from . import grid as grids
from . import datasets, ledger, study

__all__ = ["main"]

_PROG = "python -m rl.results"
GRID_RUNS = Path("runs") / "results"  # the results grid's run directories


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _parser() -> Parser:
    g = argparse.ArgumentParser(add_help=False)
    g.add_argument("--envs", type=_names, default=grids.ENVS, help="environments (default %(default)s)")
    g.add_argument("--kinds", type=_names, default=grids.KINDS, help="dataset kinds (default %(default)s)")
    g.add_argument("--namespace", default=grids.NAMESPACE, help="dataset ids are NAMESPACE/ENV/KIND-v0")
    g.add_argument("--ledger", type=Path, default=ledger.LEDGER, help="the ledger directory (default %(default)s)")
    grid = argparse.ArgumentParser(add_help=False, parents=[g])
    grid.add_argument("--agents", type=_names, default=grids.AGENTS, help="agents (default %(default)s)")
    grid.add_argument("--seeds", type=_ints, default=grids.SEEDS, help="seeds (default %(default)s)")
    grid.add_argument("--steps", type=_ints, default=grids.STEPS, help="budgets in updates per seed (%(default)s)")
    grid.add_argument("--eval-every", type=int, default=10_000)
    grid.add_argument("--eval-episodes", type=int, default=10)
    grid.add_argument("--final-eval-episodes", type=int, default=50)
    p = Parser(prog=_PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("datasets", parents=[g], help="make the grid's datasets with rl.collect, and check them against "
                       "the ledger's fingerprints")
    d.add_argument("--policies", type=Path, default=Path("..") / "shared" / "policies",
                   help="directory of the behaviour policies <env>-medium.npz, <env>-expert.npz (default %(default)s)")
    a = sub.add_parser("add", help="copy finished runs' summaries into the ledger")
    a.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    a.add_argument("--ledger", type=Path, default=ledger.LEDGER)
    a.add_argument("--replace", action="store_true", help="replace an entry of the same setting and seeds")
    sub.add_parser("missing", parents=[grid], help="list the grid's cells the ledger lacks")
    r = sub.add_parser("run", parents=[grid], help="run the missing cells one run at a time, adding each")
    r.add_argument("--runs", type=Path, default=GRID_RUNS, help="run directories (default %(default)s)")
    r.add_argument("--limit", type=int, default=None, help="at most this many runs in this sitting")
    rep = sub.add_parser("report", parents=[grid], help="write the results page and its figures from the ledger")
    rep.add_argument("--page", type=Path, default=Path("docs") / "results.md")
    rep.add_argument("--img", type=Path, default=Path("docs") / "img")
    rep.add_argument("--reps", type=int, default=20_000, help="bootstrap resamples of the aggregates")
    _study_parser(sub)
    return p


def _study_parser(sub: argparse._SubParsersAction) -> None:
    """`study missing|run|report` and the screening protocol's options."""
    s = study.Screening()
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--screens", type=_names, default=None, help="screens (default all, in order)")
    p.add_argument("--envs", type=_names, default=s.envs, help="environments (default %(default)s)")
    p.add_argument("--kinds", type=_names, default=s.kinds, help="dataset kinds (default %(default)s)")
    p.add_argument("--namespace", default=s.namespace, help="dataset ids are NAMESPACE/ENV/KIND-v0")
    p.add_argument("--seeds", type=_ints, default=s.seeds, help="seeds (default %(default)s)")
    p.add_argument("--steps", type=int, default=s.steps, help="updates per seed (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=s.eval_every)
    p.add_argument("--eval-episodes", type=int, default=s.eval_episodes)
    p.add_argument("--final-eval-episodes", type=int, default=s.final_eval_episodes)
    p.add_argument("--ledger", type=Path, default=ledger.LEDGER, help="the ledger directory (default %(default)s)")
    p.add_argument("--study", type=Path, default=study.STUDY,
                   help="re-evaluation results and findings.md (default %(default)s)")
    runs = argparse.ArgumentParser(add_help=False)
    runs.add_argument("--runs", type=Path, default=study.RUNS, help="run directories (default %(default)s)")
    st = sub.add_parser("study", help="screens: short two-seed runs, each answering one question (rl.results.study)")
    ssub = st.add_subparsers(dest="study_command", required=True, metavar="STUDY_COMMAND")
    ssub.add_parser("missing", parents=[p, runs], help="list the screens' missing runs and re-evaluations")
    r = ssub.add_parser("run", parents=[p, runs], help="train the missing runs, then the missing re-evaluations")
    r.add_argument("--limit", type=int, default=None, help="at most this many training runs in this sitting")
    rep = ssub.add_parser("report", parents=[p], help="write the screens' page and figures")
    rep.add_argument("--page", type=Path, default=Path("docs") / "study.md")
    rep.add_argument("--img", type=Path, default=Path("docs") / "img")


def _grid(args: argparse.Namespace, extras: Sequence[str]) -> grids.Grid:
    return grids.Grid(envs=args.envs, kinds=args.kinds, agents=args.agents, seeds=args.seeds, steps=args.steps,
                      eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                      final_eval_episodes=args.final_eval_episodes, checkpoint_every=args.eval_every or 10_000,
                      namespace=args.namespace, overrides=grids.parse_overrides(extras))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m rl.results`; returns the exit status."""
    parser = _parser()
    args, extras = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extras and args.command not in ("missing", "run", "report"):
        parser.error(f"unrecognised arguments: {' '.join(extras)}")
    try:
        grid = _grid(args, extras) if args.command in ("missing", "run", "report") else None
        return {"datasets": _datasets, "add": _add, "missing": _missing, "run": _run, "report": _report,
                "study": _study}[args.command](args, grid)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        parser.error(str(e))


def _datasets(args: argparse.Namespace, _: object) -> int:
    """Make each dataset that is not on this machine, then check each against the ledger's runs (1: one differs)."""
    return datasets.make(args.envs, args.kinds, args.namespace, args.policies, ledger.load(args.ledger))


def _add(args: argparse.Namespace, _: object) -> int:
    for run_dir in args.run_dirs:
        for path, status in ledger.add_run(run_dir, args.ledger, replace=args.replace):
            print(f"{run_dir}: {status} {path}")
    return 0


def _missing(args: argparse.Namespace, grid: grids.Grid) -> int:
    gaps = ledger.missing(grid, ledger.load(args.ledger))
    if not gaps:
        print(f"the ledger {args.ledger} holds every cell of the grid.")
        return 0
    seeds = sum(len(m.seeds) for m in gaps)
    print(f"{len(gaps)} run{'s' * (len(gaps) > 1)} ({seeds} seed{'s' * (seeds > 1)}) missing from {args.ledger}:")
    for m in gaps:
        print(f"  {m.dataset} × {m.agent} at {m.steps} updates: seeds {', '.join(map(str, m.seeds))}")
        run_dir = GRID_RUNS / m.run_name(grid)
        print(f"    {grids.shown(grid.command(m.dataset, m.agent, m.steps, m.seeds, run_dir))}")
    return 0


def _execute(cmd: list[str]) -> int:
    """Run one command (a separate process per run: memory is returned between runs)."""
    return subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode


def _train(grid: grids.Grid, m: ledger.Missing, run_dir: Path) -> int:
    """Train one run of the grid into `run_dir`, or resume it from its last checkpoint; the exit status."""
    from rl.train.checkpoint import has_checkpoint

    if has_checkpoint(run_dir):
        cmd = [sys.executable, "-m", "rl.train", "--resume", str(run_dir), "--steps", str(m.steps), "--no-progress"]
    else:
        if run_dir.exists():  # stopped before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        cmd = grid.command(m.dataset, m.agent, m.steps, m.seeds, run_dir)
    print("$", grids.shown(cmd), flush=True)
    return _execute(cmd)


def _run(args: argparse.Namespace, grid: grids.Grid) -> int:
    from rl.data import get_task, resolve_dataset_path
    from rl.train.summary import SUMMARY_FILE

    gaps = ledger.missing(grid, ledger.load(args.ledger))
    failed, done = 0, 0
    for m in gaps:
        if args.limit is not None and done >= args.limit:
            print(f"stopping after {done} run{'s' * (done > 1)} (--limit); {len(gaps) - done} left.")
            break
        if get_task(m.dataset) is None and resolve_dataset_path(m.dataset) is None:
            print(f"{m.dataset} is not on this machine (python -m rl.results datasets): skipping {m.agent}.")
            continue
        run_dir = args.runs / m.run_name(grid)
        if not (run_dir / SUMMARY_FILE).is_file():
            done += 1
            code = _train(grid, m, run_dir)
            if code != 0:
                print(f"{run_dir}: exit status {code}; not added.", flush=True)
                failed += 1
                continue
        path, status = ledger.add(run_dir, args.ledger)
        entry = ledger.Entry(path, json.loads(path.read_text()))
        if entry.setting != ledger.setting_hash(grid.config(m.dataset, m.agent, m.steps, m.seeds)):
            print(f"warning: {run_dir} ran another setting than the grid's; it does not fill the cell.")
        print(f"{run_dir}: {status} {path}", flush=True)
    return 1 if failed else 0


def _report(args: argparse.Namespace, grid: grids.Grid) -> int:
    from .report import write_report

    entries = ledger.load(args.ledger)
    write_report(grid, entries, args.page, args.img, reps=args.reps)
    print(f"wrote {args.page} and its figures under {args.img} from {len(entries)} ledger entries.")
    return 0


def _study(args: argparse.Namespace, _: object) -> int:
    """`study missing|run|report` on the selected screens (checked first) under the protocol of the options."""
    screening = study.Screening(envs=args.envs, kinds=args.kinds, seeds=args.seeds, steps=args.steps,
                                eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                                final_eval_episodes=args.final_eval_episodes, namespace=args.namespace)
    screens = study.select(args.screens)
    study.check_screens(screens, screening)
    return {"missing": _study_missing, "run": _study_run, "report": _study_report}[args.study_command](
        args, screening, screens)


def _reproduces(summary: dict, entry: ledger.Entry) -> bool:
    """Whether a run summary is the entry's own (the ledger copies it verbatim) or a retraining that reproduces it:
    the same setting, seeds and budget, and bit for bit the same final score on every seed (training is
    deterministic, so the checkpoints are the entry's)."""
    if summary == entry.summary:
        return True
    return (summary["agent"] == entry.agent and ledger.setting_hash(summary["config"]) == entry.setting
            and tuple(summary["budget"]["seeds"]) == entry.seeds and int(summary["budget"]["steps"]) == entry.steps
            and summary["final"]["score"] == entry.summary["final"]["score"])


def _find_run(entry: ledger.Entry, grid: grids.Grid, runs: Path) -> Path | None:
    """The run directory (with a checkpoint) under `runs` behind a ledger entry, or None when it is gone."""
    from rl.train.checkpoint import has_checkpoint
    from rl.train.summary import SUMMARY_FILE

    name = ledger.Missing(entry.dataset, entry.agent, entry.steps, entry.seeds).run_name(grid)
    roots = [runs, *([GRID_RUNS] if runs != GRID_RUNS else [])]  # the act screens re-evaluate the grid's own runs
    for run_dir in [*(r / name for r in roots), *sorted(p.parent for r in roots for p in r.glob(f"*/{SUMMARY_FILE}"))]:
        try:
            same = _reproduces(json.loads((run_dir / SUMMARY_FILE).read_text()), entry)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if same and has_checkpoint(run_dir):
            return run_dir
    return None


def _base_runs(x: study.Reevaluation, screening: study.Screening, runs: Path) -> tuple[dict[str, Path | None], str]:
    """The run directory behind each ledger entry of a re-evaluation's base, and what stands in the way or is done."""
    grid, base = x.screen.grid(x.variant, screening), x.variant.evaluate_from
    found = {e.path.name: _find_run(e, grid, runs) for e in x.entries.values()}
    gone = [name for name, run_dir in found.items() if run_dir is None]
    if not x.ready(screening):
        maker = "python -m rl.results run makes them" if x.screen.grid_runs else "study run trains them first"
        return found, f"waiting for the runs of {base!r} ({maker})"
    if gone:
        return found, (f"the run directory of {', '.join(gone)} is gone (runs/ is not committed): retrain {base!r} "
                       "(study run does; a retraining counts once its final scores match the ledger's)")
    return found, f"re-evaluate the final checkpoints of {base!r}" + " (its result is of another base)" * x.stale


def _study_missing(args: argparse.Namespace, screening: study.Screening, screens: Sequence[study.Screen]) -> int:
    """Per screen and variant: the runs the ledger lacks and the re-evaluations `results/study/` lacks (commands)."""
    entries, results = ledger.load(args.ledger), study.load_results(args.study)
    runs, evaluations = set(), 0  # run directories: variants of one setting (the defaults) share their runs
    for s in screens:
        print(f"{s.name} ({s.agent}): {s.question}")
        for v in s.variants:
            grid = s.grid(v, screening)
            if v.trained:
                gaps = ledger.missing(grid, entries)
                print(f"  {v.label}: " + (f"{len(gaps)} run{'s' * (len(gaps) > 1)} missing" if gaps else "complete"))
                root = GRID_RUNS if s.grid_runs else args.runs  # where `rl.results run` would write the grid's runs
                for m in gaps:
                    cmd = grid.command(m.dataset, m.agent, m.steps, m.seeds, root / m.run_name(grid))
                    print(f"    {study.short_name(m.dataset)} seeds {', '.join(map(str, m.seeds))}: {grids.shown(cmd)}")
                runs |= {m.run_name(grid) for m in gaps}
                continue
            items = [x for x in study.pending(s, screening, entries, results) if x.variant == v]
            print(f"  {v.label} (evaluation only, from {v.evaluate_from!r}): "
                  + (f"{len(items)} missing from {args.study}" if items else "complete"))
            for x in items:
                found, what = _base_runs(x, screening, args.runs)
                print(f"    {study.short_name(x.dataset)}: {what}")
                for e in {e.path.name: e for e in x.entries.values()}.values() if x.ready(screening) else []:
                    run_dir = found[e.path.name]
                    retrain = args.runs / ledger.Missing(e.dataset, e.agent, e.steps, e.seeds).run_name(grid)
                    cmd = (_evaluate_command(run_dir, v, s.screening(screening)) if run_dir is not None
                           else grid.command(e.dataset, e.agent, e.steps, e.seeds, retrain))
                    print(f"      {grids.shown(cmd)}")
            evaluations += len(items)
    print(f"{len(runs)} training run{'s' * (len(runs) != 1)} and {evaluations} re-evaluation"
          f"{'s' * (evaluations != 1)} missing.")
    return 0


def _study_train(args: argparse.Namespace, screening: study.Screening,
                 screens: Sequence[study.Screen]) -> tuple[int, int]:
    """Train the screens' missing runs in order, each through `_run` (which adds it); how many failed, how many ran."""
    import dataclasses

    from rl.data import get_task, resolve_dataset_path
    from rl.train.summary import SUMMARY_FILE

    done = failed = 0
    for s in screens:
        if s.grid_runs:  # `rl.results run` makes them
            gaps = [m for v in s.variants if v.trained for m in ledger.missing(s.grid(v, screening), ledger.load(
                args.ledger))]
            if gaps:
                print(f"{s.name}: its base runs are the results grid's ({len(gaps)} missing); python -m rl.results run "
                      "makes them, not study run.")
            continue
        for v in (v for v in s.variants if v.trained):
            own = s.screening(screening)
            for env, kind in ((env, kind) for env in own.envs for kind in own.kinds):
                grid = dataclasses.replace(s.grid(v, screening), envs=(env,), kinds=(kind,))  # at most one run
                for m in ledger.missing(grid, ledger.load(args.ledger)):  # read anew: variants may share runs
                    where = f"{s.name}, {v.label}: {study.short_name(m.dataset)}"
                    if get_task(m.dataset) is None and resolve_dataset_path(m.dataset) is None:
                        print(f"{where}: {m.dataset} is not on this machine (python -m rl.results datasets); skipped.")
                        continue
                    if args.limit is not None and done >= args.limit:
                        print(f"stopping after {done} training run{'s' * (done != 1)} (--limit); next: {where}.")
                        return failed, done
                    print(f"{where}, seeds {', '.join(map(str, m.seeds))}", flush=True)
                    done += not (args.runs / m.run_name(grid) / SUMMARY_FILE).is_file()
                    failed += _run(argparse.Namespace(ledger=args.ledger, runs=args.runs, limit=None), grid) != 0
    return failed, done


def _retrain(x: study.Reevaluation, screening: study.Screening, found: dict[str, Path | None], runs: Path) -> int:
    """Train again, under `runs`, the base runs of a re-evaluation whose run directories are gone; how many failed."""
    grid, failed = x.screen.grid(x.variant, screening), 0
    for e in {e.path.name: e for e in x.entries.values() if found[e.path.name] is None}.values():
        m = ledger.Missing(e.dataset, e.agent, e.steps, e.seeds)
        failed += _train(grid, m, runs / m.run_name(grid)) != 0
    return failed


def _study_run(args: argparse.Namespace, screening: study.Screening, screens: Sequence[study.Screen]) -> int:
    """The missing training runs, then the re-evaluations: each base run whose directory is gone is trained again
    first (within `--limit`), and counts once it reproduces the ledger's final scores; 1 if anything failed."""
    failed, done = _study_train(args, screening, screens)
    for s in screens:
        for x in study.pending(s, screening, ledger.load(args.ledger), study.load_results(args.study)):
            found, what = _base_runs(x, screening, args.runs)
            where = f"{s.name}, {x.variant.label}: {study.short_name(x.dataset)}"
            gone = sum(r is None for r in found.values())
            if x.ready(screening) and gone:
                if args.limit is not None and done >= args.limit:
                    print(f"{where}: {what}; not now (--limit)", flush=True)
                    continue
                print(f"{where}: {what}", flush=True)
                done += gone
                failed += _retrain(x, screening, found, args.runs)
                found, _ = _base_runs(x, screening, args.runs)
                if None in found.values():
                    print(f"{where}: the retrained run's final scores are not the ledger's, so its checkpoints are "
                          "not the ones the ledger scored; not re-evaluated.", flush=True)
                    failed += 1
                    continue
            else:
                print(f"{where}: {what}", flush=True)
            if x.ready(screening) and None not in found.values():
                try:
                    print(f"{where}: wrote {_reevaluate(x, screening, found, args.study)}", flush=True)
                except (RuntimeError, ValueError) as e:
                    print(f"{where}: {e}", flush=True)
                    failed += 1
    return 1 if failed else 0


def _evaluate_command(run_dir: Path, variant: study.Variant, screening: study.Screening) -> list[str]:
    """The `python -m rl.train --evaluate` command line of a re-evaluation (on the final evaluation's episodes)."""
    return [sys.executable, "-m", "rl.train", "--evaluate", str(run_dir), "--eval-episodes",
            str(screening.final_eval_episodes), *(f"--{k}={v}" for k, v in variant.overrides.items())]


def _reevaluate(x: study.Reevaluation, screening: study.Screening, found: dict[str, Path], study_dir: Path) -> Path:
    """Re-evaluate each base run (`python -m rl.train --evaluate`, a process each), then write the result."""
    from rl.train.policy import EVALUATIONS_FILE

    records = {}
    for name, run_dir in found.items():
        log = run_dir / EVALUATIONS_FILE
        before = len(log.read_text().splitlines()) if log.is_file() else 0
        cmd = _evaluate_command(run_dir, x.variant, x.screen.screening(screening))
        print("$", grids.shown(cmd), flush=True)
        code = _execute(cmd)
        lines = log.read_text().splitlines() if log.is_file() else []
        if code != 0 or len(lines) <= before:
            raise RuntimeError(f"{run_dir}: exit status {code}" + ("" if code else f", nothing appended to {log}"))
        records[name] = json.loads(lines[-1])
    return study.write_result(x, screening, study_dir, records)


def _study_report(args: argparse.Namespace, screening: study.Screening, screens: Sequence[study.Screen]) -> int:
    """Write the screens' page and figures from the ledger and `results/study/`."""
    entries = ledger.load(args.ledger)
    study.write_page(screens, screening, entries, args.study, args.page, args.img)
    print(f"wrote {args.page} and its figures under {args.img} from {len(entries)} ledger entries and {args.study}.")
    return 0

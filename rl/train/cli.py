"""`python -m rl.train`: train FlowQ, QIPO or IQL on an offline dataset, or run the built-in demo.

Examples::

    python -m rl.train                                    # the built-in demo: every method on a 2-D bandit task
    python -m rl.train --agent flowq --dataset local/halfcheetah/medium-v0 --seed 0 --steps 1000000
    python -m rl.train --agent qipo --dataset bandit --seeds 0,1,2 --agent.beta=3 --train.batch_size=512
    python -m rl.train --agent flowq --sweep agent.beta=1,3,10 --seeds 0,1,2   # 9 members, one compiled program
    python -m rl.train --agent flowq --agent.critic.expectile=0.8 --data.reward=none
    python -m rl.train --agent iql --options                   # every option with its default and meaning
    python -m rl.train --resume runs/flowq-bandit-20250101-120000 --steps 20000 --agent.policy.lr=1e-4
    python -m rl.train --evaluate runs/flowq-bandit-20250101-120000 --agent.policy.best_of_n=8

Any field of the agent's `Config` can be set with `--agent.FIELD=VALUE` (nested fields with dots), of the loop's
`TrainConfig` with `--train.FIELD=VALUE`, and of the data layer's `DataConfig` with `--data.FIELD=VALUE`; values
are parsed with the field's type (`true`/`false`, `none`, `64,64` for tuples). An unknown field is an error that
lists the valid ones; a renamed one says its new name.

Exit status: 0 done; 1 training diverged (the run stopped cleanly, its last good state saved); 2 bad command line or
input (one line on stderr, nothing written); 130 interrupted (state saved, resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rl.agents import AGENTS, get_agent
from rl.cli import Parser

__all__ = ["main"]

_PROG = "python -m rl.train"


class UsageError(Exception):
    """A bad command line or input: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=_PROG,
        description="Train an offline-RL agent (FlowQ, QIPO, IQL). With no arguments: the built-in demo.",
        epilog="Set agent, loop and data fields with --agent.FIELD=VALUE, --train.FIELD=VALUE, --data.FIELD=VALUE "
        "(list them with --options). Exit status: 0 done, 1 diverged, 2 bad input, 130 interrupted.",
        allow_abbrev=False,
    )
    p.add_argument("--agent", choices=AGENTS, help="the algorithm")
    p.add_argument(
        "--dataset", default=None, help="Minari id or path, or a built-in task: 'multimodal' (default) or 'bandit'"
    )
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="one training seed (default 0)")
    seeds.add_argument("--seeds", default=None, help="several seeds trained together in one process, e.g. 0,1,2")
    p.add_argument(
        "--sweep", action="append", default=None, metavar="agent.FIELD=V1,V2,...",
        help="train every value of a float agent field together with the seeds, in one compiled program; repeat "
        "for several fields (every combination is trained)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="gradient updates per seed (default 1000000; built-in tasks 3000)"
    )
    p.add_argument("--eval-every", type=int, default=None, help="evaluate every N updates (0: only at the end)")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation")
    p.add_argument("--final-eval-episodes", type=int, default=None,
                   help="episodes of the final evaluation (default 50; the first --eval-episodes are the periodic ones)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N updates (0: at the end)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<agent>-<dataset>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its checkpoint")
    p.add_argument(
        "--evaluate",
        metavar="RUN_DIR",
        default=None,
        help="evaluate the checkpoint in RUN_DIR again (same episodes as its evaluations); --eval-episodes and "
        "--agent.FIELD=VALUE (e.g. policy.best_of_n, policy.sample_steps) may be given",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    hosts = p.add_argument_group(
        "several processes (hosts)",
        "the members (seeds x sweep values) are split between processes, each training its share on its own devices "
        "(see docs/scale.md); every process runs the same command with its own --process-id",
    )
    hosts.add_argument("--distributed", action="store_true",
                       help="join a multi-process run; without the options below, addresses come from "
                       "$JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID or the cluster (Slurm, ...)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", default=None, help="address of process 0")
    hosts.add_argument("--num-processes", type=int, default=None, help="how many processes train the run")
    hosts.add_argument("--process-id", type=int, default=None, help="this process's index, from 0")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--options", action="store_true", help="list every --agent/--train/--data option and exit")
    p.add_argument("--demo", action="store_true", help="run the built-in demo (what no arguments do)")
    return p


_OVERRIDE = re.compile(r"^--(agent|train|data)\.([A-Za-z_][A-Za-z0-9_.]*)(?:=(.*))?$", re.DOTALL)
_GROUPS = ("agent", "train", "data")


def _split_overrides(extras: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {g: {} for g in _GROUPS}
    i = 0
    while i < len(extras):
        match = _OVERRIDE.match(extras[i])
        if match is None:
            raise UsageError(
                f"unrecognised argument {extras[i]!r} (config fields are set as --agent.FIELD=VALUE, "
                "--train.FIELD=VALUE or --data.FIELD=VALUE; see --options)"
            )
        group, key, value = match.group(1), match.group(2), match.group(3)
        if value is None:
            if i + 1 >= len(extras) or extras[i + 1].startswith("--"):
                raise UsageError(f"--{group}.{key} needs a value (--{group}.{key}=VALUE)")
            value = extras[i + 1]
            i += 1
        if key in out[group]:
            raise UsageError(f"--{group}.{key} is given twice")
        out[group][key] = value
        i += 1
    return out


def _parse_seeds(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise UsageError(f"--seeds expects comma-separated integers >= 0 such as 0,1,2, got {text!r}")
    seeds = tuple(int(p) for p in parts)
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds lists a seed twice: {text!r}")
    return seeds


_RUN_OPTIONS = ("agent", "dataset", "seed", "seeds", "sweep", "run_dir", "steps", "eval_every", "eval_episodes",
                "final_eval_episodes", "checkpoint_every")


def _refuse(args: argparse.Namespace, overrides: dict[str, dict[str, str]], *, allowed: Sequence[str], why: str):
    """Refuse run options and override groups outside `allowed` (options by name, groups as "agent." etc.)."""
    given = [f"--{n.replace('_', '-')}" for n in _RUN_OPTIONS if n not in allowed and getattr(args, n) is not None]
    given += [f"--{g}.{k}" for g in _GROUPS if f"{g}." not in allowed for k in overrides[g]]
    if given:
        raise UsageError(f"{why} (got {', '.join(given)})")


def _loop_options(args: argparse.Namespace) -> dict[str, Any]:
    loop = {"steps": args.steps, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
            "final_eval_episodes": args.final_eval_episodes, "checkpoint_every": args.checkpoint_every}
    return {k: v for k, v in loop.items() if v is not None}


def _train_overrides(config: Any, overrides: dict[str, str]) -> dict[str, Any]:
    from .fields import apply_overrides

    new = apply_overrides(config, overrides, prefix="train")
    return {f.name: getattr(new, f.name) for f in dataclasses.fields(new) if getattr(new, f.name) != getattr(config, f.name)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m rl.train`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except UsageError as e:
        print(f"{_PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    from .demo import run_demo

    if not argv:
        run_demo()
        return 0
    parser = _parser()
    args, extras = parser.parse_known_args(argv)  # argparse's own errors exit 2 with its usage line
    overrides = _split_overrides(extras)
    if args.distributed or any(x is not None for x in (args.coordinator, args.num_processes, args.process_id)):
        if args.demo or args.evaluate is not None:
            raise UsageError("--distributed is for training (a new run or --resume), not --demo or --evaluate")
        from .distributed import initialize

        try:
            initialize(args.coordinator, args.num_processes, args.process_id)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.demo:
        _refuse(args, overrides, allowed=("run_dir",), why="--demo takes only --run-dir and --no-progress")
        run_demo(progress=not args.no_progress, run_dir=args.run_dir)
        return 0
    if args.evaluate is not None:
        return _evaluate_command(args, overrides)
    if args.resume is not None:
        return _resume_command(args, overrides)
    return _train_command(args, overrides)


def _resolve_config(args: argparse.Namespace, overrides: dict[str, dict[str, str]]) -> Any:
    from rl.data import DataConfig, check_dataset_id, get_task
    from rl.data.tasks import DEFAULT_TASK

    from .config import RunConfig, TrainConfig
    from .fields import apply_overrides
    from .demo import demo_train_config
    from .sweep import parse_sweep

    if args.agent is None:
        raise UsageError("--agent is required (one of " + ", ".join(AGENTS) + "), or --resume RUN_DIR")
    module = get_agent(args.agent)
    dataset = args.dataset if args.dataset is not None else DEFAULT_TASK
    try:
        agent_config = apply_overrides(module.Config(), overrides["agent"], prefix="agent", renamed=module.RENAMED)
        # a built-in task's own loop defaults: the demo's length, three evaluations
        base = demo_train_config(progress=True) if get_task(dataset) is not None else TrainConfig()
        train_config = dataclasses.replace(base, **_loop_options(args))
        train_config = apply_overrides(train_config, overrides["train"], prefix="train")
        if args.no_progress:
            train_config = dataclasses.replace(train_config, progress=False)
        data_config = apply_overrides(DataConfig(), overrides["data"], prefix="data")
        seeds = _parse_seeds(args.seeds) if args.seeds is not None else (args.seed if args.seed is not None else 0,)
        if os.path.isdir(dataset):  # a dataset directory: save its absolute path, so resume works from anywhere
            dataset = os.path.abspath(dataset)
        elif get_task(dataset) is None:
            check_dataset_id(dataset)  # the form of the id, before anything else (its presence is checked at load)
        sweep = parse_sweep(args.sweep or [], agent_config)
        both = sorted({name for name, _ in sweep} & set(overrides["agent"]))
        if both:
            raise ValueError(f"--agent.{both[0]} is set and swept at once; give its values to --sweep only")
        return RunConfig(agent=args.agent, dataset=dataset, seeds=seeds, agent_config=agent_config,
                         train=train_config, data=data_config, sweep=sweep)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


def _train_command(args: argparse.Namespace, overrides: dict[str, dict[str, str]]) -> int:
    from rl.data import load_named

    from .chunk import make_mesh
    from .config import CONFIG_FILE
    from .fields import describe_options
    from .loop import train

    config = _resolve_config(args, overrides)
    if args.options:
        print(f"--agent.* options of {args.agent}:", *describe_options(config.agent_config, "agent"), sep="\n")
        print("--train.* options:", *describe_options(config.train, "train"), sep="\n")
        print("--data.* options:", *describe_options(config.data, "data"), sep="\n")
        return 0
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    run_dir = Path(args.run_dir) if args.run_dir is not None else _default_run_dir(args.agent, config.dataset)
    if (run_dir / CONFIG_FILE).exists():
        raise UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pass another --run-dir")
    try:
        if config.train.data_parallel:
            make_mesh(config.train.batch_size, members=len(config.members))  # the batch must split over the devices
        dataset = load_named(config.dataset)
        dataset.normalizer(config.data)  # the data options must apply to this dataset
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    return _report(lambda: train(config, run_dir, dataset=dataset))


def _resume_command(args: argparse.Namespace, overrides: dict[str, dict[str, str]]) -> int:
    from rl.data import load_named

    from .config import load_run_config
    from .fields import apply_overrides
    from .loop import resume

    _refuse(args, overrides, allowed=("steps", "eval_every", "eval_episodes", "final_eval_episodes", "checkpoint_every", "agent.",
                                     "train."),
            why="--resume continues a run with its saved agent, dataset, seeds and data settings")
    try:
        config = load_run_config(args.resume)
        module = get_agent(config.agent)
        agent_config = apply_overrides(config.agent_config, overrides["agent"], prefix="agent", renamed=module.RENAMED)
        changes = {**_loop_options(args), **_train_overrides(config.train, overrides["train"])}
        changes.pop("steps", None)
        if args.print_config:
            print(json.dumps(config.to_dict(), indent=2))
            return 0
        dataset = load_named(config.dataset)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    return _report(lambda: resume(args.resume, steps=args.steps, train_changes=changes, agent_config=agent_config,
                                  dataset=dataset, progress=False if args.no_progress else None))


def _evaluate_command(args: argparse.Namespace, overrides: dict[str, dict[str, str]]) -> int:
    import numpy as np

    from .checkpoint import CorruptCheckpointError
    from .config import load_run_config
    from .fields import apply_overrides
    from .policy import EVALUATIONS_FILE, evaluate_run

    _refuse(args, overrides, allowed=("eval_episodes", "agent."),
            why="--evaluate takes only --eval-episodes and --agent.FIELD=VALUE overrides")
    try:
        config = load_run_config(args.evaluate)
        module = get_agent(config.agent)
        agent_config = apply_overrides(config.agent_config, overrides["agent"], prefix="agent", renamed=module.RENAMED)
        step, results = evaluate_run(args.evaluate, agent_config=agent_config, episodes=args.eval_episodes)
    except (FileNotFoundError, TypeError, ValueError, CorruptCheckpointError) as e:
        raise UsageError(str(e)) from None
    label = ", ".join(f"{k}={v}" for k, v in overrides["agent"].items()) or "the run's own settings"
    print(f"{args.evaluate} at step {step}, {label}:")
    for seed, metrics in results.items():
        print(f"  seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "score"))
    scores = np.array([m["score"] for m in results.values()])
    print(f"  score over seeds: {scores.mean():.4g} ± {scores.std():.4g} "
          f"(appended to {Path(args.evaluate) / EVALUATIONS_FILE})")
    return 0


def _report(run: Callable[[], Any]) -> int:
    """Run `train` or `resume`: print the summary (0), a divergence (1), or refuse input they found bad (2)."""
    from .checkpoint import CorruptCheckpointError
    from .loop import DivergenceError

    try:
        result = run()
    except (FileExistsError, FileNotFoundError, ValueError, TypeError, CorruptCheckpointError) as e:
        raise UsageError(str(e)) from None
    except DivergenceError as e:
        print(f"{_PROG}: {e}", file=sys.stderr)
        return 1
    _print_summary(result)
    return 0


def _default_run_dir(agent: str, dataset: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset).strip("-").lower() or "dataset"
    return Path("runs") / f"{agent}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def _print_summary(result: Any) -> None:
    print(f"run directory: {result.run_dir} (step {result.step})")
    for m in result.members:
        final = result.final_eval(m.key)
        if final is not None:
            print(f"  {m.label}: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k != "step"))

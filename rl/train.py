"""`python -m rl.train`: train FlowQ, QIPO or IQL on an offline dataset, or run the built-in bandit demo.

Examples::

    python -m rl.train                                    # the built-in 2-D bandit demo, about a minute on a CPU
    python -m rl.train --agent flowq --dataset local/halfcheetah/medium-v0 --seed 0 --steps 1000000
    python -m rl.train --agent qipo --dataset bandit --seeds 0,1,2 --agent.beta=3 --train.batch_size=512
    python -m rl.train --agent iql --dataset bandit --print-config    # show every field and exit
    python -m rl.train --resume runs/flowq-bandit-20250101-120000 --steps 20000
    python -m rl.train --evaluate runs/flowq-bandit-20250101-120000 --agent.best_of_n=8   # act otherwise, re-score

Any field of the agent's `Config` can be set with `--agent.FIELD=VALUE` (or `--agent.FIELD VALUE`), and any field
of `rl.trainer.TrainConfig` with `--train.FIELD=VALUE`; values are parsed with the field's type (`true`/`false` for
booleans, `none` for optional fields, `64,64` for tuples). An unknown field is an error that lists the valid ones.
The resolved config is saved as `config.json` in the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rl.agents import AGENTS, get_agent

__all__ = ["DEMO_METHODS", "apply_overrides", "main", "parse_value", "run_demo"]


# ----------------------------------------------------------------------------- values and overrides


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_value(text: str, tp: Any, where: str = "value") -> Any:
    """Parse a command-line string as type `tp` (bool, int, float, str, None, Literal, unions, tuples).

    Args:
        text: the string after `=`.
        tp: the field's type (as given by `typing.get_type_hints`).
        where: the option's name, for the error message.

    Raises:
        ValueError: the text does not parse as `tp`; the message says what was expected and what arrived.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    stripped = text.strip()
    if tp is Any:
        return text
    if origin is typing.Union or origin is types.UnionType:
        if type(None) in args and stripped.lower() in ("none", "null"):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(text, arg, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: expected {_describe(tp)}, got {text!r}.")
    if origin is typing.Literal:
        for option in args:
            as_bool = isinstance(option, bool) and stripped.lower() in (_TRUE if option else _FALSE)
            if str(option) == stripped or as_bool:
                return option
        raise ValueError(f"{where}: expected one of {', '.join(map(str, args))}, got {text!r}.")
    if origin in (tuple, list):
        inner = stripped.strip("()[]")
        parts = [p for p in (s.strip() for s in inner.split(",")) if p] if inner else []
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(parts) != len(args):
                raise ValueError(f"{where}: expected {len(args)} comma-separated values, got {text!r}.")
            items = [parse_value(p, a, where) for p, a in zip(parts, args, strict=True)]
        else:
            item_type = args[0] if args else str
            items = [parse_value(p, item_type, where) for p in parts]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ValueError(f"{where}: expected a boolean (true/false), got {text!r}.")
    if tp is int:
        try:
            return int(stripped)
        except ValueError:
            pass
        try:
            value = float(stripped)  # accept "1e6"
        except ValueError:
            value = None
        if value is not None and value.is_integer():
            return int(value)
        raise ValueError(f"{where}: expected an integer, got {text!r}.")
    if tp is float:
        try:
            return float(stripped)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {text!r}.") from None
    if tp is str:
        return text
    if tp is type(None):
        if stripped.lower() in ("none", "null"):
            return None
        raise ValueError(f"{where}: expected none, got {text!r}.")
    raise ValueError(f"{where}: fields of type {_describe(tp)} cannot be set from the command line.")


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def apply_overrides(config: Any, overrides: dict[str, str], *, prefix: str) -> Any:
    """Return `config` with fields replaced by parsed command-line values.

    Args:
        config: a frozen config dataclass.
        overrides: field name -> text value.
        prefix: the option prefix for messages (`"agent"` gives `--agent.beta`).

    Raises:
        ValueError: an unknown field (listing the valid ones) or a value that does not parse.
    """
    fields = _field_types(type(config))
    unknown = [k for k in overrides if k not in fields]
    if unknown:
        valid = ", ".join(f"{k}={getattr(config, k)!r}" for k in fields)
        raise ValueError(
            f"unknown {prefix} config key(s): {', '.join(f'--{prefix}.{k}' for k in unknown)}. "
            f"Valid keys for {type(config).__module__}.{type(config).__qualname__} (with their values): {valid}."
        )
    parsed = {k: parse_value(v, fields[k], f"--{prefix}.{k}") for k, v in overrides.items()}
    return dataclasses.replace(config, **parsed)


_OVERRIDE = re.compile(r"^--(agent|train)\.([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.DOTALL)


def _split_overrides(extras: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"agent": {}, "train": {}}
    i = 0
    while i < len(extras):
        match = _OVERRIDE.match(extras[i])
        if match is None:
            parser.error(
                f"unrecognised argument {extras[i]!r} (config fields are set as --agent.FIELD=VALUE or "
                "--train.FIELD=VALUE)"
            )
        group, key, value = match.group(1), match.group(2), match.group(3)
        if value is None:
            if i + 1 >= len(extras) or extras[i + 1].startswith("--"):
                parser.error(f"--{group}.{key} needs a value (--{group}.{key}=VALUE)")
            value = extras[i + 1]
            i += 1
        if key in out[group]:
            parser.error(f"--{group}.{key} is given twice")
        out[group][key] = value
        i += 1
    return out


# ----------------------------------------------------------------------------- the bandit demo

DEMO_STEPS = 3_000
"""Updates per method in the demo (QIPO spends the first third on its behaviour warm-up)."""

DEMO_METHODS: tuple[tuple[str, str, dict[str, str]], ...] = (
    # (label, agent, agent-config overrides). Behaviour cloning is FlowQ without guidance: beta = 0 makes its guided
    # path the plain CFM path, so its policy fits the behaviour data. The others run at their defaults, except for
    # QIPO's phase lengths, shortened to fit the demo's 3000 updates.
    ("behaviour cloning", "flowq", {"beta": "0"}),
    ("IQL", "iql", {}),
    ("FlowQ", "flowq", {}),
    ("QIPO", "qipo", {"warmup_steps": str(DEMO_STEPS // 3), "renew_every": "250", "pool_size": "2000"}),
)
"""The methods the demo trains on the bandit, in order."""

# Small networks for the demo, so that the whole demo (compilation included) takes about a minute on 2 CPU cores;
# applied where the agent's Config has the field.
_DEMO_SIZES = {
    "policy_width": "64",
    "policy_depth": "2",
    "critic_width": "64",
    "critic_depth": "2",
    "width": "64",
    "depth": "2",
}


def _demo_agent_config(agent: str, overrides: dict[str, str]) -> Any:
    config = get_agent(agent).Config()
    fields = _field_types(type(config))
    sizes = {k: v for k, v in _DEMO_SIZES.items() if k in fields}
    return apply_overrides(config, {**sizes, **overrides}, prefix="agent")


def run_demo(
    *, steps: int = DEMO_STEPS, run_dir: str | Path | None = None, seed: int = 0, progress: bool = True
) -> list[dict[str, Any]]:
    """Train every method of `DEMO_METHODS` on the built-in bandit and print a table of their scores.

    Args:
        steps: updates per method.
        run_dir: where the runs go (one sub-directory per method); default `runs/bandit-demo-<time>`.
        seed: the training seed.
        progress: show progress bars.

    Returns:
        One row per method (and one for the behaviour data): label, mean reward, fraction on the best mode, seconds.
    """
    from rl import bandit
    from rl.trainer import RunConfig, TrainConfig, train

    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / f"bandit-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    dataset = bandit.make_dataset()
    task = bandit.BanditTask()
    data_score = bandit.score_actions(task, dataset.transitions.action)
    print(
        f"Built-in offline bandit: {task.num_modes} behaviour modes on a circle, the reward favours mode "
        f"{task.best_mode}. Behaviour data: mean reward {data_score['mean_reward']:.3f}, "
        f"{100 * data_score['best_mode_fraction']:.1f}% on the best mode. Runs in {run_dir}/."
    )
    rows = [{"method": "behaviour data", "agent": "-", **data_score, "seconds": 0.0}]
    for label, agent, overrides in DEMO_METHODS:
        agent_config = _demo_agent_config(agent, overrides)
        train_config = TrainConfig(
            steps=steps,
            batch_size=256,
            updates_per_call=steps // 3,
            eval_every=steps // 3,
            eval_samples=2048,
            checkpoint_every=0,
            progress=progress,
        )
        config = RunConfig(
            agent=agent, dataset=bandit.DATASET_ID, seeds=(seed,), agent_config=agent_config, train=train_config
        )
        slug = label.lower().replace(" ", "-")
        print(f"--- {label} ({agent}{''.join(f', {k}={v}' for k, v in overrides.items())})")
        if agent == "qipo":
            print(
                f"    updates 1-{agent_config.warmup_steps}: behaviour warm-up (plain CFM); then policy improvement, "
                f"every support set re-drawn every {agent_config.renew_every} updates"
            )
        start = time.perf_counter()
        result = train(config, run_dir / slug, dataset=dataset)
        final = result.final_eval(seed) or {}
        rows.append(
            {
                "method": label,
                "agent": agent,
                "mean_reward": final.get("mean_reward", float("nan")),
                "best_mode_fraction": final.get("best_mode_fraction", float("nan")),
                "seconds": time.perf_counter() - start,
            }
        )
    print()
    print(f"{'method':<20} {'mean reward':>12} {'on best mode':>13} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['method']:<20} {row['mean_reward']:>12.3f} {100 * row['best_mode_fraction']:>12.1f}% "
            f"{row['seconds']:>8.1f}"
        )
    return rows


# ----------------------------------------------------------------------------- the command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rl.train",
        description="Train an offline-RL agent (FlowQ, QIPO, IQL). With no arguments: the built-in bandit demo.",
        epilog="Set any agent config field with --agent.FIELD=VALUE and any loop field with --train.FIELD=VALUE "
        "(see --print-config).",
        allow_abbrev=False,
    )
    p.add_argument("--agent", choices=AGENTS, help="the algorithm")
    p.add_argument("--dataset", default=None, help="Minari id or path, or 'bandit' for the built-in task (default)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="one training seed (default 0)")
    seeds.add_argument("--seeds", default=None, help="several seeds trained together in one process, e.g. 0,1,2")
    p.add_argument("--steps", type=int, default=None, help="gradient updates per seed (default 1000000; bandit 3000)")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate every N updates (0: only at the end)")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N updates (0: at the end)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<agent>-<dataset>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its checkpoint")
    p.add_argument(
        "--evaluate",
        metavar="RUN_DIR",
        default=None,
        help="evaluate the checkpoint in RUN_DIR again (same episodes as its evaluations); --eval-episodes and "
        "--agent.FIELD=VALUE (e.g. best_of_n, sample_steps) may be given",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--demo", action="store_true", help="run the built-in bandit demo (what no arguments do)")
    return p


def _parse_seeds(text: str, parser: argparse.ArgumentParser) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        parser.error(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}")
    if not seeds:
        parser.error("--seeds needs at least one seed")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m rl.train`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv:
        run_demo()
        return 0
    args, extras = parser.parse_known_args(argv)
    overrides = _split_overrides(extras, parser)
    import json

    from rl.trainer import (
        DivergenceError,
        RunConfig,
        TrainConfig,
        load_named_dataset,
        load_run_config,
        make_mesh,
        resume,
        train,
    )

    if args.demo:
        run_demo(progress=not args.no_progress, run_dir=args.run_dir)
        return 0

    if args.evaluate is not None:
        return _evaluate_command(args, overrides, parser)

    if args.resume is not None:
        _refuse_other_options(
            args,
            overrides,
            parser,
            allowed=("resume", "steps"),
            why="--resume continues a run with its saved config; only --steps and --no-progress may be given",
        )
        try:
            config = load_run_config(args.resume)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        if args.print_config:
            print(json.dumps(config.to_dict(), indent=2))
            return 0
        try:
            dataset = load_named_dataset(config.dataset)
        except (FileNotFoundError, ValueError) as e:
            parser.error(f"cannot load the run's dataset {config.dataset!r}: {e}")
        try:
            progress = False if args.no_progress else None
            result = resume(args.resume, steps=args.steps, dataset=dataset, progress=progress)
        except (FileNotFoundError, RuntimeError, ValueError) as e:
            parser.error(str(e))
        except DivergenceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        _print_summary(result)
        return 0

    if args.agent is None:
        parser.error("--agent is required (one of " + ", ".join(AGENTS) + "), or --resume RUN_DIR")
    agent = get_agent(args.agent)
    dataset = args.dataset if args.dataset is not None else "bandit"
    try:
        agent_config = apply_overrides(agent.Config(), overrides["agent"], prefix="agent")
        loop = {
            "steps": args.steps,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "checkpoint_every": args.checkpoint_every,
        }
        loop = {k: v for k, v in loop.items() if v is not None}
        if _is_bandit(dataset):  # the small task's own loop defaults: the demo's length, three evaluations
            loop = {"steps": DEMO_STEPS, "updates_per_call": DEMO_STEPS // 3, "eval_every": DEMO_STEPS // 3, **loop}
        train_config = TrainConfig(**loop)
        train_config = apply_overrides(train_config, overrides["train"], prefix="train")
        if args.no_progress:
            train_config = dataclasses.replace(train_config, progress=False)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    seeds = _parse_seeds(args.seeds, parser) if args.seeds is not None else (args.seed if args.seed is not None else 0,)
    if os.path.isdir(dataset):  # a dataset directory: save its absolute path, so resume works from anywhere
        dataset = os.path.abspath(dataset)
    try:
        config = RunConfig(
            agent=args.agent, dataset=dataset, seeds=seeds, agent_config=agent_config, train=train_config
        )
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    run_dir = Path(args.run_dir) if args.run_dir is not None else _default_run_dir(args.agent, dataset)
    try:
        if train_config.data_parallel:
            make_mesh(train_config.batch_size)  # the batch must split over the devices
        data = load_named_dataset(dataset)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    try:
        result = train(config, run_dir, dataset=data)
    except FileExistsError as e:
        parser.error(str(e))
    except DivergenceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _print_summary(result)
    return 0


def _is_bandit(dataset: str) -> bool:
    from rl import bandit

    return bandit.is_bandit(dataset)


def _default_run_dir(agent: str, dataset: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset).strip("-").lower() or "dataset"
    return Path("runs") / f"{agent}-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


_RUN_OPTIONS = (
    "agent", "dataset", "seed", "seeds", "steps", "eval_every", "eval_episodes", "checkpoint_every", "run_dir", "resume"
)
"""The options that set up a run (`--no-progress` and `--print-config` are allowed with every mode)."""


def _refuse_other_options(
    args: argparse.Namespace,
    overrides: dict[str, dict[str, str]],
    parser: argparse.ArgumentParser,
    *,
    allowed: Sequence[str],
    why: str,
) -> None:
    """Exit with `why` and the offending options if any run option or override group outside `allowed` was given
    (`allowed` names options as in `_RUN_OPTIONS` and override groups as `"agent."` / `"train."`)."""
    given = [f"--{n.replace('_', '-')}" for n in _RUN_OPTIONS if n not in allowed and getattr(args, n) is not None]
    given += [f"--{g}.{k}" for g in ("agent", "train") if f"{g}." not in allowed for k in overrides[g]]
    if given:
        parser.error(f"{why} (got {', '.join(given)})")


def _evaluate_command(args: argparse.Namespace, overrides: dict[str, dict[str, str]], parser) -> int:
    """`--evaluate RUN_DIR`: evaluate a run's checkpoint again, with optional action-time overrides."""
    import numpy as np

    from rl.trainer import evaluate_run, load_named_dataset, load_run_config

    _refuse_other_options(
        args,
        overrides,
        parser,
        allowed=("eval_episodes", "agent."),
        why="--evaluate takes only --eval-episodes and --agent.FIELD=VALUE overrides",
    )
    try:
        config = load_run_config(args.evaluate)
        agent_config = apply_overrides(config.agent_config, overrides["agent"], prefix="agent")
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    try:
        dataset = load_named_dataset(config.dataset)
    except (FileNotFoundError, ValueError) as e:
        parser.error(f"cannot load the run's dataset {config.dataset!r}: {e}")
    try:
        step, results = evaluate_run(
            args.evaluate, agent_config=agent_config, episodes=args.eval_episodes, dataset=dataset
        )
    except (FileNotFoundError, TypeError, ValueError) as e:
        parser.error(str(e))
    label = ", ".join(f"{k}={v}" for k, v in overrides["agent"].items()) or "the run's own settings"
    print(f"{args.evaluate} at step {step}, {label}:")
    for seed, metrics in results.items():
        print(f"  seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "score"))
    scores = np.array([m["score"] for m in results.values()])
    print(
        f"  score over seeds: {scores.mean():.4g} ± {scores.std():.4g} "
        f"(appended to {Path(args.evaluate) / 'evaluations.jsonl'})"
    )
    return 0


def _print_summary(result: Any) -> None:
    print(f"run directory: {result.run_dir} (step {result.step})")
    for seed in result.config.seeds:
        final = result.final_eval(seed)
        if final is not None:
            print(f"  seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k != "step"))


if __name__ == "__main__":
    sys.exit(main())

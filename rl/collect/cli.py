"""The command line `python -m rl.collect RECIPE --env ENV ...`.

The whole command line is checked before any environment step: the environment, the dataset id
(its form, and that no dataset has it unless `--force`), the behaviour-policy file (a readable
`.npz` whose sizes fit the environment), the numbers and the output paths. A bad one ends the
command with one line on stderr, `python -m rl.collect: error: ...`, and exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rl.behavior import BehaviorPolicy, load_behavior_policy
from rl.cli import Parser
from rl.collect.recipes import (
    check_noise,
    check_policy_fits,
    collect_medium_replay,
    collect_policy,
    collect_random,
    combine_datasets,
)
from rl.collect.writer import default_dataset_id, summarize, write_dataset
from rl.data import check_dataset_id, resolve_dataset_path
from rl.data.minari import minari_root
from rl.envs import ENV_IDS, env_short_name, ref_scores_for, resolve_env_id

__all__ = ["RECIPES", "main"]

RECIPES = ("random", "medium", "expert", "medium-replay", "medium-expert")
# Transitions in D4RL's random/medium/expert datasets.
DEFAULT_STEPS = 1_000_000


def _parser() -> Parser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", help=f"environment: one of {sorted(ENV_IDS)} or a Gymnasium id (e.g. Hopper-v5)")
    common.add_argument("--seed", type=int, default=0, help="seed; the dataset is deterministic given it (default 0)")
    common.add_argument(
        "--dataset-id",
        help="Minari id to write, namespace/env/name-vN (default local/<env>/<recipe>-v0); "
        "written under $MINARI_DATASETS_PATH (default ~/.minari/datasets)",
    )
    common.add_argument("--force", action="store_true", help="replace an existing dataset with the same id")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")

    stepping = argparse.ArgumentParser(add_help=False)
    stepping.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="transitions to record (default 1000000)")
    stepping.add_argument("--num-envs", type=int, default=10, help="synchronous environments (default 10)")

    parser = Parser(
        prog="python -m rl.collect",
        description="Make a D4RL-style Minari dataset locally on Gymnasium v5 MuJoCo. "
        "Load it afterwards with rl.data.load_dataset('<dataset-id>'). See docs/data.md.",
        epilog="examples:\n"
        "  python -m rl.collect random --env hopper\n"
        "  python -m rl.collect medium --policy halfcheetah-medium.npz\n"
        "  python -m rl.collect expert --policy hopper-expert.npz --noise 0.1\n"
        "  python -m rl.collect medium-replay --env walker2d --max-steps 300000\n"
        "  python -m rl.collect medium-expert --env halfcheetah",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="recipe", required=True, metavar="RECIPE")
    sub.add_parser("random", parents=[common, stepping], help="uniform random actions")
    for name in ("medium", "expert"):
        p = sub.add_parser(
            name,
            parents=[common, stepping],
            help=f"actions of {'an' if name == 'expert' else 'a'} {name} behaviour policy (.npz, see docs/data.md)",
        )
        p.add_argument("--policy", required=True, help="behaviour policy .npz file (its env_id is the default --env)")
        p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian action noise, then clipped (default 0)")
    p = sub.add_parser(
        "medium-replay",
        parents=[common],
        help="replay buffer of SAC trained until a target return",
        description="Train SAC online and store its whole replay buffer, stopping when the mean "
        "deterministic evaluation return reaches the target (or at --max-steps).",
    )
    p.add_argument("--target-return", type=float, help="raw return at which SAC stops")
    p.add_argument(
        "--target-score",
        type=float,
        default=40.0,
        help="target as a D4RL-normalised score, used when --target-return is not given (default 40)",
    )
    p.add_argument("--max-steps", type=int, default=300_000, help="environment-step budget of SAC (default 300000)")
    p.add_argument("--eval-every", type=int, default=5000, help="steps between evaluations (default 5000)")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default 5)")
    p.add_argument("--save-policy", help="also save the trained actor as a behaviour-policy .npz here")
    p = sub.add_parser(
        "medium-expert",
        parents=[common],
        help="two datasets concatenated (default local/<env>/medium-v0 then local/<env>/expert-v0)",
    )
    p.add_argument("--from", dest="sources", nargs="+", metavar="DATASET", help="datasets (ids or paths) to concatenate")
    return parser


def _sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _check(args: argparse.Namespace, fail: Callable[[str], NoReturn]) -> tuple[str, str, BehaviorPolicy | None]:
    """Validate the whole command line before any work: `(env_id, dataset_id, policy or None)`."""
    for name in ("steps", "num_envs", "max_steps", "eval_every", "eval_episodes"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    policy = None
    try:
        if args.recipe in ("medium", "expert"):
            check_noise(args.noise)
            policy = load_behavior_policy(args.policy)
            env_id = resolve_env_id(args.env) if args.env else policy.env_id
            check_policy_fits(policy, env_id)
        elif args.env:
            env_id = resolve_env_id(args.env)
        else:
            fail(f"{args.recipe}: --env is required.")
        dataset_id = check_dataset_id(args.dataset_id or default_dataset_id(env_id, args.recipe))
    except (OSError, ValueError, TypeError) as e:
        fail(str(e))
    path = minari_root() / dataset_id
    if path.exists() and not args.force:
        fail(f"Dataset {dataset_id!r} already exists at {path}; use --force to replace it.")
    if args.recipe == "medium-replay":
        if args.target_return is None and ref_scores_for(env_id) is None:
            fail(f"{env_id} has no reference scores: give --target-return.")
        if args.save_policy is not None and not Path(args.save_policy).expanduser().resolve().parent.is_dir():
            fail(f"--save-policy {args.save_policy}: the directory {Path(args.save_policy).parent} does not exist.")
    if args.recipe == "medium-expert":
        for source in args.sources or _default_sources(env_id):
            try:
                found = resolve_dataset_path(source)
            except (OSError, ValueError) as e:
                fail(str(e))
            if found is None:
                fail(f"Dataset {source!r} is not on this machine; make it first (python -m rl.collect --help).")
    return env_id, dataset_id, policy


def _default_sources(env_id: str) -> list[str]:
    short = env_short_name(env_id)
    return [f"local/{short}/medium-v0", f"local/{short}/expert-v0"]


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point (`python -m rl.collect --help`).

    Args:
        argv: arguments (default `sys.argv[1:]`).

    Returns:
        The directory of the dataset written.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    env_id, dataset_id, policy = _check(args, parser.error)
    command = "python -m rl.collect " + shlex.join(list(sys.argv[1:] if argv is None else argv))
    progress = not args.no_progress
    start = time.perf_counter()
    recipe: dict[str, Any] = {"recipe": args.recipe, "seed": args.seed, "command": command, "env_id": env_id}

    if args.recipe == "random":
        episodes = collect_random(env_id, args.steps, seed=args.seed, num_envs=args.num_envs, progress=progress)
        recipe.update(num_envs=args.num_envs)
    elif args.recipe in ("medium", "expert"):
        assert policy is not None
        episodes = collect_policy(
            policy, args.steps, seed=args.seed, noise=args.noise, env_id=env_id, num_envs=args.num_envs, progress=progress
        )
        recipe.update(
            num_envs=args.num_envs,
            noise=args.noise,
            policy={
                "file": os.path.basename(args.policy),
                "sha256": _sha256(args.policy),
                "algo": policy.algo,
                "source": policy.source,
            },
        )
    elif args.recipe == "medium-replay":
        target = args.target_return
        if target is None:
            ref = ref_scores_for(env_id)
            target = ref.min_score + args.target_score / 100.0 * (ref.max_score - ref.min_score)
        episodes, run = collect_medium_replay(
            env_id,
            seed=args.seed,
            target_return=target,
            max_steps=args.max_steps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            save_policy=args.save_policy,
            progress=progress,
        )
        recipe.update(run)
    else:  # medium-expert
        sources = args.sources or _default_sources(env_id)
        try:
            episodes, src_env, infos = combine_datasets(sources)
        except (OSError, ValueError) as e:
            parser.error(str(e))
        if src_env != env_id:
            parser.error(f"The datasets {sources} are of {src_env}, not {env_id}.")
        recipe["sources"] = infos
    summary = summarize(episodes, env_id)
    path = write_dataset(dataset_id, episodes, env_id, recipe, force=args.force)
    elapsed = time.perf_counter() - start
    line = f"wrote {dataset_id} ({summary['num_transitions']} transitions, {summary['num_episodes']} episodes) to {path}"
    print(line)
    if "mean_return" in summary:
        norm = summary.get("normalized_mean_return")
        print(
            f"mean return of the {summary['complete_episodes']} complete episodes: {summary['mean_return']:.1f} "
            f"± {summary['std_return']:.1f}" + (f" (normalised {norm:.1f})" if norm is not None else "")
        )
    print(f"took {elapsed:.1f} s; load it with rl.data.load_dataset({dataset_id!r})")
    return path

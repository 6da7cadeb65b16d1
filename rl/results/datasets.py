"""The results grid's datasets: D4RL's recipes as `rl.collect` commands, and a check that a dataset made on this
machine holds the transitions the ledger's runs of it trained on (`python -m rl.results datasets`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import grid as grids
from . import ledger

__all__ = ["NOISE", "check_fingerprint", "make", "recipe"]

NOISE = 0.1  # Gaussian action noise of the medium and expert recipes (D4RL's)


def make(envs: Sequence[str], kinds: Sequence[str], namespace: str, policies: Path,
         entries: Sequence[ledger.Entry]) -> int:
    """Make each dataset of `envs` x `kinds` that is not on this machine, then check each against the ledger's
    `entries`; the exit status (1: one differs)."""
    from rl.data import resolve_dataset_path

    differ = 0
    for env in envs:
        for kind in kinds:
            for dataset, cmd in recipe(env, kind, namespace, policies):
                if resolve_dataset_path(dataset) is not None:
                    print(f"{dataset}: present")
                else:
                    if kind == "medium-replay":
                        print(f"{dataset}: SAC trains online until its evaluations reach a D4RL score of 40 (10-40 min "
                              "on a 2-core CPU); its whole replay buffer becomes the dataset.", flush=True)
                    print("$", grids.shown(cmd), flush=True)
                    subprocess.run(cmd, check=True)
                same, message = check_fingerprint(dataset, entries)
                print(f"{dataset}: {message}", flush=True)
                differ += not same
    return 1 if differ else 0


def check_fingerprint(dataset: str, entries: Sequence[ledger.Entry]) -> tuple[bool, str]:
    """Whether the dataset on this machine holds the transitions the ledger's runs of it trained on, and what was found.

    Datasets are not committed: each machine remakes them from their recipes, and a run only counts beside the
    ledger's if it trains on the same transitions (`rl.train.summary.dataset_fingerprint`, which every run records).
    """
    from rl.data import load_named
    from rl.train.summary import dataset_fingerprint

    recorded = {e.summary["dataset"].get("fingerprint") for e in entries if e.dataset == dataset} - {None}
    if not recorded:
        return True, "no run in the ledger records its fingerprint; nothing to check"
    found = dataset_fingerprint(load_named(dataset))
    runs = sum(e.dataset == dataset for e in entries)
    if found in recorded:
        return True, f"fingerprint {found[:19]}, as the ledger's runs of it ({runs})"
    return False, (f"fingerprint {found[:19]} differs from the one the ledger's runs trained on "
                   f"({', '.join(sorted(f[:19] for f in recorded))}): runs on it would not be comparable with "
                   "theirs. Remake it with the same library versions as the recorded recipe's, or start a new "
                   "namespace (--namespace).")


def recipe(env: str, kind: str, namespace: str, policies: Path) -> list[tuple[str, list[str]]]:
    """The datasets a kind needs, in order, each with the `rl.collect` command that makes it (D4RL's recipes).

    medium / expert: the behaviour policy `<env>-<kind>.npz` with Gaussian action noise 0.1; medium-expert: the two
    concatenated; medium-replay: the replay buffer of SAC trained until it reaches a score of 40.
    """
    dataset = grids.dataset_id(env, kind, namespace)
    collect = [sys.executable, "-m", "rl.collect"]
    tail = ["--seed", "0", "--dataset-id", dataset, "--no-progress"]
    if kind in ("medium", "expert"):
        return [(dataset, [*collect, kind, "--env", env, "--policy", str(policies / f"{env}-{kind}.npz"), "--noise",
                           str(NOISE), *tail])]
    if kind == "medium-expert":
        parts = [grids.dataset_id(env, k, namespace) for k in ("medium", "expert")]
        return [*recipe(env, "medium", namespace, policies), *recipe(env, "expert", namespace, policies),
                (dataset, [*collect, "medium-expert", "--env", env, "--from", *parts, *tail])]
    if kind == "medium-replay":
        return [(dataset, [*collect, "medium-replay", "--env", env, "--target-score", "40", *tail])]
    raise ValueError(f"no recipe for {kind!r}; the kinds are medium, expert, medium-expert and medium-replay.")

"""Make a D4RL-style `medium` dataset with `python -m rl.collect` and check it against the policy's own return.

    python benchmarks/collect_speed.py                       # halfcheetah-medium, 1M transitions
    python benchmarks/collect_speed.py --policy ../shared/policies/hopper-medium.npz --steps 200000
    python benchmarks/collect_speed.py --eval-episodes 200

It runs the command line exactly as a user would (`rl.collect.main`, default settings: 10
synchronous environments, no action noise) into a temporary `MINARI_DATASETS_PATH`, and prints the
wall time and transitions per second. Then it evaluates the same policy with `rl.envs.evaluate`
(deterministic, episodes seeded 0..N-1, which the dataset's episodes are not) and compares the
dataset's mean episode return with the evaluated one: the difference is given in units of its
standard error, so |z| below about 2 means the dataset's episodes behave like the policy's.

Needs a behaviour policy file; by default `../shared/policies/halfcheetah-medium.npz` from the
repository root (the script stops with a message when it is absent).
"""

import argparse
import math
import os
import pathlib
import platform
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_POLICY = ROOT / ".." / "shared" / "policies" / "halfcheetah-medium.npz"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default=str(DEFAULT_POLICY), help="behaviour policy .npz")
    parser.add_argument("--steps", type=int, default=1_000_000, help="transitions (default 1000000)")
    parser.add_argument("--eval-episodes", type=int, default=100, help="evaluation episodes (default 100)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.policy):
        raise SystemExit(f"No behaviour policy at {args.policy} (pass --policy FILE.npz).")

    with tempfile.TemporaryDirectory() as root:
        os.environ["MINARI_DATASETS_PATH"] = root
        os.environ["RL_DATA_CACHE_DIR"] = os.path.join(root, "cache")
        from rl.behavior import load_behavior_policy
        from rl.collect import main as collect
        from rl.data import load_dataset
        from rl.envs import evaluate, normalized_score, ref_scores_for

        start = time.perf_counter()
        collect(["medium", "--policy", args.policy, "--steps", str(args.steps), "--dataset-id", "bench/env/medium-v0", "--no-progress"])
        wall = time.perf_counter() - start
        ds = load_dataset("bench/env/medium-v0")
        recipe = ds.recipe["summary"]
        complete = ds.episode_returns[: recipe["complete_episodes"]]

        policy = load_behavior_policy(args.policy)
        start = time.perf_counter()
        res = evaluate(lambda key, obs: policy(obs), policy.env_id, num_episodes=args.eval_episodes, jit=False)
        eval_wall = time.perf_counter() - start

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"policy: {os.path.basename(args.policy)} on {policy.env_id}\n")
    print(f"collect: {len(ds)} transitions, {len(ds.episode_lengths)} episodes in {wall:.1f} s "
          f"({len(ds) / wall:.0f} transitions/s, writing the Minari dataset included)")
    print(f"evaluate: {args.eval_episodes} episodes in {eval_wall:.1f} s\n")
    ref = ref_scores_for(policy.env_id)
    sem_d = complete.std() / math.sqrt(len(complete))
    sem_e = res.std / math.sqrt(len(res.returns))
    z = (complete.mean() - res.mean) / math.hypot(sem_d, sem_e)
    print("| returns | episodes | mean ± std | standard error | normalised mean |")
    print("|---|---|---|---|---|")
    for name, r, sem in (("dataset (complete episodes)", complete, sem_d), ("evaluate()", res.returns, sem_e)):
        norm = f"{normalized_score(np.mean(r), *ref):.1f}" if ref else "-"
        print(f"| {name} | {len(r)} | {np.mean(r):.1f} ± {np.std(r):.1f} | {sem:.1f} | {norm} |")
    print(f"\ndifference of the means: {complete.mean() - res.mean:+.1f} (z = {z:+.2f})")


if __name__ == "__main__":
    main()

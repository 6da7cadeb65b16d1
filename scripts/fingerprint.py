"""Fingerprints of the agents' numbers: sha256 of the final state of a fixed-seed 2000-update run of each agent.

A refactoring or a speed-up that must not change any number is checked by running this before and after it: the
printed hashes must be identical. The data is a 3000-transition random-action Hopper-v5 dataset made in a temporary
Minari directory (no download), the runs train seeds 0 and 1 together at batch 64 with each agent's default config
(QIPO with a 500-update warm-up, renewals every 250 updates and a pool of 1000 rows, so that both of its phases
run), rewards untransformed, evaluation off.

    python scripts/fingerprint.py                  # about a minute on two CPU cores
    python scripts/fingerprint.py --out fp.json    # also write the hashes (and per-leaf hashes) as JSON

`ordered` hashes every array of the final state in pytree order; `multiset` hashes the sorted per-array hashes, so
it stays equal when a refactoring only reorders the state's fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="write the hashes as JSON to this file")
    parser.add_argument("--agents", default="iql,flowq,qipo", help="comma-separated agents (default all three)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="rl-fingerprint-")
    os.environ.update(MINARI_DATASETS_PATH=f"{root}/minari", RL_DATA_CACHE_DIR=f"{root}/cache", HF_HUB_OFFLINE="1")

    import equinox as eqx
    import jax
    import numpy as np

    from rl.agents import get_agent
    from rl.collect import collect_random, write_dataset
    from rl.data import DataConfig
    from rl.train import RunConfig, TrainConfig, train

    episodes = collect_random("Hopper-v5", 3000, seed=7, num_envs=2, progress=False)
    write_dataset("fp/hopper/random-v0", episodes, "Hopper-v5", {"recipe": "random", "seed": 7})
    out = {}
    for agent in args.agents.split(","):
        config = get_agent(agent).Config()
        if agent == "qipo":
            config = dataclasses.replace(config, warmup_steps=500, renew_every=250, pool_size=1000)
        loop = TrainConfig(steps=2000, batch_size=64, updates_per_call=500, eval_every=0, eval_episodes=0,
                           checkpoint_every=0, progress=False, verbose=False)
        run = RunConfig(agent=agent, dataset="fp/hopper/random-v0", seeds=(0, 1), agent_config=config, train=loop,
                        data=DataConfig(reward="none"))
        state = train(run, f"{root}/runs/{agent}").state
        leaves = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state, eqx.is_array))]
        ordered = hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()
        per_leaf = sorted(hashlib.sha256(x.tobytes()).hexdigest()[:16] + f"{x.shape}{x.dtype}" for x in leaves)
        multiset = hashlib.sha256("".join(per_leaf).encode()).hexdigest()
        out[agent] = {"ordered": ordered, "multiset": multiset, "leaves": per_leaf}
        print(f"{agent:<6} ordered {ordered}  multiset {multiset}  ({len(leaves)} arrays)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

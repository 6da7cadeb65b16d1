"""How many actions does a dataset hold per state? A nearest-neighbour look at the behaviour's local spread.

A flow policy can only beat a Gaussian where the behaviour at a state has more than one mode. A dataset has one action
per state, so this looks at neighbourhoods: for `--queries` random transitions, the `--k` nearest states (Euclidean,
observations standardised by the dataset's mean and std) from *other* episodes, and the actions taken there. It prints,
as medians over the queries:

- `obs dist`: the distance to those neighbours (in standardised units; a neighbourhood is only "one state" if small);
- `action std`: the root mean square over action dimensions of the neighbours' action standard deviation; on a
  deterministic policy plus Gaussian noise of standard deviation `sigma` it reads about `sigma` (plus the policy's own
  variation across the neighbourhood);
- with `--split N` (transitions before index N are one source, the rest another, e.g. medium-expert's medium then
  expert halves): `other share`, the mean fraction of neighbours from the other source, and `gap`, over the
  neighbourhoods with at least two neighbours of each source, the distance between the two sources' mean actions
  (action units): the separation of two modes at one state.

With `--first T` the queries are drawn from the first `T` steps of the episodes only: every episode starts from the
environment's initial-state distribution, so there two behaviour policies meet at the same states even where their
later trajectories never do.

    python scripts/action_modes.py results/hopper/medium-v0 results/hopper/medium-expert-v0 --split 1000000
    python scripts/action_modes.py results/halfcheetah/medium-expert-v0 --split 1000000 --first 5
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rl.data import load_named


POOL = 64
"""Nearest states searched per query for `k` from other episodes."""


def neighbours(
    obs: jax.Array, queries: np.ndarray, episode: np.ndarray, k: int, pool: int = POOL
) -> tuple[np.ndarray, np.ndarray]:
    """The queries that have `k` neighbours from other episodes among their `pool` nearest states, and those
    neighbours' indices `[q, k]`. A query whose nearest states all lie on its own episode (a periodic gait revisits
    its own states) is left out."""

    @jax.jit
    def nearest(q_obs):
        d2 = jnp.sum(obs**2, axis=1)[None, :] - 2.0 * q_obs @ obs.T + jnp.sum(q_obs**2, axis=1)[:, None]
        return jax.lax.top_k(-d2, pool)[1]

    kept, found = [], []
    for start in range(0, len(queries), 16):
        chunk = queries[start : start + 16]
        near = np.asarray(nearest(obs[chunk]))
        for q, row in zip(chunk, near):
            other = row[episode[row] != episode[q]][:k]
            if len(other) == k:
                kept.append(q)
                found.append(other)
    if not found:
        raise SystemExit(f"no query has {k} neighbours from other episodes among its {pool} nearest states; lower --k")
    return np.asarray(kept), np.stack(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="dataset ids or directories (as python -m rl.train --dataset)")
    parser.add_argument("--queries", type=int, default=512, help="random transitions to look around")
    parser.add_argument("--k", type=int, default=8, help="neighbours per query, from other episodes")
    parser.add_argument("--split", type=int, default=None,
                        help="transitions before this index are one source, the rest another (medium-expert: 1000000)")
    parser.add_argument("--first", type=int, default=None,
                        help="draw the queries from the first FIRST steps of the episodes only (their shared starts)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    header = f"{'dataset':<36} {'obs dist':>9} {'action std':>11}"
    print(header + (f" {'other share':>12} {'gap':>7} {'mixed':>6}" if args.split is not None else ""))
    for name in args.datasets:
        data = load_named(name)
        tr = data.transitions
        obs = (tr.obs - data.obs_mean) / data.obs_std
        action = np.asarray(tr.action)
        episode = np.repeat(np.arange(len(data.episode_lengths)), data.episode_lengths)
        rng = np.random.default_rng(args.seed)
        pool = np.arange(len(data))
        if args.first is not None:
            starts = np.cumsum(data.episode_lengths) - data.episode_lengths
            pool = pool[pool - np.repeat(starts, data.episode_lengths) < args.first]
        queries = rng.choice(pool, size=min(args.queries, len(pool)), replace=False)
        queries, near = neighbours(obs, queries, episode, args.k)
        if len(queries) < args.queries:
            print(f"{name}: {args.queries - len(queries)} of {args.queries} queries left out (fewer than {args.k} "
                  f"neighbours from other episodes among their {POOL} nearest)", file=sys.stderr)
        dist = np.linalg.norm(np.asarray(obs)[near] - np.asarray(obs)[queries][:, None], axis=-1)
        spread = np.sqrt(np.mean(np.var(action[near], axis=1), axis=-1))
        line = f"{name:<36} {np.median(dist):>9.3f} {np.median(spread):>11.3f}"
        if args.split is not None:
            other = (near >= args.split) != (queries >= args.split)[:, None]
            gaps = []
            for row in near:
                first, second = row[row < args.split], row[row >= args.split]
                if len(first) >= 2 and len(second) >= 2:
                    gaps.append(np.linalg.norm(action[first].mean(0) - action[second].mean(0)))
            gap = f"{np.median(gaps):>7.3f}" if gaps else f"{'-':>7}"
            line += f" {other.mean():>12.3f} {gap} {len(gaps):>6}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""How closely does a trained agent act like each source of a mixed dataset, on that source's own states?

A medium-expert dataset is two policies' episodes, one after the other. An offline agent can only do as well as its
imitation of the better one along that one's trajectories, so this reads, off a run's final checkpoint, per seed:

- `|plain - data|` on `--states` random states of each source (before / after `--split`): the mean distance
  (Euclidean, action units) between the agent's plain action (IQL: its mean; the flows: one draw) and the dataset's
  action there. Behaviour noise of standard deviation 0.1 alone puts a perfect mean `0.1 sqrt(act_dim)` from the data
  action, and an exact draw of the same noise `sqrt(2)` times that;
- at the episodes' first step (`t = 0`, where both sources start from the environment's initial-state distribution,
  so the two policies act at the same states): the distance from the plain action to the episode's own first action,
  at each source's starts (an agent that follows the second source is far from the first's actions at the first's
  starts and close at the second's), and `Q(2nd) - Q(1st)`, how much the agent's own critic (`min_i Q_i`) prefers
  the second source's first actions to the first's at the first source's starts.

With `--behavior` a QIPO run acts with its frozen behaviour flow (the clone its warm-up left, the reference of every
renewal) instead of its policy: how well that reference imitates each source.

    python scripts/imitation_gap.py runs/results/halfcheetah-medium-expert-iql-... --split 1000000
    python scripts/imitation_gap.py runs/results/halfcheetah-medium-expert-qipo-... --split 1000000 --behavior
"""

import argparse

import jax
import numpy as np
from run_states import behavior_clone, distance, load_run, with_best_of_n

from rl.agents.nets import min_q


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of iql, flowq or qipo (written by python -m rl.train)")
    parser.add_argument("--split", type=int, required=True,
                        help="transitions before this index are the first source (medium-expert: 1000000)")
    parser.add_argument("--states", type=int, default=2048, help="random states per source")
    parser.add_argument("--behavior", action="store_true",
                        help="QIPO runs: act with the frozen behaviour flow instead of the policy")
    args = parser.parse_args(argv)
    print(f"{'run':<58} {'seed':>4} {'|plain-data| 1st':>16} {'2nd':>6} {'t=0: to 1st':>11} {'to 2nd':>7} "
          f"{'Q(2nd)-Q(1st)':>13}")
    for name in args.runs:
        run = load_run(name)
        data, size = run.data, len(run.dataset)
        if not 0 < args.split < size:
            raise SystemExit(f"--split must lie inside the dataset's {size} transitions, got {args.split}")
        rng = np.random.default_rng(0)
        sources = [rng.integers(0, args.split, args.states), rng.integers(args.split, size, args.states)]
        lengths = np.asarray(run.dataset.episode_lengths)
        starts = np.cumsum(lengths) - lengths
        first, second = starts[starts < args.split], starts[starts >= args.split]
        count = min(len(first), len(second))
        acting = behavior_clone(run, name) if args.behavior else (lambda state: state)
        for seed, state in run.states():
            state, key = with_best_of_n(acting(state), 1), jax.random.key(seed)
            gaps = [distance(run.agent.act(state, data.obs[idx], key=key), data.action[idx]) for idx in sources]
            at_start = [distance(run.agent.act(state, data.obs[idx], key=key), data.action[idx])
                        for idx in (first, second)]
            obs = data.obs[first[:count]]
            prefer = min_q(state.critic.q, obs, data.action[second[:count]]) - min_q(state.critic.q, obs,
                                                                                        data.action[first[:count]])
            print(f"{name[-58:]:<58} {seed:>4} {gaps[0]:>16.3f} {gaps[1]:>6.3f} "
                  f"{at_start[0]:>11.3f} {at_start[1]:>7.3f} {float(prefer.mean()):>+13.2f}")


if __name__ == "__main__":
    main()

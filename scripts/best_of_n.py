"""What does best-of-N by Q do to a trained agent's actions, as its own critic sees them? Read it off the checkpoints.

All three agents act by default with best-of-N: N candidates per state (IQL: its mean and N - 1 Gaussian draws; the
flows: N draws of the ODE sampler) and the one of highest `min_i Q_i(s, a)` of the online critic is kept. Whether that
helps depends on whether the critic ranks the candidates correctly, which it can only do near the data's actions.

For every run given, on dataset states (`--states` of them, the same for every run of a dataset), this calls the
agent's own `act` twice: with `policy.best_of_n=1` (the plain action: IQL's mean, one flow draw) and with the run's
setting (or `--n`), and prints, per seed, averaged over the states:

- `|best - plain|`: how far the chosen action lies from the plain one (action units, Euclidean);
- `|plain - data|`, `|best - data|`: how far each lies from the dataset's action at that state;
- `Q(plain) - V`, `Q(best) - V`: the critic's advantage of each (reward-scaled units), and their difference, the
  gain the critic promises for choosing (V: the critic's value network; 0 for QIPO's softmax critic, which has none).

Put beside the scores of both ways of acting on the same checkpoints (the `*-act-kinds` screens on the Study page),
it separates a critic whose promise holds from one that is extrapolating: a large promised gain with a lower score
means the chosen actions lie where the critic was not trained.

    python scripts/best_of_n.py runs/results/halfcheetah-medium-expert-iql-... runs/results/...-flowq-...
"""

import argparse

import jax
import numpy as np
from run_states import distance, load_run, with_best_of_n

from rl.agents.nets import min_q, state_values


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of iql, flowq or qipo (written by python -m rl.train)")
    parser.add_argument("--states", type=int, default=2048, help="dataset states to act at")
    parser.add_argument("--n", type=int, default=None, help="candidates per state (default: the run's best_of_n)")
    args = parser.parse_args(argv)
    print(f"{'run':<58} {'seed':>4} {'N':>3} {'|best - plain|':>14} {'|plain - data|':>14} {'|best - data|':>13} "
          f"{'Q(plain) - V':>12} {'Q(best) - V':>11} {'promised':>8}")
    for name in args.runs:
        run = load_run(name)
        index = np.random.default_rng(0).integers(0, len(run.dataset), args.states)
        obs, action = run.data.obs[index], run.data.action[index]
        n = args.n or run.config.agent_config.policy.best_of_n
        for seed, state in run.states():
            key = jax.random.key(seed)
            plain = run.agent.act(with_best_of_n(state, 1), obs, key=key)
            best = run.agent.act(with_best_of_n(state, n), obs, key=key)
            value = getattr(state.critic, "value", None)  # QIPO's softmax critic has no V: 0
            v = 0.0 if value is None else state_values(value, obs)
            q_plain, q_best = min_q(state.critic.q, obs, plain) - v, min_q(state.critic.q, obs, best) - v
            print(f"{name[-58:]:<58} {seed:>4} {n:>3} {distance(best, plain):>14.3f} {distance(plain, action):>14.3f} "
                  f"{distance(best, action):>13.3f} {float(q_plain.mean()):>12.3f} {float(q_best.mean()):>11.3f} "
                  f"{float((q_best - q_plain).mean()):>+8.3f}")


if __name__ == "__main__":
    main()

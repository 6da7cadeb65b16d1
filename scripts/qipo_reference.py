"""How does a QIPO run's frozen behaviour flow act on its own, against the policy QIPO improved from it?

QIPO clones the behaviour for its first `warmup_steps` updates, then freezes that clone (`state.behavior`) and, at
every renewal, refits its policy towards the critic's choice among draws from the policy and from the clone. The
clone is the reference the improvement starts from, so scoring it in the environment separates the two ways a QIPO
cell can fail: a reference that never learnt the task (the clone scores low), or an improvement that leaves a good
reference behind (the clone scores well and the policy does not).

For every run given this plays the run's own evaluation episodes (the same starting states as its evaluations),
per seed, with:

- `clone, 1`: the frozen behaviour flow, one draw per state;
- `clone, N`: the clone's best of N draws by the run's critic (`min_i Q_i`), N the run's `policy.best_of_n`
  (or `--n`), the choice the support sets are weighted by;
- `policy, 1` and `policy, N`: the trained policy the same two ways.

    python scripts/qipo_reference.py runs/results/halfcheetah-medium-expert-qipo-... --episodes 10
"""

import argparse

from run_states import behavior_clone, load_run, with_best_of_n

from rl.data import Normalizer
from rl.train.evaluators import NORMALIZER_FILE, DatasetInfo, Policy, make_evaluator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of qipo (written by python -m rl.train)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per seed and way of acting")
    parser.add_argument("--n", type=int, default=None, help="candidates per state (default: the run's best_of_n)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        raise SystemExit(f"--episodes must be at least 1, got {args.episodes}")
    print(f"{'run':<58} {'seed':>4} {'clone, 1':>9} {'clone, N':>9} {'policy, 1':>9} {'policy, N':>9} {'N':>3}")
    for name in args.runs:
        run = load_run(name)
        clone_of = behavior_clone(run, name)
        evaluator = make_evaluator(DatasetInfo.load(name), Normalizer.load(f"{name}/{NORMALIZER_FILE}"),
                                   episodes=args.episodes, samples=0)
        if evaluator is None:
            raise SystemExit(f"{name}: its dataset names no environment to evaluate in")
        n = args.n or run.config.agent_config.policy.best_of_n
        for seed, state in run.states():
            clone = clone_of(state)
            scores = [evaluator(Policy(with_best_of_n(s, k), run.agent.act), seed)["score"]
                      for s in (clone, state) for k in (1, n)]
            print(f"{name[-58:]:<58} {seed:>4} " + " ".join(f"{x:>9.1f}" for x in scores) + f" {n:>3}")


if __name__ == "__main__":
    main()

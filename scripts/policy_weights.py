"""How strongly does each trained agent tilt its policy towards high advantages? Read it off the checkpoints.

All three agents of `docs/results.md` share IQL's critic, so their policies differ in how they turn advantages
`A = Q(s, a) - V(s)` of dataset actions into a training signal:

- IQL: advantage-weighted regression, weights `min(exp(temperature A), max_weight)`;
- FlowQ (endpoint weights): `softmax(temperature A)` over the batch (`weight_unit="q"`, the default), or
  `softmax(beta A / scale)`, `scale` the running mean of `|grad_a Q|` (`weight_unit="energy"`, 0.1's);
- QIPO: `softmax_j(beta Q(s, a_j))` within each state's support set (actions drawn from the policy itself; not
  computed here, since the support sets are not stored in the checkpoint).

FlowQ runs with `weight_baseline="log_partition"` take `A = Q(s, a) - L(s)` with their fitted log-partition `L`
instead; for them the last column gives the spread of `Q - V` on the same transitions, the advantage the value
baseline would have used (`-` for the other runs): a baseline that only removes the states' trade-off should leave
`std A` well below it.

For every run given, on 256-example batches of its dataset, this prints the spread of `A`, the inverse temperature per
unit of `Q` the weights use, and the weights' effective sample size as a fraction of the batch,
`(sum w)^2 / (n sum w^2)` (1 = uniform, i.e. behaviour cloning; small = a few examples dominate).

It also prints how far the weights can move the policy *within* a state. Where the behaviour is a deterministic policy
plus Gaussian action noise of standard deviation `sigma` (the results grid's medium and expert datasets: `--noise`,
0.1), the behaviour at one state is `N(mu(s), sigma^2)`, and with `Q` linear in `a` over that width the reweighted
`N(mu, sigma^2) exp(k Q)` (`k` the inverse temperature per unit of `Q`) is `N(mu + k sigma^2 grad_a Q, sigma^2)`: a
shift of `k sigma^2 |grad_a Q|` action units, printed as a multiple of `sigma` (`k sigma |grad_a Q|`). A shift well
below 1 means the target policy is the behaviour policy at every state, whatever its family, and what separates a
flow from a Gaussian there is only how the weights trade states off against each other.

Runs trained with a floor (`min_ess`, FlowQ's or IQL's) are read with it. `--temperature K` reads the same weights
at another inverse temperature per unit of `Q` than the run's, and `--min-ess F` tempers each batch as `min_ess` does
(`energyflow.tempered_beta`: the run's or `--temperature`'s value, lowered where the batch would keep less than `F` of
itself), in place of the run's own floor; the `1/temp per Q` column is then the mean over batches of the temperature
used.

    python scripts/policy_weights.py runs/results/halfcheetah-iql runs/results/halfcheetah-flowq
    python scripts/policy_weights.py runs/study/hopper-medium-expert-flowq-... --temperature 3 --min-ess 0.5
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from run_states import load_run

from energyflow import tempered_beta
from rl.agents.flowq import q_and_action_gradient
from rl.agents.nets import state_values
from rl.train import load_run_config


def effective_fraction(log_w: np.ndarray) -> float:
    """`(sum w)^2 / (n sum w^2)` of weights given by their logarithms (one batch), computed stably."""
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (len(w) * np.sum(w**2)))


def _flowq_per_q(cfg, state) -> float:
    """FlowQ's endpoint weights' inverse temperature per unit of `Q` (0: unweighted, i.e. behaviour cloning)."""
    if not cfg.weighted:
        return 0.0
    if getattr(cfg, "weight_unit", "energy") == "q":
        return float(cfg.temperature)
    return cfg.beta / float(jnp.asarray(state.energy_scale))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories of iql or flowq (written by python -m rl.train)")
    parser.add_argument("--batches", type=int, default=200, help="256-example batches to average over")
    parser.add_argument("--noise", type=float, default=0.1,
                        help="the behaviour's Gaussian action noise (standard deviation) for the within-state shift")
    parser.add_argument("--temperature", type=float, default=None,
                        help="read the weights at this inverse temperature per unit of Q (default: the run's)")
    parser.add_argument("--min-ess", type=float, default=None,
                        help="temper each batch to keep at least this fraction of it (min_ess; default: the run's)")
    args = parser.parse_args(argv)
    print(f"{'run':<45} {'seed':>4} {'std A':>7} {'1/temp per Q':>13} {'ESS / batch':>12} {'|grad_a Q|':>10} "
          f"{'shift / sigma':>13} {'std (Q - V)':>12}")
    for run in args.runs:
        config = load_run_config(run)
        if config.agent not in ("iql", "flowq"):
            sys.exit(f"{run}: only iql and flowq runs have advantage weights on dataset actions (got {config.agent})")
        loaded = load_run(run)
        data, cfg = loaded.data, config.agent_config
        for seed, state in loaded.states():
            index = jax.random.randint(jax.random.key(seed), (args.batches, 256), 0, len(loaded.dataset))
            obs, action = data.obs[index.reshape(-1)], data.action[index.reshape(-1)]
            q_net = state.critic.q_target if config.agent == "flowq" else state.critic.q
            q_data, grads = q_and_action_gradient(q_net, obs, action)
            value = state_values(state.critic.value, obs)
            partition = getattr(state, "log_partition", None)
            spread = "-"
            if partition is not None:  # weight_baseline="log_partition": A = Q - L
                level = state_values(partition, obs)
                spread = f"{float(jnp.std(q_data - value)):.3f}"
                value = level
            adv = np.asarray(q_data - value)
            grad_norm = float(np.mean(np.linalg.norm(np.asarray(grads), axis=-1)))
            adv = adv.reshape(args.batches, 256)
            per_q = cfg.temperature if config.agent == "iql" else _flowq_per_q(cfg, state)
            per_q = per_q if args.temperature is None else args.temperature
            # the run's own cap and floor (IQL's max_weight, FlowQ's optional one; either's min_ess)
            cap = None if getattr(cfg, "max_weight", None) is None else np.log(cfg.max_weight)
            floor = getattr(cfg, "min_ess", None) if args.min_ess is None else args.min_ess
            per_batch = np.full(args.batches, per_q)
            if floor is not None:
                per_batch = np.asarray(jax.vmap(lambda a: tempered_beta(-a, per_q, floor, max_log_weight=cap))(
                    jnp.asarray(adv)))
            log_w = per_batch[:, None] * adv
            log_w = log_w if cap is None else np.minimum(log_w, cap)
            ess = np.mean([effective_fraction(row) for row in log_w])
            per_q = float(np.mean(per_batch))
            shift = per_q * args.noise * grad_norm
            print(f"{run:<45} {seed:>4} {adv.std():>7.3f} {per_q:>13.3f} {ess:>12.3f} {grad_norm:>10.3f} {shift:>13.3f} {spread:>12}")


if __name__ == "__main__":
    main()

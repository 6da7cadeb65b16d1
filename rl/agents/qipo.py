"""QIPO: Q-weighted iterative policy optimisation with energy-weighted flow matching
(Zhang, Zhang, Gu, ICLR 2025, arXiv 2503.04975; the maths is on the documentation's maths page, `docs/maths.md`).

1. Behaviour warm-up: for the first `warmup_steps` updates the flow policy is trained with plain CFM on dataset
   actions. A copy of it, the behaviour flow, follows it during the warm-up and is frozen afterwards.
2. Critic. `critic_loss="iql"`, the default, uses IQL's expectile critic (`rl.agents.critics`), as FlowQ and the IQL
   baseline do, so that results compare the three methods' policy extraction alone (and it costs a third less per
   update on a CPU: no candidates to draw, no target over them). `critic_loss="softmax"` is the paper's in-support
   softmax Q-learning: `Q(s, a) -> r + gamma (1 - terminal) sum_j softmax_j(beta_q Q'(s', a'_j)) Q'(s', a'_j)` with
   `M_critic` candidates `a'_j` from the behaviour flow at `s'` and the target network `Q'`.
3. Policy improvement: for each state a support set of `M` actions drawn from the current flow plus the dataset
   action, weights `softmax_j(beta Q'(s, a_j))` within the state's set, and `energyflow.energy_weighted_loss` over
   all `(s, a_j)` with `group_size = M + 1`. Each support set is re-drawn every `renew_every` updates; a set drawn
   from the policy after `l` renewals makes it target `pi_beta exp((l + 1) beta Q)`.

Everything is one jittable `update` driven by `state.step` (`lax.cond` picks the warm-up or the improvement loss).
Acting is the flow policy's (`rl.agents.policies.act`).

The support pool. Drawing `M` actions by ODE for every state of every batch costs `M x steps` policy evaluations
per state and update, far more than the loss itself on a CPU. QIPO re-draws support sets only every `K_renew`
updates, so we keep them: a pool of `pool_size` transitions, each stored with its support set (drawn from the
current flow at `s`) and, for the softmax critic, its `M_critic` behaviour candidates at `s'`. Every update overwrites
`W = pool_size / renew_every` consecutive rows (round robin) with the first `W` transitions of the batch and freshly
drawn sets, so each row is renewed exactly every `renew_every` updates (rows `[b W, (b + 1) W)` at the updates
with `step % renew_every == b`), and the sampling cost per update is `W (M + M_critic) steps` network evaluations,
flat in time and falling as `1 / renew_every` at a fixed pool size. The policy-improvement minibatch and the softmax
critic's minibatch are drawn from the pool's filled rows; the IQL critic option trains on the batch itself.
Behaviour candidates never go stale (the behaviour flow is frozen after the warm-up); during the warm-up they come
from the flow being trained, which is why the critic's early targets are rough.
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from energyflow import AffineProbPath, CondOTScheduler, MLPVelocity, cfm_loss, energy_weighted_loss
from rl.data import Transitions

from .base import at_least, between, check_init, validate
from .critics import (
    IQLCritic,
    IQLCriticConfig,
    SoftmaxCritic,
    init_iql_critic,
    init_softmax_critic,
    update_iql_critic,
    update_softmax_critic,
)
from .nets import QEnsemble, min_q
from .optim import apply_gradients, init_opt_state, make_optimizer, stop_gradient
from .policies import FlowPolicyConfig, act, init_flow_policy, sample_action_sets

__all__ = [
    "RENAMED", "Config", "Pool", "State", "act", "improvement_loss", "init", "support_weights", "update", "write_pool"
]


@dataclasses.dataclass(frozen=True)
class Config:
    """QIPO's settings; the defaults are the ones results are reported with."""

    # K1: updates of behaviour cloning (plain CFM) before policy improvement starts; the behaviour flow is frozen then
    warmup_steps: int = 20_000
    # how the critic learns: "iql": IQL's expectile critic (the same critic as FlowQ and the IQL baseline, so a
    # comparison of the three isolates policy extraction; and 1.5x cheaper per update on a CPU); "softmax": the
    # paper's in-support softmax Q-learning on behaviour-flow candidates
    critic_loss: Literal["iql", "softmax"] = "iql"
    # inverse temperature beta_Q of the softmax critic's target (0 = mean over candidates, large = max)
    beta_q: float = 1.0
    # M_critic: behaviour candidates per next state for the softmax target
    critic_candidates: int = 8
    # inverse temperature beta of the support-set weights softmax_j(beta Q(s, a_j)) (Q on the scale of the rewards
    # the data layer hands over); after l renewals the policy targets pi_beta exp((l + 1) beta Q), so beta is per
    # renewal
    beta: float = 1.0
    # M: actions drawn from the current flow per state (the support set is these plus the dataset action)
    support_size: int = 16
    # K_renew: every row of the support pool is re-drawn once every this many updates
    renew_every: int = 5_000
    # rows of the support pool; W = pool_size / renew_every rows are renewed per update (must divide exactly)
    pool_size: int = 40_000
    # states per policy-improvement minibatch (each brings support_size + 1 actions to the loss)
    policy_batch: int = 32
    # ODE steps used to draw support sets and behaviour candidates (with policy.solver)
    support_steps: int = 10
    # width of the conditional paths at t = 1 (CondOTScheduler's sigma_min)
    sigma_min: float = 0.0
    # the critic's networks, discount, learning rate and target rate (its expectile only counts with
    # critic_loss="iql")
    critic: IQLCriticConfig = dataclasses.field(default_factory=IQLCriticConfig)
    # the flow policy: network, learning rate, sampling at evaluation
    policy: FlowPolicyConfig = dataclasses.field(default_factory=FlowPolicyConfig)

    def __post_init__(self):
        validate(
            self,
            {
                "warmup_steps": at_least(0),
                "beta_q": at_least(0.0),
                "critic_candidates": at_least(1),
                "beta": at_least(0.0),
                "support_size": at_least(1),
                "renew_every": at_least(1),
                "pool_size": (
                    lambda v: v >= self.renew_every and v % self.renew_every == 0,
                    f"a multiple of renew_every={self.renew_every}",
                ),
                "policy_batch": at_least(1),
                "support_steps": at_least(1),
                "sigma_min": between(0.0, 1.0, open_hi=True),
            },
        )

    @classmethod
    def tiny(cls) -> "Config":
        """The demo's and the tests' sizes: every MLP 64 wide with 2 hidden layers, everything else default."""
        return cls(critic=IQLCriticConfig(width=64, depth=2), policy=FlowPolicyConfig(width=64, depth=2))

    @property
    def pool_writes(self) -> int:
        """`W`: pool rows renewed per update."""
        return self.pool_size // self.renew_every


RENAMED: dict[str, str] = {
    "discount": "critic.discount",
    "expectile": "critic.expectile",
    # `lr` used to set the critic and the policy alike; the policy's is `policy.lr`
    "lr": "critic.lr",
    "polyak": "critic.tau",
    "critic_width": "critic.width",
    "critic_depth": "critic.depth",
    "num_q": "critic.num_q",
    "policy_width": "policy.width",
    "policy_depth": "policy.depth",
    "sample_steps": "policy.sample_steps",
    "solver": "policy.solver",
    "best_of_n": "policy.best_of_n",
    # the choice "iql" / "softmax" (`critic` is now the critic's nested config)
    "critic": "critic_loss",
    "reward_scale": "data.reward_scale",
    "reward_bias": "data.reward_bias",
}
"""Old flat `Config` field -> its new dotted path (`data.` paths moved to `rl.data.DataConfig`)."""


class Pool(eqx.Module):
    """Transitions with their cached action sets (see the module docstring); `P` rows."""

    transitions: Transitions
    # M actions from the current flow at obs, then the dataset action: [P, M + 1, act_dim]
    support: Float[Array, "P M1 act_dim"]
    # behaviour-flow candidates at next_obs for the softmax critic ([P, 0, act_dim] with the IQL critic)
    next_candidates: Float[Array, "P Mc act_dim"]


class State(eqx.Module):
    """Everything QIPO trains, with its config."""

    policy: MLPVelocity
    # the behaviour flow: follows the policy during the warm-up, frozen afterwards
    behavior: MLPVelocity
    policy_opt_state: PyTree
    critic: SoftmaxCritic | IQLCritic
    pool: Pool
    step: Int[Array, ""]
    config: Config = eqx.field(static=True)


def _path(config: Config) -> AffineProbPath:
    return AffineProbPath(CondOTScheduler(config.sigma_min))


def init(config: Config, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> State:
    """Fresh networks, optimiser states and an empty support pool.

    Args:
        config: the settings.
        obs_dim: observation size.
        act_dim: action size.
        key: randomness of the initial parameters.
    """
    check_init(config, Config, obs_dim=obs_dim, act_dim=act_dim)
    kp, kc = jax.random.split(key)
    policy = init_flow_policy(config.policy, obs_dim=obs_dim, act_dim=act_dim, key=kp)
    if config.critic_loss == "iql":
        critic = init_iql_critic(config.critic, obs_dim=obs_dim, act_dim=act_dim, key=kc)
        num_candidates = 0
    else:
        critic = init_softmax_critic(config.critic, obs_dim=obs_dim, act_dim=act_dim, key=kc)
        num_candidates = config.critic_candidates
    p = config.pool_size
    empty = Transitions(
        obs=jnp.zeros((p, obs_dim)),
        action=jnp.zeros((p, act_dim)),
        reward=jnp.zeros((p,)),
        next_obs=jnp.zeros((p, obs_dim)),
        terminal=jnp.zeros((p,)),
    )
    pool = Pool(
        transitions=empty,
        support=jnp.zeros((p, config.support_size + 1, act_dim)),
        next_candidates=jnp.zeros((p, num_candidates, act_dim)),
    )
    return State(
        policy=policy,
        behavior=policy,
        policy_opt_state=init_opt_state(make_optimizer(config.policy.lr), policy),
        critic=critic,
        pool=pool,
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


# ----------------------------------------------------------------------------------------------------------------------
# The support pool


def write_pool(
    pool: Pool,
    batch: Transitions,
    policy: MLPVelocity,
    behavior: MLPVelocity,
    step: Int[Array, ""],
    config: Config,
    *,
    key: PRNGKeyArray,
) -> Pool:
    """Overwrite rows `[b W, (b + 1) W)`, `b = step % renew_every`, with the batch's first `W` transitions.

    The support set of a row is `support_size` actions from `policy` at its state followed by the dataset action;
    with the softmax critic the row also gets `critic_candidates` actions from `behavior` at its next state.
    """
    w = config.pool_writes
    ks, kc = jax.random.split(key)
    head = jax.tree.map(lambda x: x[:w], batch)
    obs, action = head.obs, head.action
    # support sets are first read at step warmup_steps, and every row is rewritten within the renew_every updates
    # before it, so earlier ones are never used: skip drawing them (a real branch: the trainer's step is unbatched)
    steps, solver = config.support_steps, config.policy.solver
    drawn = jax.lax.cond(
        step >= config.warmup_steps - config.renew_every,
        lambda: sample_action_sets(policy, obs, config.support_size, key=ks, steps=steps, solver=solver),
        lambda: jnp.zeros((w, config.support_size, action.shape[-1]), action.dtype),
    )
    support = jnp.concatenate([drawn, action[:, None, :]], axis=1)
    if config.critic_loss == "softmax":
        m = config.critic_candidates
        candidates = sample_action_sets(behavior, head.next_obs, m, key=kc, steps=steps, solver=solver)
    else:
        candidates = pool.next_candidates[:w]
    rows = Pool(transitions=head, support=support, next_candidates=candidates)
    start = (step % config.renew_every) * w
    return jax.tree.map(
        lambda whole, part: jax.lax.dynamic_update_slice_in_dim(whole, part.astype(whole.dtype), start, axis=0),
        pool,
        rows,
    )


def _take(pool: Pool, index: Int[Array, " n"]) -> Pool:
    return jax.tree.map(lambda x: x[index], pool)


def _pool_indices(step: Int[Array, ""], count: int, config: Config, *, key: PRNGKeyArray) -> Int[Array, " count"]:
    """`count` uniform rows among those written so far (the pool fills during the first `renew_every` updates)."""
    filled = jnp.minimum((step + 1) * config.pool_writes, config.pool_size)
    return jax.random.randint(key, (count,), 0, filled)


# ----------------------------------------------------------------------------------------------------------------------
# Losses


def support_weights(q: Float[Array, "n m"], beta: float) -> Float[Array, "n m"]:
    """`softmax_j(beta Q(s, a_j))` within each state's support set (each row sums to one)."""
    return jax.nn.softmax(beta * q, axis=-1)


def improvement_loss(
    policy: MLPVelocity,
    q: QEnsemble,
    rows: Pool,
    config: Config,
    *,
    key: PRNGKeyArray,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Energy-weighted flow matching over every `(s, a_j)` of the rows' support sets, energies `-Q(s, a_j)`.

    The weights `softmax_j(beta Q(s, a_j))` are normalised within each state's set (`group_size = M + 1`); the critic
    is frozen (`jax.lax.stop_gradient`).
    """
    n, m1, a = rows.support.shape
    obs = jnp.repeat(rows.transitions.obs, m1, axis=0)
    actions = rows.support.reshape(n * m1, a)
    q_sa = min_q(stop_gradient(q), obs, actions)
    loss = energy_weighted_loss(
        policy, _path(config), actions, -q_sa, beta=config.beta, key=key, context=obs, group_size=m1
    )
    weights = support_weights(q_sa.reshape(n, m1), config.beta)
    info = {
        "policy_loss": loss,
        # weight of the dataset action within its set, and of the heaviest action (1 / (M + 1) = uniform)
        "data_action_weight": jnp.mean(weights[:, -1]),
        "max_support_weight": jnp.mean(jnp.max(weights, axis=-1)),
    }
    return loss, info


def _warmup_loss(
    policy: MLPVelocity, batch: Transitions, config: Config, *, key: PRNGKeyArray
) -> tuple[Float[Array, ""], dict[str, Array]]:
    loss = cfm_loss(policy, _path(config), batch.action, key=key, context=batch.obs)
    zero = jnp.zeros(())
    return loss, {"policy_loss": loss, "data_action_weight": zero, "max_support_weight": zero}


# ----------------------------------------------------------------------------------------------------------------------
# Update


def _update_critic(
    critic: SoftmaxCritic | IQLCritic,
    pool: Pool,
    batch: Transitions,
    step: Int[Array, ""],
    config: Config,
    *,
    key: PRNGKeyArray,
) -> tuple[SoftmaxCritic | IQLCritic, dict[str, Array]]:
    if config.critic_loss == "iql":
        return update_iql_critic(critic, batch, config.critic)
    # the softmax critic learns on pool rows: they hold the behaviour candidates at s'
    rows = _take(pool, _pool_indices(step, batch.reward.shape[0], config, key=key))
    return update_softmax_critic(critic, rows.transitions, rows.next_candidates, config.critic, beta_q=config.beta_q)


def update(state: State, batch: Transitions, *, key: PRNGKeyArray) -> tuple[State, dict[str, Array]]:
    """One QIPO update: renew `W` pool rows, a critic step, then a warm-up (CFM) or an improvement (EFM) policy step.

    Args:
        state: the current state.
        batch: `rl.data.Transitions` with normalised observations and transformed rewards; needs at least
            `pool_size / renew_every` rows.
        key: randomness of the sampled sets, the pool minibatches and the flow-matching draws.

    Returns:
        The new state and scalar diagnostics (`improving` is 1 after the warm-up).
    """
    config = state.config
    if batch.reward.shape[0] < config.pool_writes:
        raise ValueError(
            f"QIPO renews pool_size / renew_every = {config.pool_writes} pool rows per update from the batch, "
            f"but the batch has only {batch.reward.shape[0]} rows; use a larger batch or a larger renew_every"
        )
    k_pool, k_critic, k_rows, k_loss = jax.random.split(key, 4)
    step = state.step
    pool = write_pool(state.pool, batch, state.policy, state.behavior, step, config, key=k_pool)
    critic, critic_info = _update_critic(state.critic, pool, batch, step, config, key=k_critic)

    improving = step >= config.warmup_steps

    def warmup_grads():
        return eqx.filter_value_and_grad(_warmup_loss, has_aux=True)(state.policy, batch, config, key=k_loss)

    # gathered outside the cond, so that the branch's operands are these few rows rather than the whole pool
    rows = _take(pool, _pool_indices(step, config.policy_batch, config, key=k_rows))

    def improvement_grads():
        return eqx.filter_value_and_grad(improvement_loss, has_aux=True)(
            state.policy, critic.q_target, rows, config, key=k_loss
        )

    (_, policy_info), grads = jax.lax.cond(improving, improvement_grads, warmup_grads)
    policy, policy_opt_state = apply_gradients(
        state.policy, state.policy_opt_state, grads, make_optimizer(config.policy.lr)
    )
    behavior = jax.tree.map(
        lambda new, old: jnp.where(improving, old, new) if eqx.is_inexact_array(old) else old, policy, state.behavior
    )
    new = State(
        policy=policy,
        behavior=behavior,
        policy_opt_state=policy_opt_state,
        critic=critic,
        pool=pool,
        step=step + 1,
        config=config,
    )
    return new, {**critic_info, **policy_info, "improving": improving.astype(jnp.float32)}

"""QIPO: Q-weighted iterative policy optimisation with energy-weighted flow matching
(Zhang, Zhang, Gu, ICLR 2025, arXiv 2503.04975; the maths is on the documentation's maths page, `docs/maths.md`).

1. Behaviour warm-up: for the first `warmup_steps` updates the flow policy is trained with plain CFM on dataset
   actions. A copy of it, the behaviour flow, follows it during the warm-up and is frozen afterwards.
2. Critic. `critic_loss="iql"`, the default, uses IQL's expectile critic (`rl.agents.critics`), as FlowQ and the IQL
   baseline do, so that results compare the three methods' policy extraction alone (and it costs a third less per
   update on a CPU: no candidates to draw, no target over them). `critic_loss="softmax"` is the paper's in-support
   softmax Q-learning: `Q(s, a) -> r + gamma (1 - terminal) sum_j softmax_j(beta_q Q'(s', a'_j)) Q'(s', a'_j)` with
   `M_critic` candidates `a'_j` from the behaviour flow at `s'` and the target network `Q'`.
3. Policy improvement: for each state a support set of `M` drawn actions plus the dataset action, weights within
   the set (`support_weights`), and `energyflow.energy_weighted_loss` over all `(s, a_j)`. Each set is re-drawn every
   `renew_every` updates; after `l` renewals the policy targets `pi_beta exp((l + 1) beta Q)`. The paper draws all
   `M` from the current flow `pi_l` (`behavior_share = 0`); then the policy is refitted on its own samples at each
   renewal, its errors compound, and samples that leave the data are scored by the critic's extrapolation (on the
   multimodal bandit, `rl.data.tasks.multimodal`, it collapsed between the rewarded modes). By default half come
   from the frozen behaviour flow, a reference that does not drift, weighted towards the same target.

Everything is one jittable `update` driven by `state.step` (`lax.cond` picks the warm-up or the improvement loss).
Acting is the flow policy's (`rl.agents.policies.act`).

The support pool (drawn support sets kept between renewals) is `rl.agents.qipo_pool`.
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from energyflow import AffineProbPath, CondOTScheduler, MLPVelocity, cfm_loss, energy_weighted_loss
from rl.data import Transitions

from .base import Scalar, at_least, between, check_init, validate
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
from .policies import FLOW_AGENT_RENAMED, FlowPolicyConfig, act, init_flow_policy
from .qipo_pool import Pool, empty_pool, pool_indices, take_rows, write_pool

__all__ = [
    "ADDED", "RENAMED", "Config", "Pool", "State", "act", "improvement_loss", "init", "support_weights", "update",
    "write_pool",
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
    # M: actions drawn per state (the support set is these plus the dataset action)
    support_size: int = 16
    # share of the M drawn from the frozen behaviour flow rather than the current policy, M_b = floor(share M); each
    # part then gets half of a state's weight (0 = the paper: all M from the policy, one softmax over the set)
    behavior_share: float = 0.5
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
                "behavior_share": between(0.0, 1.0),
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
        if self.critic_loss == "softmax" and self.policy.selection == "first_above_v":
            raise ValueError("policy.selection='first_above_v' needs a state value V(s), which only the IQL critic "
                             "has: set critic_loss='iql' or another policy.selection")

    @classmethod
    def tiny(cls) -> "Config":
        """The demo's and the tests' sizes: every MLP 64 wide with 2 hidden layers, everything else default."""
        return cls(critic=IQLCriticConfig(width=64, depth=2), policy=FlowPolicyConfig(width=64, depth=2))

    @property
    def behavior_support(self) -> int:
        """`M_b`: support actions drawn from the behaviour flow (the last `M_b` before the dataset action)."""
        return int(self.support_size * self.behavior_share)

    @property
    def pool_writes(self) -> int:
        """`W`: pool rows renewed per update."""
        return self.pool_size // self.renew_every


RENAMED: dict[str, str] = {
    **FLOW_AGENT_RENAMED,
    # the choice "iql" / "softmax" (`critic` is now the critic's nested config)
    "critic": "critic_loss",
}
"""Old flat `Config` field -> its new dotted path (`data.` paths moved to `rl.data.DataConfig`)."""
ADDED: dict[str, object] = {"policy.noise": 1.0, "policy.selection": "max"}
"""Fields added since 0.1 -> the value that reproduces the runs made before them (`rl.agents.base`)."""


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
    pool = empty_pool(config.pool_size, config.support_size, num_candidates, obs_dim=obs_dim, act_dim=act_dim)
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
# Losses


def support_weights(
    q: Float[Array, "n m"], beta: Scalar, *, behavior: int = 0, renewal: Float[Array, ""] | float = 0.0
) -> Float[Array, "n m"]:
    """The weights of each state's support set `[policy draws | behavior behaviour draws, dataset action]`.

    With `behavior = 0`, `softmax_j(beta Q)` over the whole set (the paper). Else each part gets half (the behaviour
    part all of it if the policy part is empty): the policy draws by `softmax(beta Q)`, targeting `pi_l exp(beta Q)`,
    and the behaviour part by `softmax((renewal + 1) beta Q)`, targeting the same `pi_beta exp((l + 1) beta Q)`.
    Each row sums to one.
    """
    return jnp.exp(_log_support_weights(q, beta, behavior, renewal))


def _log_support_weights(
    q: Float[Array, "n m"], beta: Scalar, behavior: int, renewal: Float[Array, ""] | float
) -> Float[Array, "n m"]:
    if behavior == 0:
        return jax.nn.log_softmax(beta * q, axis=-1)
    mp = q.shape[-1] - behavior - 1
    log_b = jax.nn.log_softmax((renewal + 1.0) * beta * q[:, mp:], axis=-1)
    if mp == 0:
        return log_b
    log_p = jax.nn.log_softmax(beta * q[:, :mp], axis=-1)
    return jnp.concatenate([log_p, log_b], axis=-1) + jnp.log(0.5)


def improvement_loss(
    policy: MLPVelocity,
    q: QEnsemble,
    rows: Pool,
    config: Config,
    *,
    key: PRNGKeyArray,
    renewal: Float[Array, ""] | float = 0.0,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Energy-weighted flow matching over every `(s, a_j)` of the rows' support sets, weighted by `support_weights`.

    Every state's weights sum to `1 / n` (`n` rows); the critic is frozen (`jax.lax.stop_gradient`). `renewal` is
    `l`, the renewals since the warm-up.
    """
    n, m1, a = rows.support.shape
    obs = jnp.repeat(rows.transitions.obs, m1, axis=0)
    actions = rows.support.reshape(n * m1, a)
    q_sa = min_q(stop_gradient(q), obs, actions)
    log_w = _log_support_weights(q_sa.reshape(n, m1), config.beta, config.behavior_support, renewal)
    # energies -log(w / n) with beta = 1: energy_weighted_loss's softmax over the batch gives back exactly w / n
    energies = jax.lax.stop_gradient(jnp.log(n) - log_w.reshape(n * m1))
    loss = energy_weighted_loss(policy, _path(config), actions, energies, beta=1.0, key=key, context=obs)
    weights = jnp.exp(log_w)
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
    rows = take_rows(pool, pool_indices(step, batch.reward.shape[0], config, key=key))
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
    rows = take_rows(pool, pool_indices(step, config.policy_batch, config, key=k_rows))

    def improvement_grads():
        renewal = (jnp.maximum(step - config.warmup_steps, 0) // config.renew_every).astype(jnp.float32)
        return eqx.filter_value_and_grad(improvement_loss, has_aux=True)(
            state.policy, critic.q_target, rows, config, key=k_loss, renewal=renewal
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

"""QIPO: Q-weighted iterative policy optimisation with energy-weighted flow matching
(Zhang, Zhang, Gu, ICLR 2025, arXiv 2503.04975; MATH section 5).

1. Behaviour warm-up: for the first `warmup_steps` updates the flow policy is trained with plain CFM on dataset
   actions. A copy of it, the behaviour flow, follows it during the warm-up and is frozen afterwards.
2. Critic, `critic="softmax"` (in-support softmax Q-learning): `Q(s, a) -> r + gamma (1 - terminal)
   sum_j softmax_j(beta_q Q'(s', a'_j)) Q'(s', a'_j)` with `M` candidates `a'_j` from the behaviour flow at `s'`
   and the target network `Q'`; `critic="iql"`, the default, uses IQL's expectile critic (`rl.agents.common`), as
   FlowQ and the IQL baseline do, so that results compare the three methods' policy extraction alone (and it costs
   a third less per update on a CPU: no candidates to draw, no target over them).
3. Policy improvement: for each state a support set of `M` actions drawn from the current flow plus the dataset
   action, weights `softmax_j(beta Q'(s, a_j))` within the state's set, and `energyflow.energy_weighted_loss` over
   all `(s, a_j)` with `group_size = M + 1`. Each support set is re-drawn every `renew_every` updates; a set drawn
   from the policy after `l` renewals makes it target `pi_beta exp((l + 1) beta Q)`.

Everything is one jittable `update` driven by `state.step` (`lax.cond` picks the warm-up or the improvement loss).

The support pool. Drawing `M` actions by ODE for every state of every batch costs `M x steps` policy evaluations
per state and update, far more than the loss itself on a CPU. QIPO re-draws support sets only every `K_renew`
updates, so we keep them: a pool of `pool_size` transitions, each stored with its support set (drawn from the
current flow at `s`) and, for the softmax critic, its `M` behaviour candidates at `s'`. Every update overwrites
`W = pool_size / renew_every` consecutive rows (round robin) with the first `W` transitions of the batch and freshly
drawn sets, so each row is renewed exactly every `renew_every` updates (rows `[b W, (b + 1) W)` at the updates
with `step % renew_every == b`), and the sampling cost per update is `W (M + M_critic) steps` network evaluations,
flat in time and falling as `1 / renew_every` at a fixed pool size. The policy-improvement minibatch and the softmax
critic's minibatch are drawn from the pool's filled rows; the IQL critic option trains on the batch itself.
Behaviour candidates never go stale (the behaviour flow is frozen after the warm-up); during the warm-up they come
from the flow being trained, which is why the critic's early targets are rough.
"""

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from energyflow import AffineProbPath, CondOTScheduler, MLPVelocity, cfm_loss, energy_weighted_loss

from .common import (
    IQLCritic,
    QEnsemble,
    apply_gradients,
    best_of_n,
    check_config,
    init_iql_critic,
    init_opt_state,
    make_optimizer,
    min_q,
    polyak_update,
    q_loss,
    sample_flow_actions,
    stop_gradient,
    td_target,
    update_iql_critic,
)

__all__ = [
    "Config",
    "Pool",
    "SoftmaxCritic",
    "State",
    "act",
    "improvement_loss",
    "init",
    "softmax_critic_target",
    "softmax_q_value",
    "support_weights",
    "update",
    "write_pool",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """QIPO's settings; the defaults are the ones results are reported with."""

    # discount gamma
    discount: float = 0.99
    # learning rate of critic and policy (Adam)
    lr: float = 3e-4
    # Polyak rate of the target Q network
    polyak: float = 0.005
    # hidden width and number of hidden layers of the critic MLPs
    critic_width: int = 256
    critic_depth: int = 2
    # number of Q networks (twin Q; targets and weights use the minimum)
    num_q: int = 2
    # hidden width and number of hidden layers of the flow policy (energyflow.MLPVelocity)
    policy_width: int = 256
    policy_depth: int = 3
    # K1: updates of behaviour cloning (plain CFM) before policy improvement starts; the behaviour flow is frozen then
    warmup_steps: int = 20_000
    # "iql": IQL's expectile critic (the same critic as FlowQ and the IQL baseline, so a comparison of the three
    # isolates policy extraction; and 1.5x cheaper per update on a CPU); "softmax": in-support softmax Q-learning on
    # behaviour-flow candidates (MATH section 5, item 2)
    critic: str = "iql"
    # inverse temperature beta_Q of the softmax critic's target (0 = mean over candidates, large = max)
    beta_q: float = 1.0
    # M_critic: behaviour candidates per next state for the softmax target
    critic_candidates: int = 8
    # expectile tau of the IQL critic option
    expectile: float = 0.7
    # inverse temperature beta of the support-set weights softmax_j(beta Q(s, a_j)) (Q on the reward scale set by
    # reward_scale); after l renewals the policy targets pi_beta exp((l + 1) beta Q), so beta is per renewal
    beta: float = 1.0
    # M: actions drawn from the current flow per state (the support set is these plus the dataset action)
    support_size: int = 16
    # K_renew: every row of the support pool is re-drawn once every this many updates
    renew_every: int = 5_000
    # rows of the support pool; W = pool_size / renew_every rows are renewed per update (must divide exactly)
    pool_size: int = 40_000
    # states per policy-improvement minibatch (each brings support_size + 1 actions to the loss)
    policy_batch: int = 32
    # ODE steps used to draw support sets and behaviour candidates
    support_steps: int = 10
    # width of the conditional paths at t = 1 (CondOTScheduler's sigma_min)
    sigma_min: float = 0.0
    # Euler steps of the ODE sampler at evaluation
    sample_steps: int = 10
    # ODE solver name passed to energyflow's sampler
    solver: str = "euler"
    # best-of-N by min Q at evaluation (1 = plain sampling)
    best_of_n: int = 1
    # the critic learns from reward_scale * r + reward_bias (set per dataset by the results script)
    reward_scale: float = 1.0
    reward_bias: float = 0.0

    def __post_init__(self):
        for name in ("discount", "lr", "polyak", "beta_q", "expectile", "beta", "sigma_min", "reward_scale",
                     "reward_bias"):
            object.__setattr__(self, name, float(getattr(self, name)))
        positive_int = (lambda v: isinstance(v, int) and v >= 1, "an int >= 1")
        check_config(
            self,
            {
                "discount": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
                "lr": (lambda v: v > 0.0, "> 0"),
                "polyak": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
                "critic_width": positive_int,
                "critic_depth": positive_int,
                "num_q": positive_int,
                "policy_width": positive_int,
                "policy_depth": positive_int,
                "warmup_steps": (lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
                "critic": (lambda v: v in ("softmax", "iql"), "'softmax' or 'iql'"),
                "beta_q": (lambda v: v >= 0.0, ">= 0"),
                "critic_candidates": positive_int,
                "expectile": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
                "beta": (lambda v: v >= 0.0, ">= 0"),
                "support_size": positive_int,
                "renew_every": positive_int,
                "pool_size": (
                    lambda v: isinstance(v, int) and v >= self.renew_every and v % self.renew_every == 0,
                    f"a multiple of renew_every={self.renew_every}",
                ),
                "policy_batch": positive_int,
                "support_steps": positive_int,
                "sigma_min": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
                "sample_steps": positive_int,
                "best_of_n": positive_int,
            },
        )

    @property
    def pool_writes(self) -> int:
        """`W`: pool rows renewed per update."""
        return self.pool_size // self.renew_every


class SoftmaxCritic(eqx.Module):
    """Twin Q with a Polyak target network, trained by in-support softmax Q-learning."""

    q: QEnsemble
    q_target: QEnsemble
    q_opt_state: PyTree


class Pool(eqx.Module):
    """Transitions with their cached action sets (see the module docstring); `P` rows."""

    obs: Float[Array, "P obs_dim"]
    action: Float[Array, "P act_dim"]
    reward: Float[Array, " P"]
    next_obs: Float[Array, "P obs_dim"]
    terminal: Float[Array, " P"]
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
    if not isinstance(config, Config):
        raise TypeError(f"expected an rl.agents.qipo.Config, got {type(config).__name__}")
    if obs_dim < 1 or act_dim < 1:
        raise ValueError(f"obs_dim and act_dim must be >= 1, got obs_dim={obs_dim}, act_dim={act_dim}")
    kp, kc = jax.random.split(key)
    policy = MLPVelocity(act_dim, context_dim=obs_dim, width=config.policy_width, depth=config.policy_depth, key=kp)
    if config.critic == "iql":
        critic = init_iql_critic(
            obs_dim,
            act_dim,
            width=config.critic_width,
            depth=config.critic_depth,
            num_q=config.num_q,
            lr=config.lr,
            key=kc,
        )
        num_candidates = 0
    else:
        q = QEnsemble(
            obs_dim, act_dim, width=config.critic_width, depth=config.critic_depth, num_q=config.num_q, key=kc
        )
        critic = SoftmaxCritic(q=q, q_target=q, q_opt_state=init_opt_state(make_optimizer(config.lr), q))
        num_candidates = config.critic_candidates
    p = config.pool_size
    pool = Pool(
        obs=jnp.zeros((p, obs_dim)),
        action=jnp.zeros((p, act_dim)),
        reward=jnp.zeros((p,)),
        next_obs=jnp.zeros((p, obs_dim)),
        terminal=jnp.zeros((p,)),
        support=jnp.zeros((p, config.support_size + 1, act_dim)),
        next_candidates=jnp.zeros((p, num_candidates, act_dim)),
    )
    return State(
        policy=policy,
        behavior=policy,
        policy_opt_state=init_opt_state(make_optimizer(config.lr), policy),
        critic=critic,
        pool=pool,
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Loss pieces


def softmax_q_value(q: Float[Array, "n m"], beta_q: float) -> Float[Array, " n"]:
    """`sum_j softmax_j(beta_q q_j) q_j` per row: the mean at `beta_q = 0`, the maximum as `beta_q -> inf`."""
    weights = jax.nn.softmax(beta_q * q, axis=-1)
    return jnp.sum(weights * q, axis=-1)


def support_weights(q: Float[Array, "n m"], beta: float) -> Float[Array, "n m"]:
    """`softmax_j(beta Q(s, a_j))` within each state's support set (each row sums to one)."""
    return jax.nn.softmax(beta * q, axis=-1)


def _draw_sets(
    flow: MLPVelocity, obs: Float[Array, "w obs_dim"], count: int, *, key: PRNGKeyArray, config: Config
) -> Float[Array, "w count act_dim"]:
    """`count` actions per state from `flow` by ODE sampling (`support_steps` steps)."""
    w = obs.shape[0]
    actions = sample_flow_actions(
        flow, jnp.repeat(obs, count, axis=0), key=key, steps=config.support_steps, solver=config.solver
    )
    return actions.reshape(w, count, -1)


def write_pool(
    pool: Pool,
    batch: Any,
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
    obs, action = batch.obs[:w], batch.action[:w]
    # support sets are first read at step warmup_steps, and every row is rewritten within the renew_every updates
    # before it, so earlier ones are never used: skip drawing them (a real branch: the trainer's step is unbatched)
    drawn = jax.lax.cond(
        step >= config.warmup_steps - config.renew_every,
        lambda: _draw_sets(policy, obs, config.support_size, key=ks, config=config),
        lambda: jnp.zeros((w, config.support_size, action.shape[-1]), action.dtype),
    )
    support = jnp.concatenate([drawn, action[:, None, :]], axis=1)
    if config.critic == "softmax":
        candidates = _draw_sets(behavior, batch.next_obs[:w], config.critic_candidates, key=kc, config=config)
    else:
        candidates = pool.next_candidates[:w]
    rows = Pool(
        obs=obs,
        action=action,
        reward=batch.reward[:w],
        next_obs=batch.next_obs[:w],
        terminal=batch.terminal[:w],
        support=support,
        next_candidates=candidates,
    )
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


def softmax_critic_target(q_target: QEnsemble, rows: Pool, config: Config) -> Float[Array, " n"]:
    """`reward_scale r + reward_bias + gamma (1 - terminal) sum_j softmax_j(beta_q Q'(s', a'_j)) Q'(s', a'_j)`.

    `Q'` is the minimum over the target ensemble and `a'_j` are the rows' cached behaviour candidates (no gradient).
    """
    n, m, a = rows.next_candidates.shape
    next_q = min_q(
        stop_gradient(q_target), jnp.repeat(rows.next_obs, m, axis=0), rows.next_candidates.reshape(n * m, a)
    ).reshape(n, m)
    reward = config.reward_scale * rows.reward + config.reward_bias
    return td_target(reward, rows.terminal, softmax_q_value(next_q, config.beta_q), config.discount)


def softmax_critic_loss(
    q: QEnsemble, q_target: QEnsemble, rows: Pool, config: Config
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """In-support softmax Q-learning on pool rows: regress every `Q_i(s, a)` on `softmax_critic_target`."""
    return q_loss(q, rows.obs, rows.action, softmax_critic_target(q_target, rows, config))


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
    obs = jnp.repeat(rows.obs, m1, axis=0)
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
    policy: MLPVelocity, batch: Any, config: Config, *, key: PRNGKeyArray
) -> tuple[Float[Array, ""], dict[str, Array]]:
    loss = cfm_loss(policy, _path(config), batch.action, key=key, context=batch.obs)
    zero = jnp.zeros(())
    return loss, {"policy_loss": loss, "data_action_weight": zero, "max_support_weight": zero}


# ----------------------------------------------------------------------------------------------------------------------
# Update and act


def _update_critic(critic, pool: Pool, batch: Any, step, config: Config, *, key: PRNGKeyArray):
    if config.critic == "iql":
        return update_iql_critic(
            critic,
            batch,
            discount=config.discount,
            expectile=config.expectile,
            polyak=config.polyak,
            lr=config.lr,
            reward_scale=config.reward_scale,
            reward_bias=config.reward_bias,
        )
    rows = _take(pool, _pool_indices(step, batch.reward.shape[0], config, key=key))
    (_, info), grads = eqx.filter_value_and_grad(softmax_critic_loss, has_aux=True)(
        critic.q, critic.q_target, rows, config
    )
    q, q_opt_state = apply_gradients(critic.q, critic.q_opt_state, grads, make_optimizer(config.lr))
    return SoftmaxCritic(q=q, q_target=polyak_update(critic.q_target, q, config.polyak), q_opt_state=q_opt_state), info


def update(state: State, batch: Any, *, key: PRNGKeyArray) -> tuple[State, dict[str, Array]]:
    """One QIPO update: renew `W` pool rows, a critic step, then a warm-up (CFM) or an improvement (EFM) policy step.

    Args:
        state: the current state.
        batch: `rl.data.Transitions` with normalised observations; needs at least `pool_size / renew_every` rows.
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
        state.policy, state.policy_opt_state, grads, make_optimizer(config.lr)
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


def act(state: State, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray) -> Float[Array, "n act_dim"]:
    """Actions by ODE sampling of the policy (`sample_steps` steps), best-of-`best_of_n` by min Q, in `[-1, 1]`."""
    config = state.config

    def propose(k, s):
        return sample_flow_actions(state.policy, s, key=k, steps=config.sample_steps, solver=config.solver)

    def score(s, a):
        return min_q(state.critic.q, s, a)

    return best_of_n(propose, score, obs, num_candidates=config.best_of_n, key=key)

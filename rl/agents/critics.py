"""The critics: IQL's, shared by IQL, FlowQ and QIPO (its default), and QIPO's in-support softmax critic.

Both are twin Q ensembles with a Polyak-averaged target, configured by one `IQLCriticConfig` (nested as `critic` in
every agent's `Config`; the softmax critic ignores its `expectile`).

IQL's critic never evaluates actions outside the dataset (Kostrikov, Nair, Levine 2021, arXiv 2110.06169):

- `V(s)` is fitted by expectile regression on `min_i Q_target,i(s, a)` over dataset actions `a`: with expectile
  `e > 1/2` it approaches the value of the best action the data supports;
- each `Q_i(s, a)` regresses on the one-step target `r + gamma (1 - terminal) V(s')`;
- the target ensemble follows by Polyak averaging, `Q_target <- (1 - tau) Q_target + tau Q`.

The softmax critic (QIPO, Zhang, Zhang, Gu 2025, arXiv 2503.04975) has no value network: each `Q_i(s, a)` regresses
on `r + gamma (1 - terminal) sum_j softmax_j(beta_q Q'(s', a'_j)) Q'(s', a'_j)`, where `a'_j` are candidate actions
at `s'` drawn from a behaviour model (so the target stays in the data's support) and `Q'` is the target minimum.

`min_i Q_target,i(s, a)` on the batch's dataset actions is computed once per update, before the target moves
(`data_q_target`): the value step regresses on it, and the IQL actor's advantage weights and FlowQ's energy read the
same numbers (`update_iql_critic(..., q_data=...)`). This is the order of IQL's reference code, where the actor sees
the target critic before its Polyak step.

FlowQ's optional log-partition baseline `L(s)` (`weight_baseline="log_partition"`) is a state function fitted on the
same numbers, by Gumbel regression (`log_partition_loss`).

Rewards arrive already transformed by the data layer (`rl.data.DataConfig`). The derivation is on the maths page of
the documentation (`docs/maths.md`).
"""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from rl.data import Transitions

from .base import Scalar, above, at_least, between, validate
from .nets import QEnsemble, ValueNetwork, min_q, q_values, state_values
from .optim import apply_gradients, init_opt_state, make_optimizer, polyak_update, stop_gradient

__all__ = [
    "IQLCritic",
    "IQLCriticConfig",
    "SoftmaxCritic",
    "data_q_target",
    "expectile_loss",
    "init_iql_critic",
    "init_softmax_critic",
    "iql_q_target",
    "log_partition_loss",
    "q_loss",
    "softmax_critic_loss",
    "softmax_critic_target",
    "softmax_q_value",
    "td_target",
    "update_iql_critic",
    "update_softmax_critic",
    "value_loss",
]


@dataclasses.dataclass(frozen=True)
class IQLCriticConfig:
    """The critic's settings (nested as `critic` in every agent's `Config`); defaults are IQL's MuJoCo ones."""

    # discount gamma of the one-step target
    discount: float = 0.99
    # expectile of the value regression (0.5: the mean over dataset actions; towards 1: their maximum)
    expectile: float = 0.7
    # learning rate of the Q and value networks (Adam)
    lr: float = 3e-4
    # Polyak rate of the target Q networks: target <- (1 - tau) target + tau Q
    tau: float = 0.005
    # hidden width of every Q and value MLP
    width: int = 256
    # number of hidden layers of every Q and value MLP
    depth: int = 2
    # number of Q networks (twin Q; targets use their minimum)
    num_q: int = 2
    # layer normalisation after every hidden ReLU of the Q and value networks (FQL's IQL critics use it; the IQL
    # paper's do not)
    layer_norm: bool = False

    def __post_init__(self):
        validate(
            self,
            {
                "discount": between(0.0, 1.0),
                "expectile": between(0.0, 1.0, open_lo=True, open_hi=True),
                "lr": above(0.0),
                "tau": between(0.0, 1.0, open_lo=True),
                "width": at_least(1),
                "depth": at_least(1),
                "num_q": at_least(1),
            },
        )


class IQLCritic(eqx.Module):
    """Twin Q with a Polyak target ensemble, and a state-value network trained by expectile regression."""

    q: QEnsemble
    q_target: QEnsemble
    value: ValueNetwork
    q_opt_state: PyTree
    value_opt_state: PyTree


class SoftmaxCritic(eqx.Module):
    """Twin Q with a Polyak target network, trained by in-support softmax Q-learning."""

    q: QEnsemble
    q_target: QEnsemble
    q_opt_state: PyTree


# ----------------------------------------------------------------------------------------------------------------------
# Losses


def expectile_loss(diff: Float[Array, " n"], expectile: Scalar) -> Float[Array, " n"]:
    """The asymmetric squared loss `|e - 1(diff < 0)| diff^2` of expectile regression, per example.

    With `diff = target - prediction`, minimising its mean makes the prediction the `e`-expectile of the target;
    `e = 0.5` gives half the squared error (the mean), `e -> 1` approaches the maximum.
    """
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def td_target(
    reward: Float[Array, " n"], terminal: Float[Array, " n"], next_value: Float[Array, " n"], discount: Scalar
) -> Float[Array, " n"]:
    """The one-step target `r + gamma (1 - terminal) V(s')` (no bootstrap past a true termination)."""
    return reward + discount * (1.0 - terminal) * next_value


def data_q_target(q_target: QEnsemble, batch: Transitions) -> Float[Array, " n"]:
    """`min_i Q_target,i(s, a)` on the batch's dataset actions, without gradient: what `V(s)` regresses on."""
    return min_q(stop_gradient(q_target), batch.obs, batch.action)


def value_loss(
    value: ValueNetwork, obs: Float[Array, "n obs_dim"], q_data: Float[Array, " n"], *, expectile: Scalar
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """IQL's value loss: expectile regression of `V(s)` on `q_data = min_i Q_target,i(s, a_data)` (see
    `data_q_target`; no gradient into Q)."""
    q = jax.lax.stop_gradient(q_data)
    v = state_values(value, obs)
    loss = jnp.mean(expectile_loss(q - v, expectile))
    return loss, {"value_loss": loss, "v_mean": jnp.mean(v)}


def iql_q_target(value: ValueNetwork, batch: Transitions, *, discount: Scalar) -> Float[Array, " n"]:
    """IQL's Q target `r + gamma (1 - terminal) V(s')` (no gradient)."""
    return jax.lax.stop_gradient(td_target(batch.reward, batch.terminal, state_values(value, batch.next_obs), discount))


def q_loss(
    q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"], target: Float[Array, " n"]
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Squared error of every ensemble member against one target, summed over members, averaged over the batch."""
    target = jax.lax.stop_gradient(target)
    qs = q_values(q, obs, action)
    loss = jnp.mean(jnp.sum((qs - target[:, None]) ** 2, axis=-1))
    return loss, {"q_loss": loss, "q_mean": jnp.mean(qs), "target_mean": jnp.mean(target)}


def softmax_q_value(q: Float[Array, "n m"], beta_q: Scalar) -> Float[Array, " n"]:
    """`sum_j softmax_j(beta_q q_j) q_j` per row: the mean at `beta_q = 0`, the maximum as `beta_q -> inf`."""
    weights = jax.nn.softmax(beta_q * q, axis=-1)
    return jnp.sum(weights * q, axis=-1)


def softmax_critic_target(
    q_target: QEnsemble,
    batch: Transitions,
    next_candidates: Float[Array, "n m act_dim"],
    *,
    beta_q: Scalar,
    discount: Scalar,
) -> Float[Array, " n"]:
    """`r + gamma (1 - terminal) sum_j softmax_j(beta_q Q'(s', a'_j)) Q'(s', a'_j)` (no gradient into `Q'`).

    `Q'` is the minimum over the target ensemble and `a'_j = next_candidates[:, j]` are candidates at `s'`.
    """
    n, m, a = next_candidates.shape
    next_q = min_q(
        stop_gradient(q_target), jnp.repeat(batch.next_obs, m, axis=0), next_candidates.reshape(n * m, a)
    ).reshape(n, m)
    return td_target(batch.reward, batch.terminal, softmax_q_value(next_q, beta_q), discount)


def softmax_critic_loss(
    q: QEnsemble,
    q_target: QEnsemble,
    batch: Transitions,
    next_candidates: Float[Array, "n m act_dim"],
    *,
    beta_q: Scalar,
    discount: Scalar,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """In-support softmax Q-learning: regress every `Q_i(s, a)` on `softmax_critic_target`."""
    target = softmax_critic_target(q_target, batch, next_candidates, beta_q=beta_q, discount=discount)
    return q_loss(q, batch.obs, batch.action, target)


# ----------------------------------------------------------------------------------------------------------------------
# Init and update of each critic


LOG_PARTITION_CLIP = 5.0
"""Above this exponent `z = k (Q - L)` the Gumbel regression's `exp(z)` continues linearly (value and slope of
`exp` at the clip), so that a few large advantages cannot blow up the regression's gradient."""


def log_partition_loss(
    log_partition: ValueNetwork, obs: Float[Array, "n obs_dim"], q_data: Float[Array, " n"], *, temperature: Scalar
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Gumbel regression of `L(s)` on `q_data = min_i Q_target,i(s, a_data)` (no gradient into Q): the mean of
    `exp(z) - z - 1` with `z = temperature (q - L(s))`.

    Its minimiser over `L(s)` solves `E[exp(z) | s] = 1`, i.e. `L(s) = log E[exp(temperature Q) | s] / temperature`
    over the dataset's actions at `s` (the XQL value loss of Garg, Hejna, Geist, Ermon 2023, arXiv 2301.02328, in
    units of `temperature`), as long as `z` stays below `LOG_PARTITION_CLIP`, above which `exp` continues linearly.
    """
    q = jax.lax.stop_gradient(q_data)
    level = state_values(log_partition, obs)
    z = temperature * (q - level)
    clip = LOG_PARTITION_CLIP
    ez = jnp.where(z < clip, jnp.exp(jnp.minimum(z, clip)), math.exp(clip) * (1.0 + z - clip))
    loss = jnp.mean(ez - z - 1.0)
    return loss, {"log_partition_loss": loss, "log_partition_mean": jnp.mean(level)}


def init_iql_critic(config: IQLCriticConfig, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> IQLCritic:
    """A fresh critic (the target ensemble starts equal to the online one)."""
    kq, kv = jax.random.split(key)
    size = dict(width=config.width, depth=config.depth, layer_norm=config.layer_norm)
    q = QEnsemble(obs_dim, act_dim, num_q=config.num_q, key=kq, **size)
    value = ValueNetwork(obs_dim, key=kv, **size)
    opt = make_optimizer(config.lr)
    return IQLCritic(
        q=q, q_target=q, value=value, q_opt_state=init_opt_state(opt, q), value_opt_state=init_opt_state(opt, value)
    )


def update_iql_critic(
    critic: IQLCritic, batch: Transitions, config: IQLCriticConfig, *, q_data: Float[Array, " n"] | None = None
) -> tuple[IQLCritic, dict[str, Array]]:
    """One critic step, in IQL's order: `V` on the target `Q`, then `Q` on the new `V(s')`, then the target.

    Args:
        critic: the current critic.
        batch: `rl.data.Transitions` (`obs, action, reward, next_obs, terminal`), rewards already transformed.
        config: the critic's settings.
        q_data: `data_q_target(critic.q_target, batch)`, when the caller computed it already (the IQL actor and
            FlowQ's policy read the same numbers); computed here otherwise.

    Returns:
        The new critic and its diagnostics (`value_loss`, `v_mean`, `q_loss`, `q_mean`, `target_mean`).
    """
    opt = make_optimizer(config.lr)
    if q_data is None:
        q_data = data_q_target(critic.q_target, batch)
    (_, v_info), v_grads = eqx.filter_value_and_grad(value_loss, has_aux=True)(
        critic.value, batch.obs, q_data, expectile=config.expectile
    )
    value, value_opt_state = apply_gradients(critic.value, critic.value_opt_state, v_grads, opt)

    target = iql_q_target(value, batch, discount=config.discount)
    (_, q_info), q_grads = eqx.filter_value_and_grad(q_loss, has_aux=True)(critic.q, batch.obs, batch.action, target)
    q, q_opt_state = apply_gradients(critic.q, critic.q_opt_state, q_grads, opt)

    new = IQLCritic(
        q=q,
        q_target=polyak_update(critic.q_target, q, config.tau),
        value=value,
        q_opt_state=q_opt_state,
        value_opt_state=value_opt_state,
    )
    return new, {**v_info, **q_info}


def init_softmax_critic(config: IQLCriticConfig, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> SoftmaxCritic:
    """A fresh softmax critic (the target ensemble starts equal to the online one)."""
    q = QEnsemble(
        obs_dim, act_dim, width=config.width, depth=config.depth, num_q=config.num_q, layer_norm=config.layer_norm,
        key=key,
    )
    return SoftmaxCritic(q=q, q_target=q, q_opt_state=init_opt_state(make_optimizer(config.lr), q))


def update_softmax_critic(
    critic: SoftmaxCritic,
    batch: Transitions,
    next_candidates: Float[Array, "n m act_dim"],
    config: IQLCriticConfig,
    *,
    beta_q: Scalar,
) -> tuple[SoftmaxCritic, dict[str, Array]]:
    """One softmax-critic step: `Q` on the softmax target over `next_candidates`, then the target ensemble.

    Args:
        critic: the current critic.
        batch: `rl.data.Transitions`, rewards already transformed.
        next_candidates: `m` candidate actions at each next state, `[n, m, act_dim]`.
        config: the critic's settings (`expectile` is not used).
        beta_q: inverse temperature of the softmax over candidates.

    Returns:
        The new critic and its diagnostics (`q_loss`, `q_mean`, `target_mean`).
    """
    (_, info), grads = eqx.filter_value_and_grad(softmax_critic_loss, has_aux=True)(
        critic.q, critic.q_target, batch, next_candidates, beta_q=beta_q, discount=config.discount
    )
    q, q_opt_state = apply_gradients(critic.q, critic.q_opt_state, grads, make_optimizer(config.lr))
    q_target = polyak_update(critic.q_target, q, config.tau)
    return SoftmaxCritic(q=q, q_target=q_target, q_opt_state=q_opt_state), info

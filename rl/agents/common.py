"""Pieces the agents share, each in one place.

- Networks: `QEnsemble` (independent Q networks stacked on a leading axis, evaluated with one `vmap`) and
  `ValueNetwork`.
- Losses: `expectile_loss`, `td_target`, and the IQL-style critic (`value_loss`, `q_loss`, `update_iql_critic`):
  expectile regression of `V(s)` on `min_i Q_target,i(s, a_data)` and `Q(s, a) -> r + gamma (1 - terminal) V(s')`.
  It never looks at policy samples, which is what IQL and FlowQ need (and QIPO's `critic="iql"` option).
- Optimisation: `make_optimizer` (Adam, optional cosine decay and clipping), `apply_gradients`, `polyak_update`.
- Acting: `sample_flow_actions` (the `energyflow` ODE sampler, clipped to `[-1, 1]`) and `best_of_n`.

Shapes follow one rule: a batch of `n` scalars is `[n]`, never `[n, 1]`.
"""

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from energyflow import sample as _flow_sample

__all__ = [
    "IQLCritic",
    "QEnsemble",
    "ValueNetwork",
    "apply_gradients",
    "best_of_n",
    "check_config",
    "expectile_loss",
    "init_iql_critic",
    "init_opt_state",
    "iql_q_target",
    "make_optimizer",
    "min_q",
    "polyak_update",
    "q_loss",
    "q_values",
    "sample_flow_actions",
    "state_values",
    "stop_gradient",
    "td_target",
    "update_iql_critic",
    "value_loss",
]


# ----------------------------------------------------------------------------------------------------------------------
# Networks


def _mlp(in_size: int, out_size: int | Literal["scalar"], *, width: int, depth: int, key: PRNGKeyArray) -> eqx.nn.MLP:
    return eqx.nn.MLP(in_size, out_size, width_size=width, depth=depth, activation=jax.nn.relu, key=key)


class QEnsemble(eqx.Module):
    """`num_q` independent Q networks `Q_i(s, a)`, their parameters stacked on a leading axis.

    Called on one `(obs, action)` pair it returns all `num_q` values; `jax.vmap` it (or use `q_values`) for batches.
    """

    nets: eqx.nn.MLP
    num_q: int = eqx.field(static=True)

    def __init__(
        self, obs_dim: int, act_dim: int, *, width: int = 256, depth: int = 2, num_q: int = 2, key: PRNGKeyArray
    ):
        keys = jax.random.split(key, num_q)
        self.nets = eqx.filter_vmap(lambda k: _mlp(obs_dim + act_dim, "scalar", width=width, depth=depth, key=k))(keys)
        self.num_q = num_q

    def __call__(self, obs: Float[Array, " obs_dim"], action: Float[Array, " act_dim"]) -> Float[Array, " num_q"]:
        x = jnp.concatenate([obs, action])
        return eqx.filter_vmap(lambda net: net(x))(self.nets)


class ValueNetwork(eqx.Module):
    """A state-value network `V(s)`."""

    net: eqx.nn.MLP

    def __init__(self, obs_dim: int, *, width: int = 256, depth: int = 2, key: PRNGKeyArray):
        self.net = _mlp(obs_dim, "scalar", width=width, depth=depth, key=key)

    def __call__(self, obs: Float[Array, " obs_dim"]) -> Float[Array, ""]:
        return self.net(obs)


def q_values(
    q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]
) -> Float[Array, "n num_q"]:
    """Every member's `Q_i(s, a)` for a batch: `[n, num_q]`."""
    return jax.vmap(q)(obs, action)


def min_q(q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]) -> Float[Array, " n"]:
    """The pessimistic value `min_i Q_i(s, a)` for a batch: `[n]`."""
    return jnp.min(q_values(q, obs, action), axis=-1)


def state_values(value: ValueNetwork, obs: Float[Array, "n obs_dim"]) -> Float[Array, " n"]:
    """`V(s)` for a batch: `[n]`."""
    return jax.vmap(value)(obs)


# ----------------------------------------------------------------------------------------------------------------------
# Losses


def expectile_loss(diff: Float[Array, " n"], expectile: float) -> Float[Array, " n"]:
    """The asymmetric squared loss `|tau - 1(diff < 0)| diff^2` of expectile regression, per example.

    With `diff = target - prediction`, minimising its mean makes the prediction the `tau`-expectile of the target;
    `tau = 0.5` gives half the squared error (the mean), `tau -> 1` approaches the maximum.
    """
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def td_target(
    reward: Float[Array, " n"], terminal: Float[Array, " n"], next_value: Float[Array, " n"], discount: float
) -> Float[Array, " n"]:
    """The one-step target `r + gamma (1 - terminal) V(s')` (no bootstrap past a true termination)."""
    return reward + discount * (1.0 - terminal) * next_value


def value_loss(
    value: ValueNetwork,
    q_target: QEnsemble,
    obs: Float[Array, "n obs_dim"],
    action: Float[Array, "n act_dim"],
    *,
    expectile: float,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """IQL's value loss: expectile regression of `V(s)` on `min_i Q_target,i(s, a_data)` (no gradient into Q)."""
    q = min_q(stop_gradient(q_target), obs, action)
    v = state_values(value, obs)
    loss = jnp.mean(expectile_loss(q - v, expectile))
    return loss, {"value_loss": loss, "v_mean": jnp.mean(v)}


def iql_q_target(
    value: ValueNetwork, batch: Any, *, discount: float, reward_scale: float = 1.0, reward_bias: float = 0.0
) -> Float[Array, " n"]:
    """IQL's Q target `reward_scale r + reward_bias + gamma (1 - terminal) V(s')` (no gradient)."""
    reward = reward_scale * batch.reward + reward_bias
    return jax.lax.stop_gradient(td_target(reward, batch.terminal, state_values(value, batch.next_obs), discount))


def q_loss(
    q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"], target: Float[Array, " n"]
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Squared error of every ensemble member against one target, summed over members, averaged over the batch."""
    target = jax.lax.stop_gradient(target)
    qs = q_values(q, obs, action)
    loss = jnp.mean(jnp.sum((qs - target[:, None]) ** 2, axis=-1))
    return loss, {"q_loss": loss, "q_mean": jnp.mean(qs), "target_mean": jnp.mean(target)}


# ----------------------------------------------------------------------------------------------------------------------
# Optimisation


def make_optimizer(lr: float, *, decay_steps: int = 0, max_grad_norm: float = 0.0) -> optax.GradientTransformation:
    """Adam with learning rate `lr`, cosine-decayed to 0 over `decay_steps` updates when `decay_steps > 0`.

    Args:
        lr: learning rate.
        decay_steps: length of the cosine decay; 0 keeps `lr` constant.
        max_grad_norm: clip the global gradient norm to this value first; 0 means no clipping.

    Returns:
        The optax transformation (pure: rebuild it from the same arguments inside `update`).
    """
    schedule = optax.cosine_decay_schedule(lr, decay_steps) if decay_steps > 0 else lr
    adam = optax.adam(schedule)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam) if max_grad_norm > 0 else adam


def init_opt_state(opt: optax.GradientTransformation, model: PyTree) -> PyTree:
    """The optimiser state for the trainable (inexact array) leaves of `model`."""
    return opt.init(eqx.filter(model, eqx.is_inexact_array))


def apply_gradients(
    model: PyTree, opt_state: PyTree, grads: PyTree, opt: optax.GradientTransformation
) -> tuple[PyTree, PyTree]:
    """One optimiser step on `model`; returns the new model and optimiser state."""
    updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
    return eqx.apply_updates(model, updates), opt_state


def stop_gradient(tree: PyTree) -> PyTree:
    """`jax.lax.stop_gradient` on every array leaf of a pytree (a network's activation functions pass through)."""
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


def polyak_update(target: PyTree, online: PyTree, rate: float) -> PyTree:
    """`target <- (1 - rate) target + rate online` on the array leaves (other leaves are kept)."""

    def mix(t, o):
        return (1.0 - rate) * t + rate * o if eqx.is_inexact_array(t) else t

    return jax.tree.map(mix, target, online)


# ----------------------------------------------------------------------------------------------------------------------
# The IQL-style critic


class IQLCritic(eqx.Module):
    """Twin Q with a Polyak target network, and a state-value network trained by expectile regression."""

    q: QEnsemble
    q_target: QEnsemble
    value: ValueNetwork
    q_opt_state: PyTree
    value_opt_state: PyTree


def init_iql_critic(
    obs_dim: int, act_dim: int, *, width: int, depth: int, num_q: int, lr: float, key: PRNGKeyArray
) -> IQLCritic:
    """A fresh IQL critic (the target network starts equal to the online one)."""
    kq, kv = jax.random.split(key)
    q = QEnsemble(obs_dim, act_dim, width=width, depth=depth, num_q=num_q, key=kq)
    value = ValueNetwork(obs_dim, width=width, depth=depth, key=kv)
    opt = make_optimizer(lr)
    return IQLCritic(
        q=q, q_target=q, value=value, q_opt_state=init_opt_state(opt, q), value_opt_state=init_opt_state(opt, value)
    )


def update_iql_critic(
    critic: IQLCritic,
    batch: Any,
    *,
    discount: float,
    expectile: float,
    polyak: float,
    lr: float,
    reward_scale: float = 1.0,
    reward_bias: float = 0.0,
) -> tuple[IQLCritic, dict[str, Array]]:
    """One IQL critic step, in IQL's order: `V` on the target `Q`, then `Q` on the new `V(s')`, then the target.

    Args:
        critic: the current critic.
        batch: `rl.data.Transitions` (`obs, action, reward, next_obs, terminal`).
        discount: `gamma`.
        expectile: `tau` of the value regression.
        polyak: rate of the target update.
        lr: Adam learning rate of both networks.
        reward_scale, reward_bias: the critic learns from `reward_scale * r + reward_bias`.

    Returns:
        The new critic and its diagnostics.
    """
    opt = make_optimizer(lr)
    (_, v_info), v_grads = eqx.filter_value_and_grad(value_loss, has_aux=True)(
        critic.value, critic.q_target, batch.obs, batch.action, expectile=expectile
    )
    value, value_opt_state = apply_gradients(critic.value, critic.value_opt_state, v_grads, opt)

    target = iql_q_target(value, batch, discount=discount, reward_scale=reward_scale, reward_bias=reward_bias)
    (_, q_info), q_grads = eqx.filter_value_and_grad(q_loss, has_aux=True)(critic.q, batch.obs, batch.action, target)
    q, q_opt_state = apply_gradients(critic.q, critic.q_opt_state, q_grads, opt)

    new = IQLCritic(
        q=q,
        q_target=polyak_update(critic.q_target, q, polyak),
        value=value,
        q_opt_state=q_opt_state,
        value_opt_state=value_opt_state,
    )
    return new, {**v_info, **q_info}


# ----------------------------------------------------------------------------------------------------------------------
# Acting with a flow policy


def sample_flow_actions(
    policy: eqx.Module,
    obs: Float[Array, "n obs_dim"],
    *,
    key: PRNGKeyArray,
    steps: int,
    solver: str = "euler",
) -> Float[Array, "n act_dim"]:
    """One action per state from a conditional flow policy `v(a_t, t, s)`: the `energyflow` ODE from noise, clipped.

    The cost is `steps` evaluations of the policy on the batch; training losses never call this for FlowQ.
    """
    actions = _flow_sample(policy, key, obs.shape[0], dim=policy.dim, context=obs, solver=solver, steps=steps)
    return jnp.clip(actions, -1.0, 1.0)


def best_of_n(
    propose: Callable[[PRNGKeyArray, Float[Array, "m obs_dim"]], Float[Array, "m act_dim"]],
    score: Callable[[Float[Array, "m obs_dim"], Float[Array, "m act_dim"]], Float[Array, " m"]],
    obs: Float[Array, "n obs_dim"],
    *,
    num_candidates: int,
    key: PRNGKeyArray,
) -> Float[Array, "n act_dim"]:
    """Draw `num_candidates` actions per state with `propose(key, obs)` and keep the one with the highest `score`.

    Args:
        propose: batched proposal, e.g. `sample_flow_actions` bound to a policy.
        score: batched score of `(obs, action)` pairs, e.g. `min_q` bound to a critic.
        obs: the states, `[n, obs_dim]`.
        num_candidates: `N`; with 1 this is just `propose`.
        key: randomness of the proposals.

    Returns:
        The chosen actions, `[n, act_dim]`.
    """
    if num_candidates == 1:
        return propose(key, obs)
    n = obs.shape[0]
    repeated = jnp.repeat(obs, num_candidates, axis=0)
    candidates = propose(key, repeated)
    scores = score(repeated, candidates).reshape(n, num_candidates)
    best = jnp.argmax(scores, axis=-1)
    candidates = candidates.reshape(n, num_candidates, -1)
    return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0, :]


def check_config(config: Any, rules: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Raise one `ValueError` listing every config field that breaks its rule (`name -> (ok(value), expectation)`)."""
    problems = [
        f"{name} must be {expectation}, got {getattr(config, name)!r}"
        for name, (ok, expectation) in rules.items()
        if not ok(getattr(config, name))
    ]
    if problems:
        raise ValueError(f"invalid {type(config).__module__}.{type(config).__name__}: " + "; ".join(problems) + ".")

"""Soft actor-critic (Haarnoja et al., 2018) in JAX: the algorithm and the export of its actor.

The pieces: a tanh-Gaussian actor, two Q networks with Polyak-averaged targets, and a learned
temperature `alpha` aiming at the entropy `-act_dim`. `update` is one gradient update on a batch of
`rl.data.Transitions`; `update_many` runs several in one `lax.scan`. `rl.online.loop.train` steps an
environment and calls them (one update per environment step on average, as in the paper).

The trained actor's deterministic policy (`tanh` of the Gaussian mean) exports to the `.npz` format
of `rl.behavior` (`save_actor`), ready for `python -m rl.collect medium --policy FILE.npz`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from rl.behavior import BehaviorPolicy, save_behavior_policy
from rl.data import Transitions

__all__ = [
    "Actor",
    "DeterministicActor",
    "SACConfig",
    "SACState",
    "actor_to_behavior",
    "deterministic_actions",
    "init_state",
    "sample_actions",
    "save_actor",
    "update",
    "update_many",
]


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (defaults: the paper's, as in Stable-Baselines3 and CleanRL)."""

    # width of every hidden layer of the actor and the critics
    hidden_size: int = 256
    # number of hidden layers
    num_layers: int = 2
    # Adam learning rate of the actor
    actor_lr: float = 3e-4
    # Adam learning rate of the critics
    critic_lr: float = 3e-4
    # Adam learning rate of log(alpha)
    alpha_lr: float = 3e-4
    # discount gamma
    discount: float = 0.99
    # Polyak rate of the target critics
    tau: float = 0.005
    # transitions per gradient update
    batch_size: int = 256
    # initial temperature alpha
    init_alpha: float = 1.0
    # entropy the temperature aims at; None means -act_dim
    target_entropy: float | None = None
    # uniform random actions for this many first steps, and no update before
    learning_starts: int = 5000
    # environment steps between jitted calls; each call runs this many updates (lax.scan)
    updates_per_call: int = 50
    # lower bound of the actor's log standard deviation
    log_std_min: float = -5.0
    # upper bound of the actor's log standard deviation
    log_std_max: float = 2.0

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "batch_size", "updates_per_call"):
            if getattr(self, name) < 1:
                raise ValueError(f"SACConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_starts < self.batch_size:
            raise ValueError(
                f"SACConfig.learning_starts ({self.learning_starts}) must be >= batch_size ({self.batch_size})."
            )
        if not 0.0 <= self.discount <= 1.0 or not 0.0 < self.tau <= 1.0 or self.init_alpha <= 0:
            raise ValueError(f"SACConfig needs 0 <= discount <= 1, 0 < tau <= 1 and init_alpha > 0; got {self}.")


# ----------------------------------------------------------------------------- networks


class Actor(eqx.Module):
    """Tanh-Gaussian policy: an MLP gives the mean and log-std of `u`; the action is `tanh(u)`."""

    net: eqx.nn.MLP
    act_dim: int = eqx.field(static=True)
    log_std_min: float = eqx.field(static=True)
    log_std_max: float = eqx.field(static=True)

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, *, key: PRNGKeyArray):
        self.net = eqx.nn.MLP(
            obs_dim, 2 * act_dim, cfg.hidden_size, cfg.num_layers, activation=jax.nn.relu, key=key
        )
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = cfg.log_std_min, cfg.log_std_max

    def __call__(self, obs: Float[Array, " obs_dim"]) -> tuple[Float[Array, " act_dim"], Float[Array, " act_dim"]]:
        out = self.net(obs)
        mean, log_std = out[: self.act_dim], out[self.act_dim :]
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def sample_actions(
    actor: Actor, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray
) -> tuple[Float[Array, "n act_dim"], Float[Array, " n"]]:
    """Sample `a = tanh(mean + std * eps)` and its log-density (with the tanh correction).

    Args:
        actor: the policy.
        obs: observations `[n, obs_dim]`.
        key: PRNG key.

    Returns:
        Actions `[n, act_dim]` in `(-1, 1)` and `log pi(a | s)` `[n]`.
    """
    mean, log_std = jax.vmap(actor)(obs)
    eps = jax.random.normal(key, mean.shape)
    u = mean + jnp.exp(log_std) * eps
    gauss = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)
    # log |d tanh(u) / du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    squash = jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), gauss - squash


def deterministic_actions(actor: Actor, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
    """The actor's mode, `tanh(mean)`, for a batch of observations."""
    mean, _ = jax.vmap(actor)(obs)
    return jnp.tanh(mean)


class DeterministicActor(eqx.Module):
    """`policy(key, obs)` for `rl.envs.evaluate`: the actor's deterministic actions."""

    actor: Actor

    def __call__(self, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        del key
        return deterministic_actions(self.actor, obs)


def _make_critics(obs_dim: int, act_dim: int, cfg: SACConfig, *, key: PRNGKeyArray) -> eqx.nn.MLP:
    """Two Q networks with their parameters stacked on a leading axis."""

    def make(k: PRNGKeyArray) -> eqx.nn.MLP:
        return eqx.nn.MLP(obs_dim + act_dim, "scalar", cfg.hidden_size, cfg.num_layers, activation=jax.nn.relu, key=k)

    return eqx.filter_vmap(make)(jax.random.split(key, 2))


def _q_values(critics: eqx.nn.MLP, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]) -> Float[Array, "2 n"]:
    x = jnp.concatenate([obs, action], axis=-1)
    return eqx.filter_vmap(lambda net: jax.vmap(net)(x))(critics)


# ----------------------------------------------------------------------------- state and update


class SACState(eqx.Module):
    """Everything SAC updates: networks, temperature and optimiser states."""

    actor: Actor
    critics: eqx.nn.MLP
    target_critics: eqx.nn.MLP
    log_alpha: Float[Array, ""]
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree


def _optimizers(cfg: SACConfig) -> tuple[optax.GradientTransformation, ...]:
    return optax.adam(cfg.actor_lr), optax.adam(cfg.critic_lr), optax.adam(cfg.alpha_lr)


@eqx.filter_jit
def init_state(obs_dim: int, act_dim: int, cfg: SACConfig, *, key: PRNGKeyArray) -> SACState:
    """Fresh networks, temperature and optimiser states (one compiled call, not many small ones).

    Args:
        obs_dim: observation size.
        act_dim: action size.
        cfg: hyperparameters.
        key: PRNG key for the initial weights.

    Returns:
        The initial `SACState`.
    """
    k_actor, k_critic = jax.random.split(key)
    actor = Actor(obs_dim, act_dim, cfg, key=k_actor)
    critics = _make_critics(obs_dim, act_dim, cfg, key=k_critic)
    log_alpha = jnp.asarray(math.log(cfg.init_alpha), jnp.float32)
    opt_a, opt_c, opt_t = _optimizers(cfg)
    return SACState(
        actor=actor,
        critics=critics,
        target_critics=critics,
        log_alpha=log_alpha,
        actor_opt=opt_a.init(eqx.filter(actor, eqx.is_inexact_array)),
        critic_opt=opt_c.init(eqx.filter(critics, eqx.is_inexact_array)),
        alpha_opt=opt_t.init(log_alpha),
    )


def _critic_loss(
    critics: eqx.nn.MLP, batch: Transitions, target: Float[Array, " n"]
) -> tuple[Float[Array, ""], Float[Array, "2 n"]]:
    q = _q_values(critics, batch.obs, batch.action)
    return jnp.sum(jnp.mean((q - target[None, :]) ** 2, axis=1)), q


def _actor_loss(
    actor: Actor, critics: eqx.nn.MLP, alpha: Float[Array, ""], obs: Float[Array, "n obs_dim"], key: PRNGKeyArray
) -> tuple[Float[Array, ""], Float[Array, " n"]]:
    action, log_prob = sample_actions(actor, obs, key=key)
    q = jnp.min(_q_values(critics, obs, action), axis=0)
    return jnp.mean(alpha * log_prob - q), log_prob


def _stop_gradient(module: PyTree) -> PyTree:
    params, static = eqx.partition(module, eqx.is_inexact_array)
    return eqx.combine(jax.lax.stop_gradient(params), static)


def update(state: SACState, batch: Transitions, cfg: SACConfig, *, key: PRNGKeyArray) -> tuple[SACState, dict[str, Array]]:
    """One SAC update: critics, then actor, then temperature, then the target critics.

    Args:
        state: current state.
        batch: transitions (float32; `terminal` is 1 only on true terminations).
        cfg: hyperparameters.
        key: PRNG key.

    Returns:
        The new state and diagnostics (`critic_loss`, `actor_loss`, `alpha`, `entropy`, `q_mean`).
    """
    k_next, k_pi = jax.random.split(key)
    opt_a, opt_c, opt_t = _optimizers(cfg)
    act_dim = state.actor.act_dim
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    alpha = jnp.exp(state.log_alpha)

    # critics: regress on r + gamma (1 - terminal) (min target Q(s', a') - alpha log pi(a'|s'))
    next_action, next_log_prob = sample_actions(state.actor, batch.next_obs, key=k_next)
    next_q = jnp.min(_q_values(state.target_critics, batch.next_obs, next_action), axis=0)
    target = batch.reward + cfg.discount * (1.0 - batch.terminal) * (next_q - alpha * next_log_prob)
    target = jax.lax.stop_gradient(target)
    (critic_loss, q), grads = eqx.filter_value_and_grad(_critic_loss, has_aux=True)(state.critics, batch, target)
    updates, critic_opt = opt_c.update(grads, state.critic_opt, eqx.filter(state.critics, eqx.is_inexact_array))
    critics = eqx.apply_updates(state.critics, updates)

    # actor: minimise alpha log pi(a|s) - min Q(s, a), a ~ pi; only the actor's parameters move
    frozen_critics = _stop_gradient(critics)
    (actor_loss, log_prob), grads = eqx.filter_value_and_grad(_actor_loss, has_aux=True)(
        state.actor, frozen_critics, jax.lax.stop_gradient(alpha), batch.obs, k_pi
    )
    updates, actor_opt = opt_a.update(grads, state.actor_opt, eqx.filter(state.actor, eqx.is_inexact_array))
    actor = eqx.apply_updates(state.actor, updates)

    # temperature: push the entropy -E[log pi] towards the target
    entropy_gap = jax.lax.stop_gradient(log_prob + target_entropy)

    def alpha_loss(log_alpha: Float[Array, ""]) -> Float[Array, ""]:
        return -jnp.mean(log_alpha * entropy_gap)

    grad_t = jax.grad(alpha_loss)(state.log_alpha)
    updates, alpha_opt = opt_t.update(grad_t, state.alpha_opt, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, updates)

    target_critics = jax.tree_util.tree_map(
        lambda t, c: (1.0 - cfg.tau) * t + cfg.tau * c if eqx.is_inexact_array(t) else t,
        state.target_critics,
        critics,
    )
    new = SACState(actor, critics, target_critics, log_alpha, actor_opt, critic_opt, alpha_opt)
    info = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "alpha": alpha,
        "entropy": -jnp.mean(log_prob),
        "q_mean": jnp.mean(q),
    }
    return new, info


@eqx.filter_jit
def update_many(
    state: SACState, batches: dict[str, Array], cfg: SACConfig, *, key: PRNGKeyArray
) -> tuple[SACState, dict[str, Array]]:
    """`k` successive updates in one `lax.scan`, one per batch stacked on the leading axis.

    Args:
        state: current state.
        batches: `obs, action, reward, next_obs, terminal`, each with a leading axis `k`.
        cfg: hyperparameters (static).
        key: PRNG key.

    Returns:
        The new state and the diagnostics of every update (`[k]` each).
    """
    params, static = eqx.partition(state, eqx.is_array)
    num = batches["reward"].shape[0]

    def body(p: PyTree, xs: tuple[dict[str, Array], PRNGKeyArray]) -> tuple[PyTree, dict[str, Array]]:
        batch, k = xs
        s, info = update(eqx.combine(p, static), Transitions(**batch), cfg, key=k)
        return eqx.filter(s, eqx.is_array), info

    params, infos = jax.lax.scan(body, params, (batches, jax.random.split(key, num)))
    return eqx.combine(params, static), infos


# ----------------------------------------------------------------------------- export


def actor_to_behavior(actor: Actor, env_id: str, *, source: str = "rl.sac") -> BehaviorPolicy:
    """The actor's deterministic policy `tanh(mean)` as a `BehaviorPolicy` (no observation scaling).

    Args:
        actor: a trained actor.
        env_id: Gymnasium id it acts in.
        source: provenance recorded in the file.

    Returns:
        The behaviour policy; it gives the same actions as `deterministic_actions`.
    """
    layers = actor.net.layers
    weights = [np.asarray(layer.weight, np.float32).T for layer in layers]
    biases = [np.asarray(layer.bias, np.float32) for layer in layers]
    weights[-1] = weights[-1][:, : actor.act_dim]  # keep the mean head, drop the log-std head
    biases[-1] = biases[-1][: actor.act_dim]
    obs_dim = weights[0].shape[0]
    return BehaviorPolicy(
        obs_mean=np.zeros(obs_dim),
        obs_std=np.ones(obs_dim),
        obs_clip=float("inf"),
        weights=tuple(weights),
        biases=tuple(biases),
        hidden_activation="relu",
        output_squash="tanh",
        env_id=env_id,
        algo="sac",
        source=source,
    )


def save_actor(path: str | os.PathLike, actor: Actor, env_id: str, *, source: str = "rl.sac") -> None:
    """Save the actor's deterministic policy as a behaviour-policy `.npz` (see `rl.behavior`).

    Args:
        path: destination file.
        actor: a trained actor.
        env_id: Gymnasium id it acts in.
        source: provenance recorded in the file.
    """
    save_behavior_policy(path, actor_to_behavior(actor, env_id, source=source))

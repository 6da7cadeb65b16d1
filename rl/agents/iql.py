"""IQL, the baseline: Implicit Q-Learning (Kostrikov, Nair, Levine 2021, arXiv 2110.06169).

The critic never queries actions outside the dataset: `V(s)` is the `tau`-expectile of `Q(s, a_data)`, and
`Q(s, a) -> r + gamma (1 - terminal) V(s')` (`rl.agents.common.update_iql_critic`). The policy is extracted by
advantage-weighted regression (AWR): maximise `exp(temperature (Q(s, a) - V(s))) log pi(a | s)` over dataset
actions, weights clipped at `max_weight`.

Policies, as in the paper's MuJoCo setup: a Gaussian whose mean is `tanh` of an MLP and whose log-std is one
state-independent vector (not a squashed distribution; actions are the mean at evaluation), or a deterministic
`tanh` MLP trained by weighted regression `exp(...) |mu(s) - a|^2`.
"""

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .common import (
    IQLCritic,
    apply_gradients,
    check_config,
    init_iql_critic,
    init_opt_state,
    make_optimizer,
    min_q,
    state_values,
    stop_gradient,
    update_iql_critic,
)

__all__ = ["Config", "GaussianPolicy", "State", "act", "actor_loss", "awr_weights", "init", "update"]


@dataclasses.dataclass(frozen=True)
class Config:
    """IQL's settings; the defaults are the paper's MuJoCo locomotion ones (and the ones results are reported with)."""

    # discount gamma
    discount: float = 0.99
    # expectile tau of the value regression (0.5 = SARSA-like mean, -> 1 = max over dataset actions)
    expectile: float = 0.7
    # inverse temperature of the advantage weights exp(temperature * (Q - V)) (the paper's beta)
    temperature: float = 3.0
    # AWR weights are clipped at this value (the paper's 100)
    max_weight: float = 100.0
    # "gaussian": state-independent log-std Gaussian, mean tanh(MLP); "deterministic": tanh(MLP) with weighted MSE
    policy: str = "gaussian"
    # learning rate of critic, value and actor (Adam)
    lr: float = 3e-4
    # cosine decay of the actor's learning rate over this many updates (the paper decays over its 1M updates;
    # 0 = constant, since our budgets vary: set it to the run length to follow the paper)
    actor_decay_steps: int = 0
    # Polyak rate of the target Q network
    polyak: float = 0.005
    # hidden width and number of hidden layers of the critic, value and actor MLPs
    width: int = 256
    depth: int = 2
    # number of Q networks (twin Q; the target is their minimum)
    num_q: int = 2
    # bounds of the Gaussian's log-std
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    # the critic learns from reward_scale * r + reward_bias (the paper rescales MuJoCo rewards by
    # 1000 / (max episode return - min episode return) of the dataset; the results script sets this per dataset)
    reward_scale: float = 1.0
    reward_bias: float = 0.0

    def __post_init__(self):
        for name in ("discount", "expectile", "temperature", "max_weight", "lr", "polyak", "log_std_min",
                     "log_std_max", "reward_scale", "reward_bias"):
            object.__setattr__(self, name, float(getattr(self, name)))
        check_config(
            self,
            {
                "discount": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
                "expectile": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
                "temperature": (lambda v: v >= 0.0, ">= 0"),
                "max_weight": (lambda v: v > 0.0, "> 0"),
                "policy": (lambda v: v in ("gaussian", "deterministic"), "'gaussian' or 'deterministic'"),
                "lr": (lambda v: v > 0.0, "> 0"),
                "actor_decay_steps": (lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
                "polyak": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
                "width": (lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
                "depth": (lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
                "num_q": (lambda v: isinstance(v, int) and v >= 1, "an int >= 1"),
                "log_std_max": (lambda v: v > self.log_std_min, "> log_std_min"),
            },
        )


class GaussianPolicy(eqx.Module):
    """`pi(a | s) = N(tanh(MLP(s)), diag(exp(log_std))^2)`; with `deterministic`, just the mean `tanh(MLP(s))`."""

    net: eqx.nn.MLP
    log_std: Float[Array, " act_dim"]
    deterministic: bool = eqx.field(static=True)

    def __init__(self, obs_dim: int, act_dim: int, *, width: int, depth: int, deterministic: bool, key: PRNGKeyArray):
        self.net = eqx.nn.MLP(obs_dim, act_dim, width_size=width, depth=depth, activation=jax.nn.relu, key=key)
        self.log_std = jnp.zeros((act_dim,))
        self.deterministic = deterministic

    def mean(self, obs: Float[Array, " obs_dim"]) -> Float[Array, " act_dim"]:
        """The mean action (the action used at evaluation)."""
        return jnp.tanh(self.net(obs))

    def log_prob(
        self, obs: Float[Array, " obs_dim"], action: Float[Array, " act_dim"], log_std_min: float, log_std_max: float
    ) -> Float[Array, ""]:
        """`log pi(a | s)` of the Gaussian."""
        log_std = jnp.clip(self.log_std, log_std_min, log_std_max)
        z = (action - self.mean(obs)) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi))


class State(eqx.Module):
    """Everything IQL trains, with its config."""

    policy: GaussianPolicy
    policy_opt_state: PyTree
    critic: IQLCritic
    step: Int[Array, ""]
    config: Config = eqx.field(static=True)


def _actor_optimizer(config: Config) -> optax.GradientTransformation:
    return make_optimizer(config.lr, decay_steps=config.actor_decay_steps)


def init(config: Config, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> State:
    """Fresh networks and optimiser states.

    Args:
        config: the settings.
        obs_dim: observation size.
        act_dim: action size.
        key: randomness of the initial parameters.
    """
    if not isinstance(config, Config):
        raise TypeError(f"expected an rl.agents.iql.Config, got {type(config).__name__}")
    if obs_dim < 1 or act_dim < 1:
        raise ValueError(f"obs_dim and act_dim must be >= 1, got obs_dim={obs_dim}, act_dim={act_dim}")
    kp, kc = jax.random.split(key)
    policy = GaussianPolicy(
        obs_dim, act_dim, width=config.width, depth=config.depth, deterministic=config.policy == "deterministic", key=kp
    )
    critic = init_iql_critic(
        obs_dim, act_dim, width=config.width, depth=config.depth, num_q=config.num_q, lr=config.lr, key=kc
    )
    return State(
        policy=policy,
        policy_opt_state=init_opt_state(_actor_optimizer(config), policy),
        critic=critic,
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def awr_weights(
    q: Float[Array, " n"], v: Float[Array, " n"], *, temperature: float, max_weight: float
) -> Float[Array, " n"]:
    """`min(exp(temperature (Q - V)), max_weight)`: the advantage weights of AWR (no gradient)."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * (q - v)), max_weight))


def actor_loss(
    policy: GaussianPolicy,
    critic: IQLCritic,
    obs: Float[Array, "n obs_dim"],
    action: Float[Array, "n act_dim"],
    config: Config,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Advantage-weighted regression on dataset actions; the critic enters only through stop-gradient weights."""
    q = min_q(stop_gradient(critic.q_target), obs, action)
    v = state_values(stop_gradient(critic.value), obs)
    weights = awr_weights(q, v, temperature=config.temperature, max_weight=config.max_weight)
    if policy.deterministic:
        fit = -jnp.sum((jax.vmap(policy.mean)(obs) - action) ** 2, axis=-1)
    else:
        fit = jax.vmap(lambda s, a: policy.log_prob(s, a, config.log_std_min, config.log_std_max))(obs, action)
    loss = -jnp.mean(weights * fit)
    return loss, {"actor_loss": loss, "adv_mean": jnp.mean(q - v), "weight_mean": jnp.mean(weights)}


def update(state: State, batch: Any, *, key: PRNGKeyArray) -> tuple[State, dict[str, Array]]:
    """One IQL update: value, actor (with the new value), Q, target network.

    Args:
        state: the current state.
        batch: `rl.data.Transitions` with normalised observations.
        key: unused (IQL's update is deterministic); kept for the common contract.

    Returns:
        The new state and scalar diagnostics.
    """
    del key
    config = state.config
    critic, critic_info = update_iql_critic(
        state.critic,
        batch,
        discount=config.discount,
        expectile=config.expectile,
        polyak=config.polyak,
        lr=config.lr,
        reward_scale=config.reward_scale,
        reward_bias=config.reward_bias,
    )
    # The actor uses the freshly updated V and the target Q, as in IQL's reference implementation.
    (_, actor_info), grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.policy, critic, batch.obs, batch.action, config
    )
    policy, policy_opt_state = apply_gradients(state.policy, state.policy_opt_state, grads, _actor_optimizer(config))
    new = State(
        policy=policy, policy_opt_state=policy_opt_state, critic=critic, step=state.step + 1, config=config
    )
    return new, {**critic_info, **actor_info}


def act(state: State, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray) -> Float[Array, "n act_dim"]:
    """The mean action `tanh(MLP(s))` for each state (deterministic; `key` is unused)."""
    del key
    return jnp.clip(jax.vmap(state.policy.mean)(obs), -1.0, 1.0)

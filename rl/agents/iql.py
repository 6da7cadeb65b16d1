"""IQL, the baseline: Implicit Q-Learning (Kostrikov, Nair, Levine 2021, arXiv 2110.06169).

- Critic (`rl.agents.critics`): it never queries actions outside the dataset. `V(s)` is the expectile of
  `Q(s, a_data)`, and `Q(s, a) -> r + gamma (1 - terminal) V(s')`, with a Polyak-averaged target ensemble.
- Policy extraction by advantage-weighted regression (AWR): maximise
  `mean(min(exp(temperature (Q_target(s, a) - V(s))), max_weight) log pi(a | s))` over dataset actions; the critic
  enters only through these weights (no gradient).
- Policies, as in the paper's MuJoCo setup: a Gaussian whose mean is `tanh` of an MLP and whose log-std is one
  state-independent vector (not a squashed distribution; actions are the mean at evaluation), or a deterministic
  `tanh` MLP trained by weighted regression `exp(...) |mu(s) - a|^2`.

One `update` is: the critic's value step, its Q step and its target step, then the actor step against the new `V`
and the target `Q` as it was before the target step, as in IQL's reference implementation: the actor's
`min_i Q_target,i(s, a)` is the very array the value step regressed on (`critics.data_q_target`, computed once).
The maths is on the documentation's maths page (`docs/maths.md`).

Two settings of other implementations are options: layer normalisation in the Q and value networks
(`critic.layer_norm`, as FQL's critics) and the cosine decay of the actor's learning rate (`policy.decay_steps`, as
the paper's code, CORL and JAX-CORL); both are off by default. `docs/baselines.md` compares them side by side.
"""

import dataclasses
import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from energyflow import tempered_beta
from rl.data import Transitions

from .base import Scalar, above, at_least, between, check_init, network_rules, optional, validate
from .critics import IQLCritic, IQLCriticConfig, data_q_target, init_iql_critic, update_iql_critic
from .nets import Selection, batch_apply, min_q, pick, q_values, state_values
from .optim import apply_gradients, init_opt_state, make_optimizer, stop_gradient

__all__ = [
    "ADDED",
    "RENAMED",
    "Config",
    "GaussianPolicy",
    "GaussianPolicyConfig",
    "State",
    "act",
    "actor_loss",
    "awr_weights",
    "init",
    "update",
]


@dataclasses.dataclass(frozen=True)
class GaussianPolicyConfig:
    """IQL's actor (nested as `policy` in IQL's `Config`)."""

    # "gaussian": N(tanh(MLP(s)), diag(exp(log_std))^2) with one state-independent log-std vector, fitted by weighted
    # log-likelihood; "deterministic": tanh(MLP(s)) fitted by weighted squared error
    kind: Literal["gaussian", "deterministic"] = "gaussian"
    # hidden width of the actor MLP
    width: int = 256
    # number of hidden layers of the actor MLP
    depth: int = 2
    # learning rate of the actor (Adam)
    lr: float = 3e-4
    # cosine decay of the actor's learning rate over this many updates (the paper decays over its 1M updates;
    # 0 = constant, since our budgets vary: set it to the run length to follow the paper)
    decay_steps: int = 0
    # lower bound of the Gaussian's log-std
    log_std_min: float = -5.0
    # upper bound of the Gaussian's log-std
    log_std_max: float = 2.0
    # actions at evaluation: 1 = the mean (the IQL paper's practice); N > 1 = the best by min Q of the mean and N - 1
    # draws of the Gaussian. 8, as the flow agents' policy.best_of_n, for a comparison on equal terms: on the medium
    # grid's runs it lifted IQL 58.9 -> 63.1 on average (docs/study.md, iql-act); kind="deterministic" needs 1
    best_of_n: int = 8
    # scale of the draws' standard deviation in best-of-N (N(mean, (noise * std)^2)): 1 draws from the fitted
    # Gaussian; below 1 the candidates stay closer to the mean, where the critic has seen data. Training never scales
    noise: float = 1.0
    # how best-of-N chooses: "max" keeps the candidate of highest min Q; "agreed" keeps it only where every critic
    # rates it above the mean action's highest estimate (the twin critics agree the gain is real), else the mean
    # ("agreed_mean" is the same rule: IQL's first candidate is its mean already);
    # "first_above_v" the mean if its min Q reaches V(s), else the first draw that does, else the best; "mean" the
    # mean itself (the flows' "mean" averages their draws)
    selection: Selection = "max"

    def __post_init__(self):
        validate(
            self,
            {
                **network_rules(),
                "decay_steps": at_least(0),
                "log_std_max": (lambda v: v > self.log_std_min, "> log_std_min"),
                "best_of_n": at_least(1),
                "noise": at_least(0.0),
            },
        )
        if self.best_of_n > 1 and self.noise == 0:
            raise ValueError(f"best_of_n={self.best_of_n} needs noise > 0: with noise=0 every draw is the mean")
        if self.kind == "deterministic" and self.best_of_n > 1:
            raise ValueError(f"best_of_n={self.best_of_n} needs kind='gaussian': a deterministic actor has one action "
                             "(set policy.best_of_n=1 with kind='deterministic')")


@dataclasses.dataclass(frozen=True)
class Config:
    """IQL's settings; the defaults are the paper's MuJoCo locomotion ones (and the ones results are reported with),
    except for two the study gave the baseline as it gave them to the flows (`docs/study.md`): acting by best-of-8 by
    Q (`policy.best_of_n`) where the paper takes the mean action, and FlowQ's floor on the weights' effective sample
    size (`min_ess=0.5`) where the paper weights at its temperature whatever the batch keeps."""

    # inverse temperature of the advantage weights exp(temperature * (Q - V)) (the paper's beta)
    temperature: float = 3.0
    # AWR weights are clipped at this value (the paper's 100)
    max_weight: float = 100.0
    # a floor on the capped weights' effective sample size, as a fraction of the batch (FlowQ's `min_ess`, the same
    # tuning for the baseline): a batch whose weights at `temperature` would leave fewer effective examples is
    # weighted at the lower temperature that leaves exactly this many (`energyflow.tempered_beta`). Half the batch by
    # evidence, as FlowQ's: at the results grid's budget it lifted IQL on six of the nine datasets (walker2d-medium
    # 87.8 to 97.8, halfcheetah-medium-expert 8.2 to 35.3) and cost at most 0.6 on the other three, 47.5 to 54.0 on
    # average (docs/study.md, iql-temperature-me and iql-floor-other). None: off, the paper's weights
    min_ess: float | None = 0.5
    # the critic: twin Q with a target ensemble, V by expectile regression
    critic: IQLCriticConfig = dataclasses.field(default_factory=IQLCriticConfig)
    # the actor
    policy: GaussianPolicyConfig = dataclasses.field(default_factory=GaussianPolicyConfig)

    def __post_init__(self):
        validate(self, {
            "temperature": at_least(0.0),
            "max_weight": above(0.0),
            "min_ess": optional(between(0.0, 1.0, open_lo=True)),
        })

    @classmethod
    def tiny(cls) -> "Config":
        """The demo's and the tests' sizes: every MLP 64 wide with 2 hidden layers, everything else default."""
        return cls(critic=IQLCriticConfig(width=64, depth=2), policy=GaussianPolicyConfig(width=64, depth=2))


RENAMED: dict[str, str] = {
    "discount": "critic.discount",
    "expectile": "critic.expectile",
    # `lr`, `width` and `depth` used to set the critic and the actor alike; the actor's are `policy.lr`, ...
    "lr": "critic.lr",
    "polyak": "critic.tau",
    "width": "critic.width",
    "depth": "critic.depth",
    "num_q": "critic.num_q",
    "policy": "policy.kind",
    "actor_decay_steps": "policy.decay_steps",
    "log_std_min": "policy.log_std_min",
    "log_std_max": "policy.log_std_max",
    "reward_scale": "data.reward_scale",
    "reward_bias": "data.reward_bias",
}
"""Old flat `Config` field -> its new dotted path (`data.` paths moved to `rl.data.DataConfig`)."""
ADDED: dict[str, object] = {"policy.best_of_n": 1, "policy.noise": 1.0, "min_ess": None, "policy.selection": "max"}
"""Fields added since 0.1 -> the value that reproduces the runs made before them (`rl.agents.base`)."""


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
        self, obs: Float[Array, " obs_dim"], action: Float[Array, " act_dim"], log_std_min: Scalar, log_std_max: Scalar
    ) -> Float[Array, ""]:
        """`log pi(a | s)` of the Gaussian."""
        log_std = jnp.clip(self.log_std, log_std_min, log_std_max)
        z = (action - self.mean(obs)) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi))

    def means(self, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
        """`mean` for a batch of states, the network run on the whole batch (`rl.agents.nets.batch_apply`).

        The same numbers as `jax.vmap(self.mean)`; under the trainer's `vmap` over members the per-example form
        costs about a quarter more on a CPU (`benchmarks/updates.py --sections 6`).
        """
        return jnp.tanh(batch_apply(self.net, obs))

    def log_probs(
        self,
        obs: Float[Array, "n obs_dim"],
        action: Float[Array, "n act_dim"],
        log_std_min: Scalar,
        log_std_max: Scalar,
    ) -> Float[Array, " n"]:
        """`log_prob` for a batch of `(s, a)` pairs (with `means`)."""
        log_std = jnp.clip(self.log_std, log_std_min, log_std_max)[None, :]
        z = (action - self.means(obs)) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi), axis=-1)


class State(eqx.Module):
    """Everything IQL trains, with its config."""

    policy: GaussianPolicy
    policy_opt_state: PyTree
    critic: IQLCritic
    step: Int[Array, ""]
    config: Config = eqx.field(static=True)


def _actor_optimizer(config: GaussianPolicyConfig) -> optax.GradientTransformation:
    return make_optimizer(config.lr, decay_steps=config.decay_steps)


def init(config: Config, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> State:
    """Fresh networks and optimiser states.

    Args:
        config: the settings.
        obs_dim: observation size.
        act_dim: action size.
        key: randomness of the initial parameters.
    """
    check_init(config, Config, obs_dim=obs_dim, act_dim=act_dim)
    kp, kc = jax.random.split(key)
    p = config.policy
    policy = GaussianPolicy(
        obs_dim, act_dim, width=p.width, depth=p.depth, deterministic=p.kind == "deterministic", key=kp
    )
    return State(
        policy=policy,
        policy_opt_state=init_opt_state(_actor_optimizer(p), policy),
        critic=init_iql_critic(config.critic, obs_dim=obs_dim, act_dim=act_dim, key=kc),
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def awr_weights(
    q: Float[Array, " n"], v: Float[Array, " n"], *, temperature: Scalar, max_weight: Scalar
) -> Float[Array, " n"]:
    """`min(exp(temperature (Q - V)), max_weight)`: the advantage weights of AWR (no gradient)."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(temperature * (q - v)), max_weight))


def actor_loss(
    policy: GaussianPolicy,
    critic: IQLCritic,
    obs: Float[Array, "n obs_dim"],
    action: Float[Array, "n act_dim"],
    config: Config,
    *,
    q_data: Float[Array, " n"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Advantage-weighted regression on dataset actions; the critic enters only through stop-gradient weights.

    The weights are `exp(temperature (Q - V(s)))` with `V` the critic's value network and `Q = q_data`, the
    `min_i Q_target,i(s, a)` the value step used (`update` passes it), or `critic.q_target`'s when not given. With
    `config.min_ess` the temperature is lowered where the batch's capped weights would keep fewer effective examples.
    """
    q = min_q(stop_gradient(critic.q_target), obs, action) if q_data is None else jax.lax.stop_gradient(q_data)
    v = state_values(stop_gradient(critic.value), obs)
    temperature = config.temperature
    if config.min_ess is not None:
        # the weights' shape is softmax(min(temperature A, log max_weight)): tempered_beta's with energies -A
        temperature = tempered_beta(v - q, temperature, config.min_ess, max_log_weight=math.log(config.max_weight))
    weights = awr_weights(q, v, temperature=temperature, max_weight=config.max_weight)
    if policy.deterministic:
        fit = -jnp.sum((policy.means(obs) - action) ** 2, axis=-1)
    else:
        fit = policy.log_probs(obs, action, config.policy.log_std_min, config.policy.log_std_max)
    loss = -jnp.mean(weights * fit)
    info = {"actor_loss": loss, "adv_mean": jnp.mean(q - v), "weight_mean": jnp.mean(weights)}
    return loss, info | ({"temperature": temperature} if config.min_ess is not None else {})


def update(state: State, batch: Transitions, *, key: PRNGKeyArray) -> tuple[State, dict[str, Array]]:
    """One IQL update: value, Q and target network, then the actor (with the new `V`, the target `Q` of before).

    Args:
        state: the current state.
        batch: `rl.data.Transitions` with normalised observations and transformed rewards.
        key: unused (IQL's update is deterministic); kept for the common contract.

    Returns:
        The new state and scalar diagnostics.
    """
    del key
    config = state.config
    # min Q_target(s, a) on the batch, before the target step: the value step regresses on it and the actor's
    # weights read it (the freshly updated V, the target Q of before the Polyak step: IQL's reference order)
    q_data = data_q_target(state.critic.q_target, batch)
    critic, critic_info = update_iql_critic(state.critic, batch, config.critic, q_data=q_data)
    (_, actor_info), grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.policy, critic, batch.obs, batch.action, config, q_data=q_data
    )
    policy, policy_opt_state = apply_gradients(
        state.policy, state.policy_opt_state, grads, _actor_optimizer(config.policy)
    )
    new = State(policy=policy, policy_opt_state=policy_opt_state, critic=critic, step=state.step + 1, config=config)
    return new, {**critic_info, **actor_info}


def act(state: State, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray) -> Float[Array, "n act_dim"]:
    """The mean action `tanh(MLP(s))` for each state (deterministic; `key` is unused), or with
    `policy.best_of_n = N > 1` the one of highest `min_i Q_i(s, a)` (online critic) among the mean and `N - 1` draws
    of the Gaussian (its standard deviation scaled by `policy.noise`), each clipped to `[-1, 1]`; with
    `policy.selection = "agreed"` (or `"agreed_mean"`, the same rule here), a draw replaces the mean only where every
    critic rates it above the mean; with
    `"first_above_v"`, the mean is kept where its `min_i Q_i` reaches `V(s)`, else the first draw that does; with
    `"mean"`, the mean itself (the average of the Gaussian's draws, without their noise)."""
    config = state.config.policy
    means = jnp.clip(state.policy.means(obs), -1.0, 1.0)
    if config.best_of_n == 1 or config.selection == "mean":
        return means
    n, dim = means.shape
    std = config.noise * jnp.exp(jnp.clip(state.policy.log_std, config.log_std_min, config.log_std_max))
    draws = means[:, None, :] + std[None, None, :] * jax.random.normal(key, (n, config.best_of_n - 1, dim))
    candidates = jnp.concatenate([means[:, None, :], jnp.clip(draws, -1.0, 1.0)], axis=1)
    flat = candidates.reshape(n * config.best_of_n, dim)
    values = q_values(state.critic.q, jnp.repeat(obs, config.best_of_n, axis=0), flat)
    value = state_values(state.critic.value, obs) if config.selection == "first_above_v" else None
    return pick(candidates, values.reshape(n, config.best_of_n, -1), config.selection, state_value=value)

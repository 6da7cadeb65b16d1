"""FlowQ: an energy-guided flow policy (Alles, Chen, van der Smagt, Cseke 2025, arXiv 2505.14139).

- Critic: IQL's (`rl.agents.critics`), trained on dataset actions only, never on policy samples.
- Policy: a conditional flow `v(a_t, t, s)` (`rl.agents.policies`) regressed on the energy-guided path of dataset
  actions, `E(a; s) = -(min_i Q_target,i(s, a) - V(s)) / scale` with the new `V` and the target `Q` of before the
  critic's target step (as IQL's actor), without gradient into the critic. The path bends each conditional path
  `noise -> a_data` along `-grad_a E` with strength `lambda_t` (`lambda_1 = beta`). By default the examples carry IQL's
  weights `softmax(temperature A)` over the batch, tempered where they would keep less than half of it (`min_ess`;
  `energyflow.energy_weighted_loss`), so that the flow learns `pi_beta(a | s) exp(temperature A)` at the temperature
  the floor leaves; with `weight_unit="energy"` (0.1's) `energyflow.energy_guided_loss` weights by the path's own
  tilt and the flow learns `pi_beta(a | s) exp(-beta E(a; s))`.
- Acting: the `energyflow` ODE sampler from noise (10 Heun steps by default), clipped to `[-1, 1]`, the best of 8
  draws by `Q` (`rl.agents.policies.act`).

The policy update evaluates one energy gradient per example (plus a Hessian-vector product with
`gradient="mean"`) and never runs the sampler, so its cost does not depend on `policy.sample_steps`. With
`gradient="data"` (the default) the guided path reads `E` and `grad_a E` only at the dataset actions, which is where
the value step reads `Q_target` too: one batched forward and backward pass of the target ensemble
(`q_and_action_gradient`) serves the value step, the energy's unit and the policy loss (see `policy_loss`).

Choices where the paper leaves room (derivations on the documentation's maths page, `docs/maths.md`):

- The energy subtracts `V(s)`. For one state this adds a constant, which changes neither the guided path nor its
  gradient; it only matters for the optional weights `softmax(log Z_t)` over a batch of *different* states, where it
  turns `exp(beta Q)` (which favours states with a high value) into `exp(beta (Q - V))`, an advantage weight.
- The energy is divided by a running mean of the action-gradient norm `|grad_a Q(s, a_data)|` over batches
  (`normalize_energy`), so that `beta` means the same thing whatever the reward scale. The guided mean moves by
  `lambda_t sigma_t^2 grad E`, at most about `0.15 beta` action units for a typical gradient with the linear schedule
  (`max_t t (1 - t)^2 = 4/27`). Normalising by the typical advantage `|Q - V|` instead fails on narrow datasets:
  on a halfcheetah dataset of a deterministic policy the advantages of data actions are ~0.02 while the gradient is
  ~0.5, so the guided targets land ~10 action units away, outside `[-1, 1]`, and the policy is worse than random.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from energyflow import CondOTScheduler, GuidedGaussianPath, MLPVelocity, energy_guided_loss, energy_weighted_loss
from rl.data import Transitions

from .base import Scalar, above, at_least, between, check_init, optional, validate
from .critics import IQLCritic, IQLCriticConfig, init_iql_critic, log_partition_loss, update_iql_critic
from .nets import QEnsemble, ValueNetwork, batch_apply, min_q, state_values
from .optim import apply_gradients, init_opt_state, make_optimizer, stop_gradient
from .policies import FLOW_AGENT_RENAMED, FlowPolicyConfig, act, init_flow_policy

__all__ = ["ADDED", "RENAMED", "Config", "State", "act", "action_gradient_norm", "guidance_path", "init", "policy_loss",
           "q_and_action_gradient", "update"]


@dataclasses.dataclass(frozen=True)
class Config:
    """FlowQ's settings; the defaults are the ones results are reported with."""

    # guidance strength lambda_1 = beta of the guided path (on the normalised energy, see normalize_energy). With
    # weight_unit="q" it only bends the paths between noise and data; the screens (docs/study.md, 30k updates) found
    # beta = 1 as good as no bending and better than 3, and beta = 10 (energy unit) lost hopper-medium (5 vs 45)
    beta: float = 1.0
    # lambda_t schedule of the guided path: "linear" (lambda_t = beta t), "constant", or "power" (lambda_t = beta t^p,
    # p = lambda_power: the same endpoint, less bending of the paths at intermediate times)
    lambda_schedule: Literal["linear", "constant", "power"] = "linear"
    # the exponent p of the "power" schedule
    lambda_power: float = 4.0
    # where the energy gradient is taken: "data" (at the dataset action; one gradient per example) or "mean"
    # (at the conditional mean alpha_t a_data, adds a Hessian-vector product per example)
    gradient: Literal["data", "mean"] = "data"
    # weight examples by softmax(log Z_t) over the batch. This is what moves mass between modes: without it each
    # conditional path still ends at its own data action, the tilt acts only at intermediate times (and through
    # sigma_min), and on the bandit beta = 3 leaves 14% on the best mode (behaviour cloning: 13%; weighted: 100%)
    weighted: bool = True
    # where those weights are taken: "endpoint" (softmax(-beta E(a_data)) / at t = 1: constant in time, so the weighted
    # mixture of guided conditionals ends exactly at pi_beta exp(beta Q / scale)) or "t" (softmax(log Z_t) at each
    # example's time, which under-tilts; see docs/efm-vs-guided.md)
    weight_at: Literal["endpoint", "t"] = "endpoint"
    # the unit of the endpoint weights: "q": softmax(temperature A), IQL's unit, and beta then only bends the paths
    # between noise and data (with sigma_min = 0 the flow still ends at pi_beta exp(temperature A) where min_ess does
    # not bind, `energyflow.energy_weighted_loss`); "energy": softmax(-beta E) = softmax(beta A / scale), the guided
    # path's own tilt, so beta sets both. The energy unit was the default of 0.1: on the medium datasets its weights
    # came out flat (0.7-0.9 per unit of Q at beta = 3, effective sample size 0.55-0.85 of the batch against IQL's
    # 0.05-0.27), and walker2d-medium went 22 -> 76 at 30k updates with the q unit (docs/study.md, flowq-weights)
    weight_unit: Literal["energy", "q"] = "q"
    # inverse temperature of the endpoint weights per unit of the (reward-scaled) Q, with weight_unit="q" (IQL's 3;
    # 10 lost hopper and halfcheetah in the screens, 1 and 5 were no better)
    temperature: float = 3.0
    # what the q unit's endpoint weights subtract from Q: "value", IQL's expectile V(s), so that the weights
    # softmax(temperature (Q - V)) also trade states off against each other; or "log_partition", the log-partition
    # L(s) = log E_data[exp(temperature Q(s, a)) | s] / temperature of the dataset's actions at s, fitted by Gumbel
    # regression (the value loss of Garg et al. 2023, XQL; `rl.agents.critics.log_partition_loss`), so that
    # exp(temperature (Q - L)) averages to one at every state and the weights tilt only within states, at any
    # temperature. The target per state, pi_beta exp(temperature Q), is the same; what changes is how the batch's
    # weight is spread over its states (docs/study.md: the within-state tilt alone costs an effective sample size of
    # about exp(-(temperature sigma |grad_a Q|)^2) with behaviour noise sigma, one action per state). "value" by
    # evidence: the Gumbel-fitted L is the noisier baseline (flowq-partition: walker2d 32.2 against 76.3 at 30k)
    weight_baseline: Literal["value", "log_partition"] = "value"
    # cap on the endpoint weights with weight_unit="q": min(exp(temperature A), max_weight) before normalising over
    # the batch, as IQL caps its AWR weights at its max_weight (100). None: no cap, a few large advantages can then
    # take most of the batch (temperature 10 lost hopper-medium in the screens: 10 vs 43)
    max_weight: float | None = None
    # draw the policy's regression examples instead of weighting them (weight_unit="q"): this many draws, with
    # replacement, from the training batch in proportion to the endpoint weights, each regressed with equal weight
    # and its own (t, a_0) (`energyflow.energy_weighted_loss`'s `resample`: the same objective in expectation). Sharp
    # weights then spread the regression over many draws of the few examples that carry them, instead of one noisy
    # draw each, and a training batch larger than `resample` (`train.batch_size`) gives the draws more examples to
    # choose from at the cost of critic passes only. None: weight the batch
    resample: int | None = None
    # a floor on the endpoint weights' effective sample size (weight_unit="q"), as a fraction of the batch: a batch
    # whose weights softmax(temperature A) would leave fewer effective examples is weighted at the lower temperature
    # that leaves exactly this many (`energyflow.tempered_beta`). temperature is then the sharpest tilt, taken where
    # the advantages spread little (hopper-medium), and the floor keeps enough of the batch in the regression where
    # they spread a lot (walker2d-medium-expert at temperature 3: 0.05-0.17 of the batch). Half the batch by evidence:
    # at the grid's budget it lifted walker2d-medium-expert from 22.8 to 84.8 and halfcheetah-medium-expert from 7.3
    # to 26.6, and where it seldom binds the seeds decide (docs/study.md, flowq-temperature and
    # flowq-temperature-other). None: off, the weights at temperature whatever they keep
    min_ess: float | None = 0.5
    # width of the conditional paths at t = 1 (CondOTScheduler's sigma_min). With sigma_min > 0 each guided conditional
    # ends at N(a + beta sigma_min^2 grad_a Q / scale, sigma_min^2): a step uphill on Q, but the flow learns the
    # widening too. At 30k updates the widening (0.2) cost more than the step gave (docs/study.md, flowq-tilt)
    sigma_min: float = 0.0
    # a step uphill on Q without the widening: the policy regresses on a + uphill_step grad_a Q(s, a) / scale (clipped
    # to [-1, 1]) instead of the data action a, the step the guided conditional's endpoint takes when sigma_min^2 beta
    # = uphill_step, with the width kept at sigma_min. In action units: |grad_a Q| / scale is 1 on average over the
    # data. The energy's expansion (the bend and the weights) moves with the target, so the weights stay those of
    # the data action. Needs gradient="data" (the gradient is the one read at the data action); 0: off. At 30k
    # updates 0.03 was within noise and 0.1, 0.3 lost (hopper 36.9, 32.2 against 37.2; docs/study.md, flowq-uphill):
    # the IQL critic, trained on dataset actions only, is no guide a step away from them
    uphill_step: float = 0.0
    # divide the energy by a running mean of |grad_a Q(s, a_data)| (beta then does not depend on the reward scale,
    # and the guidance shift stays within about 0.15 beta action units)
    normalize_energy: bool = True
    # rate of that running mean (exponential moving average; the first batch sets it)
    scale_rate: float = 0.005
    # the critic: IQL's twin Q with a target ensemble and V by expectile regression
    critic: IQLCriticConfig = dataclasses.field(default_factory=IQLCriticConfig)
    # the flow policy: network, learning rate, sampling at evaluation. FlowQ acts with Heun's method (10 steps, 20
    # evaluations): on the medium grid's runs (best-of-8) it lifted hopper 37.5 -> 53.4, where Euler with 20 steps
    # gave 42.9, at a cost on walker2d (95.9 -> 91.3; docs/study.md, flowq-act-q). Training never samples, so this
    # changes acting only
    policy: FlowPolicyConfig = dataclasses.field(default_factory=lambda: FlowPolicyConfig(solver="heun"))

    def __post_init__(self):
        validate(
            self,
            {
                "beta": at_least(0.0),
                "lambda_power": above(0.0),
                "sigma_min": between(0.0, 1.0, open_hi=True),
                "uphill_step": at_least(0.0),
                "scale_rate": between(0.0, 1.0, open_lo=True),
                "temperature": at_least(0.0),
                "max_weight": optional(above(0.0)),
                "resample": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                             "None or an integer >= 1"),
                "min_ess": optional(between(0.0, 1.0, open_lo=True)),
            },
        )
        if self.uphill_step > 0 and self.gradient != "data":
            raise ValueError(f"uphill_step={self.uphill_step} steps along the gradient read at the data action; it "
                             f"needs gradient='data' (got {self.gradient!r}; or set uphill_step=0)")
        if self.weight_baseline != "value" and self.weight_unit != "q":
            raise ValueError(f"weight_baseline={self.weight_baseline!r} sets the q unit's weights; it needs "
                             f"weight_unit='q' (got {self.weight_unit!r}; or set weight_baseline='value')")
        if self.max_weight is not None and self.weight_unit != "q":
            raise ValueError(f"max_weight={self.max_weight} caps the q unit's weights; it needs weight_unit='q' "
                             f"(got {self.weight_unit!r}; set max_weight=None)")
        if self.min_ess is not None and self.weight_unit != "q":
            raise ValueError(f"min_ess={self.min_ess} tempers the q unit's weights; it needs weight_unit='q' "
                             f"(got {self.weight_unit!r}; set min_ess=None)")
        if self.resample is not None and self.weight_unit != "q":
            raise ValueError(f"resample={self.resample} draws by the q unit's weights; it needs weight_unit='q' "
                             f"(got {self.weight_unit!r}; set resample=None)")
        if self.weight_unit == "q" and not (self.weighted and self.weight_at == "endpoint"):
            raise ValueError(
                "weight_unit='q' sets the endpoint weights, so it needs weighted=True and weight_at='endpoint'; got "
                f"weighted={self.weighted}, weight_at={self.weight_at!r}"
            )

    @classmethod
    def tiny(cls) -> "Config":
        """The demo's and the tests' sizes: every MLP 64 wide with 2 hidden layers, everything else default."""
        return cls(critic=IQLCriticConfig(width=64, depth=2),
                   policy=dataclasses.replace(cls().policy, width=64, depth=2))


RENAMED: dict[str, str] = {
    **FLOW_AGENT_RENAMED,
    "schedule": "lambda_schedule",
    "schedule_power": "lambda_power",
}
"""Old flat `Config` field -> its new dotted path (`data.` paths moved to `rl.data.DataConfig`)."""
ADDED: dict[str, object] = {"policy.noise": 1.0, "weight_unit": "energy", "temperature": 3.0, "max_weight": None,
                            "uphill_step": 0.0, "weight_baseline": "value", "resample": None, "min_ess": None,
                            "policy.selection": "max"}
"""Fields added since 0.1 -> the value that reproduces the runs made before them (`rl.agents.base`)."""


class State(eqx.Module):
    """Everything FlowQ trains, with its config."""

    policy: MLPVelocity
    policy_opt_state: PyTree
    critic: IQLCritic
    # running mean of |grad_a Q(s, a_data)|, the energy's unit
    energy_scale: Float[Array, ""]
    # L(s) of weight_baseline="log_partition" and its optimiser state (None otherwise)
    log_partition: ValueNetwork | None
    log_partition_opt_state: PyTree
    step: Int[Array, ""]
    config: Config = eqx.field(static=True)


def _power_schedule(t: Float[Array, ""], beta: Scalar, power: Scalar) -> Float[Array, ""]:
    return beta * t**power


def guidance_path(config: Config) -> GuidedGaussianPath:
    """The guided Gaussian path the policy regresses on."""
    schedule = config.lambda_schedule
    if schedule == "power":
        schedule = functools.partial(_power_schedule, power=config.lambda_power)
    return GuidedGaussianPath(
        CondOTScheduler(config.sigma_min), beta=config.beta, lambda_schedule=schedule, gradient=config.gradient
    )


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
    policy = init_flow_policy(config.policy, obs_dim=obs_dim, act_dim=act_dim, key=kp)
    log_partition = log_partition_opt_state = None
    if config.weight_baseline == "log_partition":  # the critic's own key stays as it was: its networks do not change
        c = config.critic
        log_partition = ValueNetwork(obs_dim, width=c.width, depth=c.depth, layer_norm=c.layer_norm,
                                     key=jax.random.fold_in(key, 1))
        log_partition_opt_state = init_opt_state(make_optimizer(c.lr), log_partition)
    return State(
        policy=policy,
        policy_opt_state=init_opt_state(make_optimizer(config.policy.lr), policy),
        critic=init_iql_critic(config.critic, obs_dim=obs_dim, act_dim=act_dim, key=kc),
        energy_scale=jnp.ones(()),
        log_partition=log_partition,
        log_partition_opt_state=log_partition_opt_state,
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def _on_state(policy: MLPVelocity, obs_dim: int) -> Callable[..., Float[Array, " dim"]]:
    """The velocity `policy(x, t, context[:obs_dim])` of one example, for a context that starts with the state.

    `energy_guided_loss` `vmap`s it over the batch; that `vmap` runs the MLP on the whole batch as matrix products
    (`rl.agents.nets.batch_apply`, the same numbers), which unlike the per-example form keeps its speed under the
    trainer's own `vmap` over members (`benchmarks/updates.py --sections 6`).
    """
    arrays, static = eqx.partition(policy, eqx.is_array)

    def one(arrays, x, t, context):
        return eqx.combine(arrays, static)(x, t, context[:obs_dim])

    @custom_vmap
    def velocity(arrays, x, t, context):
        return one(arrays, x, t, context)

    @velocity.def_vmap
    def _(axis_size, in_batched, arrays, x, t, context):
        arrays_batched, *rest = in_batched
        if any(jax.tree.leaves(arrays_batched)) or not all(rest):  # not a batch of examples: plain vmap
            axes = jax.tree.map(lambda b: 0 if b else None, tuple(in_batched))
            return jax.vmap(one, in_axes=axes)(arrays, x, t, context), True
        net = eqx.combine(arrays, static)
        inputs = jnp.concatenate([x, jax.vmap(net.embed)(t), context[:, :obs_dim]], axis=1)
        return batch_apply(net.mlp, inputs), True

    return functools.partial(velocity, arrays)


def policy_loss(
    policy: MLPVelocity,
    q: QEnsemble,
    value: ValueNetwork,
    obs: Float[Array, "n obs_dim"],
    action: Float[Array, "n act_dim"],
    energy_scale: Float[Array, ""],
    config: Config,
    *,
    key: PRNGKeyArray,
    at_data: tuple[Float[Array, " n"], Float[Array, "n act_dim"]] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """The energy-guided flow-matching loss of the policy on dataset actions, `E(a; s) = -(Q(s, a) - V(s)) / scale`
    with `Q = min_i q_i`.

    The critic is frozen here: it enters through `jax.lax.stop_gradient`, so the gradient of this loss with respect
    to `q` and `value` is exactly zero.

    With `gradient="mean"` the guided path evaluates `E` away from the data (at `alpha_t a_data`, with a
    Hessian-vector product), so it gets `E` as a function that calls `q` on one example. With `gradient="data"` it
    reads only `E(a_data; s)` and `grad_a E(a_data; s)`: those come from batched passes, `(Q, grad_a Q)` at the data
    actions from `at_data` (`q_and_action_gradient(q, obs, action)`, which `update` has already computed for the
    value step and the energy's unit) or computed here, and `V(s)` on the batch. They reach `energy_guided_loss` as
    the energy's exact first-order expansion at the data action, `E(a_data) + grad_a E . (a - a_data)`, whose
    per-example coefficients ride in the loss's context beside the state (the policy sees the state only): the same
    loss, up to float rounding, without evaluating the twin Q once per example and per use.
    """
    scale = jax.lax.stop_gradient(energy_scale)
    path = guidance_path(config)
    if config.gradient == "mean":
        q = stop_gradient(q)
        value = stop_gradient(value)

        def energy(a: Float[Array, " act_dim"], s: Float[Array, " obs_dim"]) -> Float[Array, ""]:
            return -(jnp.min(q(s, a)) - value(s)) / scale

        loss = _guided_loss(policy, path, action, energy, obs, scale, config, key=key)
        return loss, {"policy_loss": loss}

    q_data, dq_data = q_and_action_gradient(q, obs, action) if at_data is None else at_data
    e = -(q_data - state_values(stop_gradient(value), obs)) / scale
    g = -dq_data / scale
    obs_dim, act_dim = obs.shape[1], action.shape[1]
    if config.uphill_step > 0:  # the target moves uphill, and the energy's expansion point with it
        action = jax.lax.stop_gradient(jnp.clip(action - config.uphill_step * g, -1.0, 1.0))
    # per example: [state | E(a_data) | grad_a E(a_data) | a_data] (a_data: the regression target)
    context = jnp.concatenate([obs, jax.lax.stop_gradient(jnp.concatenate([e[:, None], g, action], axis=1))], axis=1)

    def linear_energy(a: Float[Array, " act_dim"], c: Float[Array, " ctx"]) -> Float[Array, ""]:
        e0, g0, a0 = c[obs_dim], c[obs_dim + 1 : obs_dim + 1 + act_dim], c[obs_dim + 1 + act_dim :]
        return e0 + jnp.dot(g0, a - a0)

    loss = _guided_loss(_on_state(policy, obs_dim), path, action, linear_energy, context, scale, config, key=key)
    return loss, {"policy_loss": loss}


def _guided_loss(
    velocity: Callable[..., Float[Array, " dim"]],
    path: GuidedGaussianPath,
    action: Float[Array, "n act_dim"],
    energy: Callable[..., Float[Array, ""]],
    context: Float[Array, "n ctx"],
    scale: Float[Array, ""],
    config: Config,
    *,
    key: PRNGKeyArray,
) -> Float[Array, ""]:
    """The regression on the guided path, weighted as `config` says (`weight_unit="q"`: EFM's endpoint weights
    `softmax(temperature A)`, i.e. `softmax(-temperature scale E)` since `E = -A / scale`; with `resample`, drawn in
    proportion to them)."""
    if config.weight_unit == "q":
        cap = None if config.max_weight is None else math.log(config.max_weight)
        return energy_weighted_loss(
            velocity, path, action, energy, beta=config.temperature * scale, key=key, context=context,
            max_log_weight=cap, resample=config.resample, min_ess=config.min_ess,
        )
    return energy_guided_loss(
        velocity, path, action, energy, key=key, context=context, weighted=config.weighted, weight_at=config.weight_at
    )


def q_and_action_gradient(
    q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]
) -> tuple[Float[Array, " n"], Float[Array, "n act_dim"]]:
    """`min_i Q_i(s, a)` and its gradient in `a`, per example: one batched forward and backward pass, no gradient
    into the critic."""
    q = stop_gradient(q)
    values, pullback = jax.vjp(lambda a: min_q(q, obs, a), action)
    (grads,) = pullback(jnp.ones_like(values))
    return values, grads


def action_gradient_norm(
    q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]
) -> Float[Array, " n"]:
    """`|grad_a min_i Q_i(s, a)|` per example (no gradient into the critic)."""
    _, grads = q_and_action_gradient(q, obs, action)
    return jnp.sqrt(jnp.sum(grads**2, axis=-1))


def update(state: State, batch: Transitions, *, key: PRNGKeyArray) -> tuple[State, dict[str, Array]]:
    """One FlowQ update: the IQL critic, the energy's running scale, then the guided flow-matching policy step.

    The energy reads the new `V` and the target `Q` of before the critic's target step: `(Q, grad_a Q)` of the
    target ensemble at the data actions are computed once, and serve the value step, the energy's unit and the
    policy loss.

    Args:
        state: the current state.
        batch: `rl.data.Transitions` with normalised observations and transformed rewards.
        key: randomness of the flow-matching draws `(t, a_0)`.

    Returns:
        The new state and scalar diagnostics.
    """
    config = state.config
    q_target = state.critic.q_target
    q_data, dq_data = q_and_action_gradient(q_target, batch.obs, batch.action)
    critic, critic_info = update_iql_critic(state.critic, batch, config.critic, q_data=q_data)
    if config.normalize_energy:
        batch_scale = jnp.maximum(jnp.mean(jnp.sqrt(jnp.sum(dq_data**2, axis=-1))), 1e-6)
        rate = jnp.where(state.step == 0, 1.0, config.scale_rate)
        energy_scale = jax.lax.stop_gradient((1.0 - rate) * state.energy_scale + rate * batch_scale)
    else:
        energy_scale = state.energy_scale
    baseline, log_partition, log_partition_opt_state, lp_info = critic.value, None, None, {}
    if config.weight_baseline == "log_partition":
        (_, lp_info), lp_grads = eqx.filter_value_and_grad(log_partition_loss, has_aux=True)(
            state.log_partition, batch.obs, q_data, temperature=config.temperature
        )
        log_partition, log_partition_opt_state = apply_gradients(
            state.log_partition, state.log_partition_opt_state, lp_grads, make_optimizer(config.critic.lr)
        )
        baseline = log_partition
    (_, policy_info), grads = eqx.filter_value_and_grad(policy_loss, has_aux=True)(
        state.policy, q_target, baseline, batch.obs, batch.action, energy_scale, config, key=key,
        at_data=(q_data, dq_data),
    )
    policy, policy_opt_state = apply_gradients(
        state.policy, state.policy_opt_state, grads, make_optimizer(config.policy.lr)
    )
    new = State(
        policy=policy,
        policy_opt_state=policy_opt_state,
        critic=critic,
        energy_scale=energy_scale,
        log_partition=log_partition,
        log_partition_opt_state=log_partition_opt_state,
        step=state.step + 1,
        config=config,
    )
    return new, {**critic_info, **lp_info, **policy_info, "energy_scale": energy_scale}

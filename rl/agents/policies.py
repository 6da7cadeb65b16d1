"""The flow policy shared by FlowQ and QIPO: its config, its network, and how it acts.

The policy is a conditional flow: a velocity field `v(a_t, t, s)` (`energyflow.MLPVelocity`) that carries noise
`a_0 ~ N(0, I)` at `t = 0` to an action `a_1` at `t = 1`, given the state `s`. Acting integrates that ODE with the
`energyflow` sampler (`sample_steps` steps of `solver`), clips to `[-1, 1]` and, with `best_of_n > 1`, keeps the
best of `N` draws by `min_i Q_i(s, a)` (`selection="agreed"`: only where the critics agree that it beats the first
draw; `selection="agreed_mean"`: only where they agree that it beats the draws' average, else the average;
`selection="mean"`: their average instead, no critic asked). How each agent *trains* the flow is the agent's own
story (`flowq`, `qipo`).
"""

import dataclasses
from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from energyflow import MLPVelocity
from energyflow import sample as flow_sample

from .base import Scalar, at_least, network_rules, validate
from .nets import QEnsemble, Selection, pick, q_values, state_values

__all__ = [
    "FLOW_AGENT_RENAMED",
    "FlowAgentState",
    "FlowPolicyConfig",
    "act",
    "best_of_n",
    "init_flow_policy",
    "sample_action_sets",
    "sample_flow_actions",
]


@dataclasses.dataclass(frozen=True)
class FlowPolicyConfig:
    """The flow policy's settings (nested as `policy` in FlowQ's and QIPO's `Config`)."""

    # hidden width of the velocity MLP (energyflow.MLPVelocity)
    width: int = 256
    # number of hidden layers of the velocity MLP
    depth: int = 3
    # learning rate of the policy (Adam)
    lr: float = 3e-4
    # ODE steps of the sampler at evaluation (FlowQ's training cost does not depend on it)
    sample_steps: int = 10
    # ODE solver of energyflow's sampler (QIPO also draws its support sets with it). FlowQ's own default is "heun";
    # QIPO keeps Euler, which its training also samples with (Heun scored lower on its grid runs: hopper 58.9 -> 46.6)
    solver: Literal["euler", "heun", "midpoint", "tsit5"] = "euler"
    # best-of-N by min Q at evaluation (1 = plain sampling). 8 since the screens: on the medium grid's runs it lifted
    # FlowQ 46.3 -> 54.5 and QIPO 61.6 -> 68.8 on average (IQL, with its own best-of-8: 58.9 -> 63.1; docs/study.md)
    best_of_n: int = 8
    # scale of the starting noise a_0 ~ noise * N(0, I) when acting: 1 samples the flow; 0 gives one deterministic
    # action per state (the image of the origin); in between a narrower draw. Training draws are never scaled
    noise: float = 1.0
    # how best-of-N chooses: "max" keeps the candidate of highest min Q; "agreed" keeps it only where every critic
    # rates it above the first draw's highest estimate (the twin critics agree the gain is real), else the first draw;
    # "agreed_mean" as "agreed" against the draws' average (scored too), else that average (the state-wise blend of
    # "max" and "mean"); "first_above_v" the first draw whose min Q reaches V(s), the best where none does (needs an
    # IQL critic);
    # "mean" the average of the N draws (the flow's mean action, as IQL acts by its Gaussian's mean; no critic asked)
    selection: Selection = "max"

    def __post_init__(self):
        validate(
            self,
            {
                **network_rules(),
                "sample_steps": at_least(1),
                "best_of_n": at_least(1),
                "noise": at_least(0.0),
            },
        )
        if self.best_of_n > 1 and self.noise == 0:
            raise ValueError(
                f"best_of_n={self.best_of_n} needs noise > 0: with noise=0 every candidate is the same action"
            )


def init_flow_policy(config: FlowPolicyConfig, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> MLPVelocity:
    """A fresh velocity network `v(a_t, t, s)` for actions of size `act_dim` given states of size `obs_dim`."""
    return MLPVelocity(act_dim, context_dim=obs_dim, width=config.width, depth=config.depth, key=key)


def sample_flow_actions(
    policy: MLPVelocity,
    obs: Float[Array, "n obs_dim"],
    *,
    key: PRNGKeyArray,
    steps: int,
    solver: str = "euler",
    noise: Scalar = 1.0,
) -> Float[Array, "n act_dim"]:
    """One action per state from a conditional flow policy `v(a_t, t, s)`: the `energyflow` ODE from noise, clipped.

    The ODE starts at `a_0 = noise * N(0, I)` (`noise = 1`: a sample of the flow). The cost is `steps` evaluations
    of the policy on the batch.
    """
    start = noise * jax.random.normal(key, (obs.shape[0], policy.dim))
    actions = flow_sample(policy, None, start, context=obs, solver=solver, steps=steps)
    return jnp.clip(actions, -1.0, 1.0)


def sample_action_sets(
    policy: MLPVelocity,
    obs: Float[Array, "n obs_dim"],
    count: int,
    *,
    key: PRNGKeyArray,
    steps: int,
    solver: str = "euler",
) -> Float[Array, "n count act_dim"]:
    """`count` actions per state from the flow policy (`sample_flow_actions` on the repeated states)."""
    n = obs.shape[0]
    actions = sample_flow_actions(policy, jnp.repeat(obs, count, axis=0), key=key, steps=steps, solver=solver)
    return actions.reshape(n, count, -1)


def best_of_n(
    propose: Callable[[PRNGKeyArray, Float[Array, "m obs_dim"]], Float[Array, "m act_dim"]],
    score: Callable[[Float[Array, "m obs_dim"], Float[Array, "m act_dim"]], Float[Array, "m *members"]],
    obs: Float[Array, "n obs_dim"],
    *,
    num_candidates: int,
    key: PRNGKeyArray,
    selection: Selection = "max",
    state_value: Float[Array, " n"] | None = None,
) -> Float[Array, "n act_dim"]:
    """Draw `num_candidates` actions per state with `propose(key, obs)` and keep the best by `score` (with
    `selection="mean"`, their average: `score` is then not called).

    Args:
        propose: batched proposal, e.g. `sample_flow_actions` bound to a policy.
        score: batched score of `(obs, action)` pairs, `[m]`, or every critic's, `[m, num_q]` (e.g. `q_values` bound
            to a critic), of which the lowest counts.
        obs: the states, `[n, obs_dim]`.
        num_candidates: `N`; with 1 this is just `propose`.
        key: randomness of the proposals.
        selection: `"max"`, `"agreed"`, `"first_above_v"` (`rl.agents.nets.choose`), `"mean"`
            (`rl.agents.nets.pick`) or `"agreed_mean"`: the draws' average is scored too and put first, and a draw
            replaces it only where every member of `score` rates the draw higher.
        state_value: `V(s)` of each state, `[n]`, which `"first_above_v"` needs.

    Returns:
        The chosen actions, `[n, act_dim]`.
    """
    if num_candidates == 1:
        return propose(key, obs)
    n = obs.shape[0]
    repeated = jnp.repeat(obs, num_candidates, axis=0)
    drawn = propose(key, repeated)
    candidates = drawn.reshape(n, num_candidates, -1)
    if selection == "mean":
        return pick(candidates, None, selection)
    values = score(repeated, drawn).reshape(n, num_candidates, -1)
    if selection == "agreed_mean":
        average = jnp.mean(candidates, axis=1)
        candidates = jnp.concatenate([average[:, None, :], candidates], axis=1)
        values = jnp.concatenate([score(obs, average).reshape(n, 1, -1), values], axis=1)
    return pick(candidates, values, selection, state_value=state_value)


class _HasQ(Protocol):
    q: QEnsemble


class _HasPolicyConfig(Protocol):
    policy: FlowPolicyConfig


@runtime_checkable
class FlowAgentState(Protocol):
    """What `act` reads from a flow agent's state: the flow, a critic with an online ensemble `q`, the config (and,
    for `policy.selection="first_above_v"` alone, the critic's `value` network, which QIPO's softmax critic lacks)."""

    policy: MLPVelocity
    critic: _HasQ
    config: _HasPolicyConfig


def act(state: FlowAgentState, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray) -> Float[Array, "n act_dim"]:
    """Actions by ODE sampling of the flow policy (`policy.sample_steps` steps of `policy.solver`, starting noise
    scaled by `policy.noise`), in `[-1, 1]`.

    With `policy.best_of_n = N > 1`, `N` actions are drawn per state and the one with the highest `min_i Q_i(s, a)`
    of the online critic is kept (with `policy.selection = "agreed"`, only where every critic rates it above the
    first draw; elsewhere the first draw; with `"agreed_mean"`, only where every critic rates it above the draws'
    average, elsewhere that average; with `"first_above_v"`, the first draw whose `min_i Q_i` reaches the
    critic's `V(s)`; with `"mean"`, the average of the `N` draws).

    Args:
        state: a FlowQ or QIPO state.
        obs: normalised observations, `[n, obs_dim]`.
        key: randomness of the draws.

    Returns:
        The actions, `[n, act_dim]`.
    """
    config = state.config.policy

    def propose(k, s):
        return sample_flow_actions(
            state.policy, s, key=k, steps=config.sample_steps, solver=config.solver, noise=config.noise
        )

    def score(s, a):
        return q_values(state.critic.q, s, a)

    value = state_values(state.critic.value, obs) if config.selection == "first_above_v" else None
    return best_of_n(propose, score, obs, num_candidates=config.best_of_n, key=key, selection=config.selection,
                     state_value=value)


FLOW_AGENT_RENAMED: dict[str, str] = {
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
    "reward_scale": "data.reward_scale",
    "reward_bias": "data.reward_bias",
}
"""The flat fields of FlowQ's and QIPO's earlier `Config`s and where they live now (each agent adds its own)."""

"""The contract every agent module follows, so that the trainer can drive any of them.

An agent module (`rl/agents/<name>.py`) exposes:

- `Config`: a frozen dataclass; every field documented, defaults are the ones results are reported with.
- `init(config, *, obs_dim, act_dim, key) -> State`: networks, optimiser states, target networks and a step counter
  `step` (an int32 scalar, advanced by one per `update`; the trainer keeps it shared, unbatched, across vmapped
  seeds), all in one `eqx.Module` pytree (`State`), with the config as a static field so `update`/`act` need nothing
  else.
- `update(state, batch, *, key) -> (State, dict[str, Array])`: one gradient update on a batch of `rl.data.Transitions`;
  pure and jittable (the trainer scans it); the dict holds scalar diagnostics (losses, Q means, ...).
- `act(state, obs, *, key) -> actions`: batched actions `[n, act_dim]` in `[-1, 1]` for normalised observations
  `[n, obs_dim]`; pure and jittable.

Phases (for example QIPO's behaviour warm-up) are driven by `state.step` inside `update` with `lax.cond`/`jnp.where`,
never by Python control flow, so that a whole run is one compiled `update`.
"""

from typing import Any, Protocol

from jaxtyping import Array, Float, PRNGKeyArray


class AgentModule(Protocol):
    """What `rl.agents.get_agent(name)` returns (a module object satisfying this protocol)."""

    Config: type

    def init(self, config: Any, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> Any: ...

    def update(self, state: Any, batch: Any, *, key: PRNGKeyArray) -> tuple[Any, dict[str, Array]]: ...

    def act(self, state: Any, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray) -> Float[Array, "n act_dim"]: ...

"""The networks the agents share: a Q ensemble and a state-value network, with their batched evaluations.

Shapes follow one rule: a batch of `n` scalars is `[n]`, never `[n, 1]`. Every hidden layer uses ReLU.
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["QEnsemble", "ValueNetwork", "min_q", "mlp", "q_values", "state_values"]


def mlp(in_size: int, out_size: int | Literal["scalar"], *, width: int, depth: int, key: PRNGKeyArray) -> eqx.nn.MLP:
    """A ReLU MLP with `depth` hidden layers of `width` units (`"scalar"` output: a 0-d array)."""
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
        self.nets = eqx.filter_vmap(lambda k: mlp(obs_dim + act_dim, "scalar", width=width, depth=depth, key=k))(keys)
        self.num_q = num_q

    def __call__(self, obs: Float[Array, " obs_dim"], action: Float[Array, " act_dim"]) -> Float[Array, " num_q"]:
        x = jnp.concatenate([obs, action])
        return eqx.filter_vmap(lambda net: net(x))(self.nets)


class ValueNetwork(eqx.Module):
    """A state-value network `V(s)`."""

    net: eqx.nn.MLP

    def __init__(self, obs_dim: int, *, width: int = 256, depth: int = 2, key: PRNGKeyArray):
        self.net = mlp(obs_dim, "scalar", width=width, depth=depth, key=key)

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

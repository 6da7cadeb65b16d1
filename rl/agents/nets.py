"""The networks the agents share: a Q ensemble and a state-value network, with their batched evaluations.

Shapes follow one rule: a batch of `n` scalars is `[n]`, never `[n, 1]`. Every hidden layer uses ReLU, optionally
followed by layer normalisation (`layer_norm=True`: `LayerNormMLP`, as FQL's critics, Park, Li, Levine 2025).
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["LayerNormMLP", "QEnsemble", "ValueNetwork", "min_q", "mlp", "q_values", "state_values"]


class LayerNormMLP(eqx.Module):
    """A ReLU MLP whose every hidden activation is layer-normalised: `x <- LayerNorm(relu(W x + b))`.

    Its linear layers are exactly those `mlp` makes from the same key (so with and without normalisation start from
    the same weights); each `LayerNorm` starts at unit scale and zero shift.
    """

    mlp: eqx.nn.MLP
    norms: tuple[eqx.nn.LayerNorm, ...]

    def __init__(self, in_size: int, out_size: int | Literal["scalar"], *, width: int, depth: int, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(in_size, out_size, width_size=width, depth=depth, activation=jax.nn.relu, key=key)
        self.norms = tuple(eqx.nn.LayerNorm(width) for _ in range(depth))

    def __call__(self, x: Float[Array, " in_size"]) -> Array:
        for layer, norm in zip(self.mlp.layers[:-1], self.norms):
            x = norm(jax.nn.relu(layer(x)))
        return self.mlp.layers[-1](x)


def mlp(
    in_size: int,
    out_size: int | Literal["scalar"],
    *,
    width: int,
    depth: int,
    key: PRNGKeyArray,
    layer_norm: bool = False,
) -> eqx.nn.MLP | LayerNormMLP:
    """A ReLU MLP with `depth` hidden layers of `width` units (`"scalar"` output: a 0-d array).

    With `layer_norm`, every hidden activation is layer-normalised (`LayerNormMLP`, same linear weights).
    """
    if layer_norm:
        return LayerNormMLP(in_size, out_size, width=width, depth=depth, key=key)
    return eqx.nn.MLP(in_size, out_size, width_size=width, depth=depth, activation=jax.nn.relu, key=key)


class QEnsemble(eqx.Module):
    """`num_q` independent Q networks `Q_i(s, a)`, their parameters stacked on a leading axis.

    Called on one `(obs, action)` pair it returns all `num_q` values; `jax.vmap` it (or use `q_values`) for batches.
    """

    nets: eqx.nn.MLP | LayerNormMLP
    num_q: int = eqx.field(static=True)

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        width: int = 256,
        depth: int = 2,
        num_q: int = 2,
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        keys = jax.random.split(key, num_q)
        self.nets = eqx.filter_vmap(
            lambda k: mlp(obs_dim + act_dim, "scalar", width=width, depth=depth, layer_norm=layer_norm, key=k)
        )(keys)
        self.num_q = num_q

    def __call__(self, obs: Float[Array, " obs_dim"], action: Float[Array, " act_dim"]) -> Float[Array, " num_q"]:
        x = jnp.concatenate([obs, action])
        return eqx.filter_vmap(lambda net: net(x))(self.nets)


class ValueNetwork(eqx.Module):
    """A state-value network `V(s)`."""

    net: eqx.nn.MLP | LayerNormMLP

    def __init__(
        self, obs_dim: int, *, width: int = 256, depth: int = 2, layer_norm: bool = False, key: PRNGKeyArray
    ):
        self.net = mlp(obs_dim, "scalar", width=width, depth=depth, layer_norm=layer_norm, key=key)

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

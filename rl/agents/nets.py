"""The networks the agents share: a Q ensemble and a state-value network, with their batched evaluations.

Shapes follow one rule: a batch of `n` scalars is `[n]`, never `[n, 1]`. Every hidden layer uses ReLU, optionally
followed by layer normalisation (`layer_norm=True`: `LayerNormMLP`, as FQL's critics, Park, Li, Levine 2025).

Batched evaluations (`q_values`, `min_q`, `state_values`) run each network on the whole batch as matrix products,
`x @ W.T + b` on `[n, in]` (`batch_apply`), and the Q ensemble as a `vmap` over its members of those batched
networks. Calling a network on one example and `jax.vmap`-ing that over the batch computes the same thing, but for
the ensemble (a `vmap` over the batch of a `vmap` over members) XLA on the CPU then transposes activations and
gradients between layers: a Q forward and backward pass took 15% longer, and twice as long with layer norm
(`benchmarks/updates.py --sections 5`). Batched networks also keep their speed under the trainer's own `vmap` over
members, where per-example ones lose about a quarter (`--sections 6`).
"""

from typing import Literal, get_args

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "SELECTIONS", "LayerNormMLP", "QEnsemble", "Selection", "ValueNetwork", "batch_apply", "choose", "min_q", "mlp",
    "pick", "q_values", "state_values",
]

Selection = Literal["max", "agreed", "agreed_mean", "first_above_v", "mean"]
SELECTIONS: tuple[Selection, ...] = get_args(Selection)


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


def _linear(layer: eqx.nn.Linear, x: Float[Array, "n in_size"]) -> Float[Array, "n out_size"]:
    """`eqx.nn.Linear` on a batch (a `"scalar"` output keeps its axis of size 1 here)."""
    y = x @ layer.weight.T
    return y if layer.bias is None else y + layer.bias[None, :]


def _layer_norm(norm: eqx.nn.LayerNorm, x: Float[Array, "n width"]) -> Float[Array, "n width"]:
    """`eqx.nn.LayerNorm` over the last axis of a batch (the same operations, in the same order)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.maximum(0.0, jnp.var(x, axis=-1, keepdims=True))
    out = (x - mean) * jax.lax.rsqrt(variance + norm.eps)
    if norm.use_weight:
        out = norm.weight[None, :] * out
    if norm.use_bias:
        out = out + norm.bias[None, :]
    return out


def batch_apply(net: eqx.nn.MLP | LayerNormMLP, x: Float[Array, "n in_size"]) -> Array:
    """A network made by `mlp` on a batch `[n, in_size]`: `[n, out_size]`, or `[n]` for a `"scalar"` output.

    The same function as `jax.vmap(net)(x)`, written as matrix products over the batch (elementwise activations).
    """
    if isinstance(net, LayerNormMLP):
        layers, norms, activation = net.mlp.layers, net.norms, jax.nn.relu
    else:
        if net.scan:
            return jax.vmap(net)(x)  # not made by `mlp`; keep equinox's own evaluation
        layers, norms, activation = net.layers, (None,) * (len(net.layers) - 1), net.activation
    for layer, norm in zip(layers[:-1], norms):
        x = activation(_linear(layer, x))
        if norm is not None:
            x = _layer_norm(norm, x)
    out = _linear(layers[-1], x)
    if isinstance(net, LayerNormMLP):
        return out[:, 0] if net.mlp.out_size == "scalar" else out
    return net.final_activation(out[:, 0]) if net.out_size == "scalar" else net.final_activation(out)


def q_values(
    q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]
) -> Float[Array, "n num_q"]:
    """Every member's `Q_i(s, a)` for a batch: `[n, num_q]` (each member on the whole batch, see the module doc)."""
    x = jnp.concatenate([obs, action], axis=-1)
    return eqx.filter_vmap(lambda net: batch_apply(net, x), out_axes=1)(q.nets)


def min_q(q: QEnsemble, obs: Float[Array, "n obs_dim"], action: Float[Array, "n act_dim"]) -> Float[Array, " n"]:
    """The pessimistic value `min_i Q_i(s, a)` for a batch: `[n]`."""
    return jnp.min(q_values(q, obs, action), axis=-1)


def choose(
    values: Float[Array, "n count num_q"], selection: Selection = "max", *, state_value: Float[Array, " n"] | None = None
) -> Array:
    """Which of `count` candidate actions per state best-of-N keeps, from every critic's value of each: `[n]` indices.

    The first candidate is the plain action (IQL's mean, the flow's first draw). `"max"` keeps the candidate of
    highest `min_i Q_i`. `"agreed"` keeps it only where the ensemble agrees that it beats the first candidate, that
    is where its lowest estimate exceeds the first candidate's highest; elsewhere the first: the spread of the
    members is the critic's own measure of doubt, so the gain of choosing is taken only where it is larger than that
    doubt. `"agreed_mean"` is `"agreed"` against the draws' mean: `best_of_n` puts the average of the draws first
    among the candidates (IQL's first candidate is its mean already), so a state acts by the averaged draws unless
    every critic rates the best draw above them. `"first_above_v"` keeps the first candidate, in order, whose
    `min_i Q_i` reaches the state's value
    `state_value` (`V(s)`, the expectile of Q over the data's actions), and the best by `min_i Q_i` where none does:
    it rejects the draws the critic rates below the data, without chasing the highest estimate, which is where the
    critic's errors gather. `"mean"` chooses none: it averages the candidates (`pick`).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "mean":
        raise ValueError("selection='mean' averages the candidates instead of choosing one: use pick")
    low = jnp.min(values, axis=-1)
    best = jnp.argmax(low, axis=-1)
    if selection == "max":
        return best
    if selection in ("agreed", "agreed_mean"):
        sure = jnp.take_along_axis(low, best[:, None], axis=1)[:, 0] > jnp.max(values[:, 0], axis=-1)
        return jnp.where(sure, best, 0)
    if state_value is None:
        raise ValueError("selection='first_above_v' needs the states' values V(s) (a critic with a value network)")
    reached = low >= state_value[:, None]
    return jnp.where(jnp.any(reached, axis=-1), jnp.argmax(reached, axis=-1), best)


def pick(
    candidates: Float[Array, "n count act_dim"],
    values: Float[Array, "n count num_q"] | None,
    selection: Selection = "max",
    *,
    state_value: Float[Array, " n"] | None = None,
) -> Float[Array, "n act_dim"]:
    """The action best-of-N acts with, per state: the candidate `choose` keeps, or with `selection="mean"` the
    candidates' average (then `values` may be None: the critic is not asked). For draws of a unimodal flow the
    average is a Monte Carlo estimate of its mean action, the flow's counterpart of the Gaussian policy's mean: it
    removes the draw's noise without a critic's choice among the draws."""
    if selection == "mean":
        return jnp.mean(candidates, axis=1)
    if values is None:
        raise ValueError(f"selection={selection!r} chooses by the critics' values; got none")
    chosen = choose(values, selection, state_value=state_value)
    return jnp.take_along_axis(candidates, chosen[:, None, None], axis=1)[:, 0, :]


def state_values(value: ValueNetwork, obs: Float[Array, "n obs_dim"]) -> Float[Array, " n"]:
    """`V(s)` for a batch: `[n]`."""
    return batch_apply(value.net, obs)

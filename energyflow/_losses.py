"""Flow-matching losses: plain (CFM), energy-weighted (EFM, MATH section 3), energy-guided (MATH section 4).

A velocity model is called on one example, `model(x_t, t, context)` with `context=None` for unconditional
models; the losses vmap it over the batch. Each loss draws `t ~ U[0, 1]` and `x0 ~ N(0, I)` from `key` unless
`t` and `x0` are given (tests pin them to compare losses on the same draws).
"""

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike

from ._paths import AffineProbPath, Energy, GuidedGaussianPath, PathSample, call_energy

VelocityModel = Callable[..., Float[Array, "dim"]]


def _draw(
    x1: Float[Array, "n dim"],
    key: PRNGKeyArray | None,
    x0: Float[Array, "n dim"] | None,
    t: Float[Array, " n"] | None,
) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
    if x0 is None or t is None:
        if key is None:
            raise ValueError("a `key` is needed unless both `x0` and `t` are given")
        k0, kt = jax.random.split(key)
        if x0 is None:
            x0 = jax.random.normal(k0, x1.shape, x1.dtype)
        if t is None:
            t = jax.random.uniform(kt, x1.shape[:1], x1.dtype)
    return x0, t


def _squared_errors(
    model: VelocityModel, ps: PathSample, context: Float[Array, "n ctx"] | None
) -> Float[Array, " n"]:
    """`|v(x_t, t, c) - u_t|^2` per example; the regression target carries no gradient."""
    x_t = jax.lax.stop_gradient(ps.x_t)
    target = jax.lax.stop_gradient(ps.dx_t)
    if context is None:
        v = jax.vmap(lambda x, tt: model(x, tt, None))(x_t, ps.t)
    else:
        v = jax.vmap(model)(x_t, ps.t, context)
    return jnp.sum((v - target) ** 2, axis=-1)


def group_softmax(logits: Float[Array, " n"], group_size: int | None = None) -> Float[Array, " n"]:
    """Softmax over the whole batch, or over consecutive groups of `group_size` (each group then sums to `1/G`).

    Weights of this form sum to one over the batch, so a weighted loss `sum_i w_i l_i` is on the scale of a mean.
    """
    if group_size is None:
        return jax.nn.softmax(logits)
    n = logits.shape[0]
    if group_size < 1:
        raise ValueError(f"group_size must be a positive integer (or None for the whole batch), got {group_size}")
    if n % group_size != 0:
        raise ValueError(f"batch size {n} is not a multiple of group_size={group_size}")
    groups = n // group_size
    return jax.nn.softmax(logits.reshape(groups, group_size), axis=-1).reshape(n) / groups


def energy_weights(
    energies: Float[Array, " n"], beta: ScalarLike, group_size: int | None = None
) -> Float[Array, " n"]:
    """The self-normalised EFM weights `g_i = softmax_i(-beta E(x1_i))` (log-sum-exp, so no overflow).

    Args:
        energies: `E(x1_i)` for each example.
        beta: inverse temperature.
        group_size: if given, normalise within consecutive groups of this size (examples sharing one context)
            instead of over the whole batch.
    """
    return group_softmax(-beta * energies, group_size)


def _evaluate_energy(energy, x1, context):
    if callable(energy):
        if context is None:
            return jax.vmap(lambda x: call_energy(energy, x, None))(x1)
        return jax.vmap(lambda x, c: call_energy(energy, x, c))(x1, context)
    return energy


def cfm_loss(
    model: VelocityModel,
    path: AffineProbPath,
    x1: Float[Array, "n dim"],
    *,
    key: PRNGKeyArray | None = None,
    context: Float[Array, "n ctx"] | None = None,
    x0: Float[Array, "n dim"] | None = None,
    t: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """Conditional flow matching: the batch mean of `|v(x_t, t) - u_t(x_t | x0, x1)|^2`."""
    x0, t = _draw(x1, key, x0, t)
    ps = jax.vmap(path.sample)(x0, x1, t)
    return jnp.mean(_squared_errors(model, ps, context))


def energy_weighted_loss(
    model: VelocityModel,
    path: AffineProbPath,
    x1: Float[Array, "n dim"],
    energy: Energy | Float[Array, " n"],
    *,
    beta: ScalarLike,
    key: PRNGKeyArray | None = None,
    context: Float[Array, "n ctx"] | None = None,
    group_size: int | None = None,
    x0: Float[Array, "n dim"] | None = None,
    t: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """Energy-weighted flow matching (EFM): `sum_i g_i |v(x_t,i, t_i) - u_t,i|^2`, `g = softmax(-beta E(x1))`.

    Its minimiser is the marginal velocity of the path that ends at `q ∝ p exp(-beta E)`; `E` is evaluated at the
    data points only and no gradient of it is taken.

    Args:
        energy: a function of one point (`E(x)`, or `E(x, c)` with a context), or the energies `E(x1_i)` already
            evaluated, shape `[n]`. No gradient flows through the weights.
        beta: inverse temperature; `beta = 0` gives exactly `cfm_loss`.
        group_size: normalise the weights within consecutive groups of this many examples (candidates that share
            one context) rather than over the whole batch.
    """
    x0, t = _draw(x1, key, x0, t)
    energies = jax.lax.stop_gradient(_evaluate_energy(energy, x1, context))
    weights = energy_weights(energies, beta, group_size)
    ps = jax.vmap(path.sample)(x0, x1, t)
    return jnp.sum(weights * _squared_errors(model, ps, context))


def energy_guided_loss(
    model: VelocityModel,
    path: GuidedGaussianPath,
    x1: Float[Array, "n dim"],
    energy: Energy,
    *,
    key: PRNGKeyArray | None = None,
    context: Float[Array, "n ctx"] | None = None,
    weighted: bool = False,
    weight_at: Literal["t", "endpoint"] = "t",
    group_size: int | None = None,
    x0: Float[Array, "n dim"] | None = None,
    t: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """Energy-guided flow matching (FlowQ): regress on the velocity of the guided Gaussian path.

    Each example costs one energy gradient (plus a Hessian-vector product with `path.gradient="mean"`), whatever
    the number of steps later used for sampling.

    Args:
        energy: a function of one point, `E(x)` or `E(x, c)`; wrap it in `jax.lax.stop_gradient` yourself if its
            parameters must not be trained (the regression target itself never carries a gradient).
        weighted: weight each example by `softmax_i(log Z(x1_i))`, the mixture weights of the guided marginal;
            otherwise the batch mean.
        weight_at: with `weighted`, where the normaliser is taken: `"t"` uses `log Z_t` at each example's own time
            (MATH section 4; the weights then change with `t`, and normalising across examples at different times
            also reweights time: pass one `t` per group with `group_size`), `"endpoint"` uses `log Z_1`, which is
            constant in `t` (`-beta E(x1)` when `sigma_1 = 0`, EFM's weights): the mixture of guided conditionals
            then ends exactly at `q`.
        group_size: with `weighted`, normalise within consecutive groups of this size.
    """
    x0, t = _draw(x1, key, x0, t)
    if context is None:
        ps = jax.vmap(lambda a, b, c: path.sample(a, b, c, energy))(x0, x1, t)
    else:
        ps = jax.vmap(lambda a, b, c, s: path.sample(a, b, c, energy, s))(x0, x1, t, context)
    errors = _squared_errors(model, ps, context)
    if not weighted:
        return jnp.mean(errors)
    if weight_at not in ("t", "endpoint"):
        raise ValueError(f"weight_at must be 't' or 'endpoint', got {weight_at!r}")
    t_weight = t if weight_at == "t" else jnp.ones_like(t)
    if context is None:
        log_z = jax.vmap(lambda b, c: path.log_normalizer(b, c, energy))(x1, t_weight)
    else:
        log_z = jax.vmap(lambda b, c, s: path.log_normalizer(b, c, energy, s))(x1, t_weight, context)
    weights = jax.lax.stop_gradient(group_softmax(log_z, group_size))
    return jnp.sum(weights * errors)

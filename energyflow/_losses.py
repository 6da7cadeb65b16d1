"""Flow-matching losses: plain (CFM), energy-weighted (EFM) and energy-guided (the definitions are in the docs'
maths page, `docs/maths.md`).

A velocity model is called on one example, `model(x_t, t, context)` with `context=None` for unconditional
models; the losses vmap it over the batch. Each loss draws `t ~ U[0, 1]` and `x_0 ~ N(0, I)` from independent
halves of `key` unless `t` and `x_0` are given (tests pin them to compare losses on the same draws). Every loss takes
any path it can use: an `AffineProbPath`, or a `GuidedGaussianPath` together with its energy.
"""

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, ScalarLike

from ._paths import AbstractProbPath, Energy, GuidedGaussianPath, PathSample, call_energy

VelocityModel = Callable[..., Float[Array, "dim"]]


def _draw(
    x_1: Float[Array, "n dim"],
    key: PRNGKeyArray | None,
    x_0: Float[Array, "n dim"] | None,
    t: Float[Array, " n"] | None,
) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
    """`x_0 ~ N(0, I)` and `t ~ U[0, 1]`, each from its own half of `key`, unless given."""
    if x_0 is None or t is None:
        if key is None:
            raise ValueError("a `key` is needed unless both `x_0` and `t` are given")
        k0, kt = jax.random.split(key)
        if x_0 is None:
            x_0 = jax.random.normal(k0, x_1.shape, x_1.dtype)
        if t is None:
            t = jax.random.uniform(kt, x_1.shape[:1], x_1.dtype)
    return x_0, t


def _path_samples(
    path: AbstractProbPath,
    x_0: Float[Array, "n dim"],
    x_1: Float[Array, "n dim"],
    t: Float[Array, " n"],
    energy: Energy | None,
    context: Float[Array, "n ctx"] | None,
) -> PathSample:
    """`path.sample` over the batch (the energy and the context go to paths that use them)."""
    if context is None:
        return jax.vmap(lambda a, b, c: path.sample(a, b, c, energy))(x_0, x_1, t)
    return jax.vmap(lambda a, b, c, s: path.sample(a, b, c, energy, s))(x_0, x_1, t, context)


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
    energies: Float[Array, " n"],
    beta: ScalarLike,
    group_size: int | None = None,
    *,
    max_log_weight: ScalarLike | None = None,
) -> Float[Array, " n"]:
    """The self-normalised EFM weights `g_i = softmax_i(-beta E(x_1,i))` (log-sum-exp, so no overflow).

    Args:
        energies: `E(x_1,i)` for each example.
        beta: inverse temperature.
        group_size: if given, normalise within consecutive groups of this size (examples sharing one context)
            instead of over the whole batch.
        max_log_weight: if given, cap the unnormalised log-weights `-beta E` at this value before normalising:
            no example then weighs more than `exp(max_log_weight)` times one with `E = 0`, however low its energy
            (IQL's `max_weight`, in log form). The target becomes `p min(exp(-beta E), exp(max_log_weight))`, so
            the cap needs an energy whose zero means something (an advantage, say), unlike the plain weights,
            which ignore any shift of `E`.
    """
    return group_softmax(_log_weights(energies, beta, max_log_weight), group_size)


def tempered_beta(
    energies: Float[Array, " n"],
    beta: ScalarLike,
    min_ess: ScalarLike,
    *,
    max_log_weight: ScalarLike | None = None,
    iterations: int = 30,
) -> Float[Array, ""]:
    """The largest inverse temperature up to `beta` whose weights `softmax(-b E)` keep an effective sample size
    `1 / sum_i g_i^2` of at least `min_ess` times the batch (adaptive tempering, as in sequential Monte Carlo).

    The effective sample size falls as `b` grows (its log has derivative `2 (E_b[-E] - E_2b[-E]) <= 0`), so `b` is found
    by bisection on `[0, beta]` (`iterations` halvings); it is `beta` itself when that already keeps `min_ess`. No
    gradient flows through it.

    Args:
        energies: `E(x_1,i)` for each example.
        beta: the largest inverse temperature.
        min_ess: the least effective sample size, as a fraction of the batch, in `(0, 1]`.
        max_log_weight: the cap on the log-weights, as in `energy_weights`.
        iterations: bisection steps.
    """
    if isinstance(min_ess, (int, float)) and not 0.0 < min_ess <= 1.0:
        raise ValueError(f"min_ess must be a fraction of the batch in (0, 1], got {min_ess!r}")
    energies = jax.lax.stop_gradient(energies)
    beta = jnp.asarray(beta, energies.dtype)
    target = min_ess * energies.shape[0]

    def ess(b):
        weights = jax.nn.softmax(_log_weights(energies, b, max_log_weight))
        return 1.0 / jnp.sum(weights**2)

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        keeps = ess(mid) >= target
        return jnp.where(keeps, mid, lo), jnp.where(keeps, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iterations, halve, (jnp.zeros_like(beta), beta))
    return jax.lax.stop_gradient(jnp.where(ess(beta) >= target, beta, lo))


def _log_weights(
    energies: Float[Array, " n"], beta: ScalarLike, max_log_weight: ScalarLike | None
) -> Float[Array, " n"]:
    """The unnormalised log-weights `-beta E`, capped at `max_log_weight` if given."""
    logits = -beta * energies
    return logits if max_log_weight is None else jnp.minimum(logits, max_log_weight)


def _evaluate_energy(energy, x_1, context):
    if callable(energy):
        if context is None:
            return jax.vmap(lambda x: call_energy(energy, x, None))(x_1)
        return jax.vmap(lambda x, c: call_energy(energy, x, c))(x_1, context)
    return energy


def cfm_loss(
    model: VelocityModel,
    path: AbstractProbPath,
    x_1: Float[Array, "n dim"],
    *,
    energy: Energy | None = None,
    key: PRNGKeyArray | None = None,
    context: Float[Array, "n ctx"] | None = None,
    x_0: Float[Array, "n dim"] | None = None,
    t: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """Conditional flow matching: the batch mean of `|v(x_t, t) - u_t(x_t | x_0, x_1)|^2` on any path.

    Args:
        model: the velocity, called on one example as `model(x_t, t, context)`.
        path: an `AffineProbPath` (plain CFM), or a `GuidedGaussianPath` with its `energy` (then this is the
            unweighted energy-guided loss; with `beta = 0` it is plain CFM again).
        x_1: data points, `[n, dim]`.
        energy: the energy of one point, for paths that use one.
        key: PRNG key for `x_0` and `t`; not needed when both are given.
        context: one context per example, `[n, ctx]`, or `None`.
        x_0: the noise ends, `[n, dim]` (drawn from `key` if not given).
        t: the times, `[n]` (drawn uniformly from `key` if not given).
    """
    x_0, t = _draw(x_1, key, x_0, t)
    ps = _path_samples(path, x_0, x_1, t, energy, context)
    return jnp.mean(_squared_errors(model, ps, context))


def energy_weighted_loss(
    model: VelocityModel,
    path: AbstractProbPath,
    x_1: Float[Array, "n dim"],
    energy: Energy | Float[Array, " n"],
    *,
    beta: ScalarLike,
    key: PRNGKeyArray | None = None,
    context: Float[Array, "n ctx"] | None = None,
    group_size: int | None = None,
    max_log_weight: ScalarLike | None = None,
    resample: int | None = None,
    min_ess: ScalarLike | None = None,
    x_0: Float[Array, "m dim"] | None = None,
    t: Float[Array, " m"] | None = None,
) -> Float[Array, ""]:
    """Energy-weighted flow matching (EFM): `sum_i g_i |v(x_t,i, t_i) - u_t,i|^2`, `g = softmax(-beta E(x_1))`.

    Its minimiser is the marginal velocity of the path that ends at `q ∝ p exp(-beta E)`; `E` is evaluated at the
    data points only and no gradient of it is taken.

    With `resample=m` the weights choose the examples instead of scaling their errors (sampling-importance
    resampling): `m` indices are drawn with replacement, index `i` with probability `g_i`, and the loss is the plain
    mean of the `m` drawn examples' errors, each with its own `(t, x_0)`. Its expectation over the draws is the
    weighted loss of the same batch, so the minimiser is the same. It helps when the weights are sharp: a batch whose
    weight sits on a few examples then regresses those few on `m` different `(t, x_0)` instead of one each, and a
    larger batch (more examples to choose from) costs only energies, the regression staying at `m` examples.

    Args:
        model: the velocity, called on one example as `model(x_t, t, context)`.
        path: usually an `AffineProbPath`; a `GuidedGaussianPath` also works, with `energy` given as a function
            (it then gets the guided conditionals with endpoint weights, as `energy_guided_loss` with
            `weighted=True, weight_at="endpoint"` when `sigma_1 = 0`).
        x_1: data points, `[n, dim]`.
        energy: a function of one point (`E(x)`, or `E(x, c)` with a context), or the energies `E(x_1,i)` already
            evaluated, shape `[n]`. No gradient flows through the weights.
        beta: inverse temperature; `beta = 0` gives exactly `cfm_loss`.
        key: PRNG key for `x_0` and `t`; not needed when both are given.
        context: one context per example, `[n, ctx]`, or `None`.
        group_size: normalise the weights within consecutive groups of this many examples (candidates that share
            one context) rather than over the whole batch.
        max_log_weight: cap the log-weights `-beta E` at this value before normalising (`energy_weights`).
        resample: draw this many examples in proportion to the weights and take the plain mean of their errors
            (see above); `None`: weight the whole batch. Needs a `key` (the indices come from a split of it);
            not with `group_size`.
        min_ess: lower `beta` where the batch's weights would keep an effective sample size below this fraction of
            the batch, to the inverse temperature that keeps exactly that (`tempered_beta`); `None`: `beta` as
            given. The target is then `p exp(-b E)` with the batch's own `b <= beta`. Not with `group_size`.
        x_0: the noise ends, `[n, dim]` (`[resample, dim]` with `resample`; drawn from `key` if not given).
        t: the times, `[n]` (`[resample]` with `resample`; drawn uniformly from `key` if not given).
    """
    energies = jax.lax.stop_gradient(_evaluate_energy(energy, x_1, context))
    path_energy = energy if callable(energy) else None
    if min_ess is not None:
        if group_size is not None:
            raise ValueError(f"min_ess tempers the weights of the whole batch; it cannot be combined with "
                             f"group_size={group_size}")
        beta = tempered_beta(energies, beta, min_ess, max_log_weight=max_log_weight)
    if resample is None:
        x_0, t = _draw(x_1, key, x_0, t)
        weights = energy_weights(energies, beta, group_size, max_log_weight=max_log_weight)
        ps = _path_samples(path, x_0, x_1, t, path_energy, context)
        return jnp.sum(weights * _squared_errors(model, ps, context))
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
        raise ValueError(f"resample must be a positive integer (the number of draws) or None, got {resample!r}")
    if group_size is not None:
        raise ValueError(f"resample draws from the whole batch; it cannot be combined with group_size={group_size}")
    if key is None:
        raise ValueError("resample needs a `key`: the drawn indices come from it")
    key, index_key = jax.random.split(key)
    index = jax.random.categorical(index_key, _log_weights(energies, beta, max_log_weight), shape=(resample,))
    x_1 = x_1[index]
    context = None if context is None else context[index]
    x_0, t = _draw(x_1, key, x_0, t)
    ps = _path_samples(path, x_0, x_1, t, path_energy, context)
    return jnp.mean(_squared_errors(model, ps, context))


def energy_guided_loss(
    model: VelocityModel,
    path: GuidedGaussianPath,
    x_1: Float[Array, "n dim"],
    energy: Energy,
    *,
    key: PRNGKeyArray | None = None,
    context: Float[Array, "n ctx"] | None = None,
    weighted: bool = False,
    weight_at: Literal["t", "endpoint"] = "endpoint",
    group_size: int | None = None,
    x_0: Float[Array, "n dim"] | None = None,
    t: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """Energy-guided flow matching (FlowQ): regress on the velocity of the guided Gaussian path.

    Each example costs one energy gradient (plus a Hessian-vector product with `path.gradient="mean"`), whatever
    the number of steps later used for sampling.

    Args:
        model: the velocity, called on one example as `model(x_t, t, context)`.
        path: the guided path (its `beta`, `lambda_schedule` and `gradient`).
        x_1: data points, `[n, dim]`.
        energy: a function of one point, `E(x)` or `E(x, c)`; wrap it in `jax.lax.stop_gradient` yourself if its
            parameters must not be trained (the regression target itself never carries a gradient).
        key: PRNG key for `x_0` and `t`; not needed when both are given.
        context: one context per example, `[n, ctx]`, or `None`.
        weighted: weight each example by `softmax_i(log Z(x_1,i))`, the mixture weights of the guided marginal;
            otherwise the batch mean (then the flow ends at `p` when `sigma_1 = 0`, not at `q`).
        weight_at: with `weighted`, where the normaliser is taken: `"endpoint"` (the default, as in `fit` and the
            FlowQ agent) uses `log Z_1`, which is constant in `t` (`-beta E(x_1)` when `sigma_1 = 0`, EFM's
            weights): the mixture of guided conditionals then ends exactly at `q`. `"t"` uses `log Z_t` at each
            example's own time; the weights then change with `t`, which no flow can follow, so it under-tilts, and
            normalising across examples at different times also reweights time: pass one `t` per group with
            `group_size`.
        group_size: with `weighted`, normalise within consecutive groups of this size.
        x_0: the noise ends, `[n, dim]` (drawn from `key` if not given).
        t: the times, `[n]` (drawn uniformly from `key` if not given).
    """
    if not isinstance(path, GuidedGaussianPath):
        raise TypeError(
            f"energy_guided_loss needs a GuidedGaussianPath, got {type(path).__name__}; "
            "for an AffineProbPath use cfm_loss or energy_weighted_loss"
        )
    if weighted and weight_at not in ("t", "endpoint"):
        raise ValueError(f"weight_at must be 't' or 'endpoint', got {weight_at!r}")
    x_0, t = _draw(x_1, key, x_0, t)
    ps = _path_samples(path, x_0, x_1, t, energy, context)
    errors = _squared_errors(model, ps, context)
    if not weighted:
        return jnp.mean(errors)
    t_weight = t if weight_at == "t" else jnp.ones_like(t)
    if context is None:
        log_z = jax.vmap(lambda b, c: path.log_normalizer(b, c, energy))(x_1, t_weight)
    else:
        log_z = jax.vmap(lambda b, c, s: path.log_normalizer(b, c, energy, s))(x_1, t_weight, context)
    weights = jax.lax.stop_gradient(group_softmax(log_z, group_size))
    return jnp.sum(weights * errors)

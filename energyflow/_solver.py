"""ODE samplers and likelihoods of velocity models, solved with diffrax.

A velocity model is called on one example, `model(x, t, context) -> velocity` (`t = 0` is the noise `N(0, I)`,
`t = 1` the data: docs/maths.md, "Probability paths"). Every function here solves the whole batch as one ODE on an
`[n, dim]` state, with the model vmapped inside the vector field.

Stepping: give `steps` for a fixed grid of `steps` equal steps from `t0` to `t1` (`max_steps` is then `steps`, so
the solve costs the same as a hand-written loop), or `rtol`/`atol` for adaptive steps under a PID controller (the
solver needs an error estimate: Heun, midpoint or Tsit5, not Euler). Not both.

Likelihoods use the instantaneous change of variables, `d/dt log p_t(x_t) = -div v(x_t, t)`, so

    log p_1(x_1) = log N(x_0; 0, I) - int_0^1 div v(x_t, t) dt,

with the divergence computed exactly (a trace over `dim` Jacobian-vector products; fine for small `dim`) or by
Hutchinson's estimator `E[eps^T J eps]` with probes drawn once per solve.
"""

import math
import typing

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._losses import VelocityModel
from ._solver_args import (
    _LIKELIHOOD_STEPS,
    _LIKELIHOOD_TOL,
    _SAMPLE_STEPS,
    Divergence,
    Probe,
    SolverName,
    _check_model,
    _resolve_context,
    _resolve_divergence,
    _resolve_points,
    _resolve_solver,
    _resolve_start,
    _resolve_stepping,
    _resolve_times,
    _Stepping,
)
from ._validate import check_key, check_memory, describe, solve_bytes_per_point

# ---------------------------------------------------------------------------------------------------------------
# Vector fields: module-level functions (so diffrax's compiled solves are reused across calls), data in `args`.


def _batched_velocity(
    model: VelocityModel, x: Float[Array, "n dim"], t: Float[ArrayLike, ""], context: Array | None
) -> Float[Array, "n dim"]:
    if context is None:
        return jax.vmap(lambda xi: model(xi, t, None))(x)
    return jax.vmap(lambda xi, ci: model(xi, t, ci), in_axes=(0, 0 if context.ndim == 2 else None))(x, context)


def _velocity(t: Float[ArrayLike, ""], x: Float[Array, "n dim"], args) -> Float[Array, "n dim"]:
    model, context = args
    return _batched_velocity(model, x, t, context)


def _velocity_and_divergence_one(
    model: VelocityModel,
    x: Float[Array, " dim"],
    t: Float[ArrayLike, ""],
    context: Array | None,
    probes: Float[Array, "probes dim"] | None,
) -> tuple[Float[Array, " dim"], Float[Array, ""]]:
    """`v(x, t)` and `div v`: `sum_k e_k^T J e_k` over the basis (exact) or the mean of `eps^T J eps` over probes."""
    velocity, jvp = jax.linearize(lambda z: model(z, t, context), x)
    if probes is None:
        return velocity, jnp.trace(jax.vmap(jvp)(jnp.eye(x.shape[0], dtype=x.dtype)))
    return velocity, jnp.mean(jnp.sum(probes * jax.vmap(jvp)(probes), axis=-1))


def _velocity_and_log_density(
    t: Float[ArrayLike, ""], y: tuple[Float[Array, "n dim"], Float[Array, " n"]], args
) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
    """The augmented field `(dx/dt, d log p_t(x_t)/dt) = (v, -div v)`."""
    model, context, probes = args
    x, _ = y
    in_axes = (0, None if context is None or context.ndim == 1 else 0, None if probes is None else 0)

    def one(xi, ci, pi):
        return _velocity_and_divergence_one(model, xi, t, ci, pi)

    velocity, divergence = jax.vmap(one, in_axes=in_axes)(x, context, probes)
    return velocity, -divergence


def _standard_normal_log_density(x: Float[Array, "n dim"]) -> Float[Array, " n"]:
    return -0.5 * jnp.sum(x**2, axis=-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def _draw_probes(key: PRNGKeyArray, shape: tuple[int, ...], probe: Probe, dtype) -> Array:
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, dtype=dtype)
    return jax.random.normal(key, shape, dtype=dtype)


def _solve(field, solver, stepping: _Stepping, t0: float, t1: float, y0, args, saveat, adjoint) -> diffrax.Solution:
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0,
        t1,
        stepping.dt0,
        y0,
        args,
        saveat=saveat,
        stepsize_controller=stepping.controller,
        max_steps=stepping.max_steps,
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        # A fixed-step solve takes exactly `steps` steps and cannot run out of them, so skip the runtime error
        # check: inside a jitted training step it would add a host callback to every solve.
        throw=stepping.steps is None,
    )


# ---------------------------------------------------------------------------------------------------------------
# Public functions.


@typing.no_type_check  # validated by hand below, so that users and tests see the same one-line messages
def sample(
    model: VelocityModel,
    key: PRNGKeyArray | None,
    n_or_x0: int | ArrayLike,
    *,
    dim: int | None = None,
    context: ArrayLike | None = None,
    solver: SolverName | diffrax.AbstractSolver = "euler",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    t0: float | int = 0.0,
    t1: float | int = 1.0,
    return_trajectory: bool | ArrayLike = False,
    max_steps: int | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> Float[Array, "n dim"] | Float[Array, "time n dim"]:
    """Push points from `t0` (noise) to `t1` (data) along the ODE `dx/dt = model(x, t, context)`.

    Works inside `jax.jit` and `jax.vmap`; the arguments that fix the computation (`steps`, `solver`, ...) are
    checked eagerly, array shapes statically. Gradients flow through the solve (`adjoint`).

    Args:
        model: the velocity, called on one example as `model(x [dim], t, context [ctx] | None) -> [dim]`.
        key: PRNG key to draw `x0 ~ N(0, I)`; may be `None` when starting points are given.
        n_or_x0: a batch size `n`, or the starting points `[n, dim]` at `t0`.
        dim: the data dimension when `n_or_x0` is an int; defaults to `model.dim`.
        context: `None`, one context per example `[n, ctx]`, or one context `[ctx]` shared by the batch.
        solver: `"euler"`, `"heun"`, `"midpoint"`, `"tsit5"` or a `diffrax.AbstractSolver`.
        steps: number of equal steps (default 10 when no tolerance is given).
        rtol: relative tolerance of adaptive steps (PID controller); `atol` defaults to it.
        atol: absolute tolerance of adaptive steps; `rtol` defaults to it.
        t0: start time (noise at 0).
        t1: end time (data at 1).
        return_trajectory: `False` for the end points only; `True` for every fixed step (`[steps + 1, n, dim]`,
            starting with `x0`); or an array of times `[T]` between `t0` and `t1` to save at (`[T, n, dim]`; the
            only way to get a trajectory from adaptive steps, whose step times are not known in advance).
        max_steps: the solver's step budget; defaults to `steps` for fixed steps, 4096 for adaptive ones.
        adjoint: how to differentiate through the solve; default `diffrax.RecursiveCheckpointAdjoint()`.

    Returns:
        The points at `t1`, `[n, dim]`, or the trajectory `[T, n, dim]` when `return_trajectory` is set.

    Raises:
        TypeError: a `key` that is not one PRNG key (`jax.random.key(seed)` or a legacy `uint32[2]`), a step count
            that is not an int, a solver that is neither a name nor a `diffrax.AbstractSolver`.
        ValueError: a non-positive `n` or step count, an unknown solver name, starting points or a context of the
            wrong shape, empty, or holding NaN/inf (the first bad row is named), or a request whose estimated
            memory exceeds the limit (see "Memory" in the docs: the message gives the estimate and a chunk size).
            All are raised before anything is traced; under `jax.jit` only shapes and dtypes are checked.
    """
    _check_model(model)
    key = check_key(key, optional=True)
    solver = _resolve_solver(solver)
    t0, t1 = _resolve_times(t0, t1)
    stepping = _resolve_stepping(
        solver, steps, rtol, atol, max_steps, t0, t1, default_steps=_SAMPLE_STEPS, default_tol=None
    )
    n, dim, x0 = _resolve_start(model, key, n_or_x0, dim)
    context = _resolve_context(model, context, n)
    if isinstance(return_trajectory, bool):
        if return_trajectory and stepping.steps is None:
            raise ValueError(
                "return_trajectory=True saves every fixed step, but adaptive steps (rtol/atol) were asked for; "
                "pass return_trajectory=<array of save times> instead"
            )
        saveat = diffrax.SaveAt(t0=True, steps=True) if return_trajectory else diffrax.SaveAt(t1=True)
    else:
        try:
            save_ts = jnp.asarray(return_trajectory)
        except Exception:
            raise TypeError(
                f"return_trajectory must be a bool or a 1-D array of save times, got {describe(return_trajectory)}"
            ) from None
        if save_ts.ndim != 1 or save_ts.shape[0] == 0:
            raise ValueError(
                f"return_trajectory as save times must be a non-empty 1-D array, got shape {save_ts.shape}"
            )
        if not jnp.issubdtype(save_ts.dtype, jnp.floating):
            save_ts = save_ts.astype(float)
        saveat = diffrax.SaveAt(ts=save_ts)
    if return_trajectory is False:
        saved = 0
    else:
        saved = stepping.max_steps + 1 if return_trajectory is True else save_ts.shape[0]
    itemsize = (jax.dtypes.canonicalize_dtype(jnp.float64) if x0 is None else x0.dtype).itemsize
    check_memory(
        "sample",
        n,
        solve_bytes_per_point(model, dim, solver, itemsize, saved=saved),
        "draw at most {chunk} points a call, e.g. "
        "jnp.concatenate([sample(model, k, {chunk}, ...) for k in jax.random.split(key, {calls})])",
    )
    if x0 is None:
        x0 = jax.random.normal(key, (n, dim))

    ys = _solve(_velocity, solver, stepping, t0, t1, x0, (model, context), saveat, adjoint).ys
    if return_trajectory is False:
        return ys[0]
    if return_trajectory is True:
        return ys[: stepping.steps + 1]  # with max_steps > steps, diffrax pads the unused step slots
    return ys


@typing.no_type_check
def log_prob(
    model: VelocityModel,
    x: ArrayLike,
    *,
    context: ArrayLike | None = None,
    solver: SolverName | diffrax.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    divergence: Divergence = "exact",
    key: PRNGKeyArray | None = None,
    num_probes: int = 1,
    probe: Probe = "rademacher",
    t0: float | int = 0.0,
    t1: float | int = 1.0,
    max_steps: int | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> Float[Array, " n"]:
    """Log-density at `t1` of the flow started from `N(0, I)` at `t0`, by the instantaneous change of variables.

    Solves the augmented ODE `(dx/dt, d log p_t(x_t)/dt) = (v, -div v)` backwards from `x` at `t1` to `t0`, so
    `log p_1(x) = log N(x_0; 0, I) - int_{t0}^{t1} div v dt`.

    Args:
        model: the velocity, called on one example as `model(x [dim], t, context [ctx] | None) -> [dim]`.
        x: points `[n, dim]` at `t1`.
        context: `None`, one context per example `[n, ctx]`, or one context `[ctx]` shared by the batch.
        solver: `"euler"`, `"heun"`, `"midpoint"`, `"tsit5"` or a `diffrax.AbstractSolver`.
        steps: number of equal steps. With neither `steps` nor tolerances: adaptive steps with
            `rtol = atol = 1e-5` for solvers with an error estimate, 100 fixed steps for Euler.
        rtol: relative tolerance of adaptive steps; `atol` defaults to it.
        atol: absolute tolerance of adaptive steps; `rtol` defaults to it.
        divergence: `"exact"` (a trace over `dim` Jacobian-vector products, for small `dim`) or `"hutchinson"`
            (the unbiased estimate `eps^T J eps`, averaged over `num_probes` probes drawn once per example).
        key: PRNG key for the Hutchinson probes.
        num_probes: Hutchinson probes per example.
        probe: `"rademacher"` (lower variance) or `"gaussian"` Hutchinson probes.
        t0: time of the `N(0, I)` base.
        t1: time of `x`.
        max_steps: the solver's step budget; defaults to `steps` for fixed steps, 4096 for adaptive ones.
        adjoint: how to differentiate through the solve; default `diffrax.RecursiveCheckpointAdjoint()`.

    Returns:
        `log p_{t1}(x)` per example, `[n]`.

    Raises:
        TypeError: a `key` that is not one PRNG key, points that are not a floating-point array, a step count
            that is not an int, a solver that is neither a name nor a `diffrax.AbstractSolver`.
        ValueError: `x` that is not `[n, dim]`, is empty (`[0, dim]`: an empty batch is refused, like `n=0` in
            `sample` and like `FlowModel.log_prob`), or holds NaN/inf (the first bad row is named); a non-positive
            step count; an unknown solver, divergence or probe; Hutchinson without a `key`; or a batch whose
            estimated memory exceeds the limit. All are raised before the ODE is solved.
    """
    _check_model(model)
    key = check_key(key, optional=True)
    solver = _resolve_solver(solver)
    t0, t1 = _resolve_times(t0, t1)
    _resolve_divergence(divergence, key, num_probes, probe)
    # Backwards in time: from the data at t1 to the noise at t0.
    stepping = _resolve_stepping(
        solver, steps, rtol, atol, max_steps, t1, t0, default_steps=_LIKELIHOOD_STEPS, default_tol=_LIKELIHOOD_TOL
    )
    x = _resolve_points(model, x, "x")
    context = _resolve_context(model, context, x.shape[0])
    check_memory(
        "log_prob",
        x.shape[0],
        solve_bytes_per_point(
            model, x.shape[1], solver, x.dtype.itemsize, tangents=x.shape[1] if divergence == "exact" else num_probes
        ),
        "evaluate x in slices of at most {chunk} rows, e.g. "
        "jnp.concatenate([log_prob(model, x[i:i + {chunk}], ...) for i in range(0, len(x), {chunk})])",
    )
    probes = None
    if divergence == "hutchinson":
        probes = _draw_probes(key, (x.shape[0], num_probes, x.shape[1]), probe, x.dtype)
    y1 = (x, jnp.zeros(x.shape[:1], x.dtype))
    saveat = diffrax.SaveAt(t1=True)
    args = (model, context, probes)
    x0, delta = _solve(_velocity_and_log_density, solver, stepping, t1, t0, y1, args, saveat, adjoint).ys
    # delta = log p_{t0}(x_{t0}) - log p_{t1}(x), integrated from a zero start at t1.
    return _standard_normal_log_density(x0[0]) - delta[0]


@typing.no_type_check
def sample_with_log_prob(
    model: VelocityModel,
    key: PRNGKeyArray | None,
    n_or_x0: int | ArrayLike,
    *,
    dim: int | None = None,
    context: ArrayLike | None = None,
    solver: SolverName | diffrax.AbstractSolver = "tsit5",
    steps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    divergence: Divergence = "exact",
    num_probes: int = 1,
    probe: Probe = "rademacher",
    t0: float | int = 0.0,
    t1: float | int = 1.0,
    max_steps: int | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
    """Sample and the log-density of each sample, in one forward solve of the augmented ODE `(x, log p_t(x_t))`.

    Starts from `x0 ~ N(0, I)` (or the given points) with `log p_{t0} = log N(x0; 0, I)` and integrates
    `d log p_t(x_t)/dt = -div v` along with `dx/dt = v`. The defaults favour the log-density's accuracy;
    `solver="euler", steps=10` gives the same points as `sample`'s defaults.

    Args:
        model: the velocity, called on one example as `model(x [dim], t, context [ctx] | None) -> [dim]`.
        key: PRNG key to draw `x0` and the Hutchinson probes; may be `None` with given points and exact divergence.
        n_or_x0: a batch size `n`, or the starting points `[n, dim]` at `t0`.
        dim: the data dimension when `n_or_x0` is an int; defaults to `model.dim`.
        context: `None`, one context per example `[n, ctx]`, or one context `[ctx]` shared by the batch.
        solver: `"euler"`, `"heun"`, `"midpoint"`, `"tsit5"` or a `diffrax.AbstractSolver`.
        steps: number of equal steps. With neither `steps` nor tolerances: adaptive steps with
            `rtol = atol = 1e-5` for solvers with an error estimate, 100 fixed steps for Euler.
        rtol: relative tolerance of adaptive steps; `atol` defaults to it.
        atol: absolute tolerance of adaptive steps; `rtol` defaults to it.
        divergence: `"exact"` or `"hutchinson"` (see `log_prob`).
        num_probes: Hutchinson probes per example.
        probe: `"rademacher"` or `"gaussian"` Hutchinson probes.
        t0: start time (noise at 0).
        t1: end time (data at 1).
        max_steps: the solver's step budget; defaults to `steps` for fixed steps, 4096 for adaptive ones.
        adjoint: how to differentiate through the solve; default `diffrax.RecursiveCheckpointAdjoint()`.

    Returns:
        The points at `t1`, `[n, dim]`, and their log-density `log p_{t1}`, `[n]`.

    Raises:
        TypeError: a `key` that is not one PRNG key, a step count that is not an int, a solver that is neither a
            name nor a `diffrax.AbstractSolver`.
        ValueError: as for `sample` (bad `n`, steps, solver, starting points, context, memory), and as for
            `log_prob` (divergence, probes, a missing key).
    """
    _check_model(model)
    key = check_key(key, optional=True)
    solver = _resolve_solver(solver)
    t0, t1 = _resolve_times(t0, t1)
    _resolve_divergence(divergence, key, num_probes, probe)
    stepping = _resolve_stepping(
        solver, steps, rtol, atol, max_steps, t0, t1, default_steps=_LIKELIHOOD_STEPS, default_tol=_LIKELIHOOD_TOL
    )
    n, dim, x0 = _resolve_start(model, key, n_or_x0, dim)
    context = _resolve_context(model, context, n)
    check_memory(
        "sample_with_log_prob",
        n,
        solve_bytes_per_point(
            model,
            dim,
            solver,
            (jax.dtypes.canonicalize_dtype(jnp.float64) if x0 is None else x0.dtype).itemsize,
            tangents=dim if divergence == "exact" else num_probes,
        ),
        "draw at most {chunk} points a call, e.g. one call per key of jax.random.split(key, {calls})",
    )
    if x0 is None:
        # Drawn from the key itself, as in `sample`, so that both start from the same points for the same key.
        x0 = jax.random.normal(key, (n, dim))
    probes = None
    if divergence == "hutchinson":
        probes = _draw_probes(jax.random.fold_in(key, 1), (n, num_probes, dim), probe, x0.dtype)
    y0 = (x0, _standard_normal_log_density(x0))
    saveat = diffrax.SaveAt(t1=True)
    x1, log_density = _solve(
        _velocity_and_log_density, solver, stepping, t0, t1, y0, (model, context, probes), saveat, adjoint
    ).ys
    return x1[0], log_density[0]

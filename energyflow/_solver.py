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
from numbers import Integral, Real
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._losses import VelocityModel
from ._validate import (
    check_finite_rows,
    check_key,
    check_memory,
    check_nonempty,
    describe,
    short_repr,
    solve_bytes_per_point,
)

# Names are annotated as plain `str` so that a wrong name meets the clear error below, not a type-checker's.
SolverName = str  # "euler", "heun", "midpoint" or "tsit5"
Divergence = str  # "exact" or "hutchinson"
Probe = str  # "rademacher" or "gaussian"

_SOLVERS = {"euler": diffrax.Euler, "heun": diffrax.Heun, "midpoint": diffrax.Midpoint, "tsit5": diffrax.Tsit5}
# Without steps or tolerances, likelihood solves are adaptive with this tolerance (fixed steps for Euler).
_LIKELIHOOD_TOL = 1e-5
_LIKELIHOOD_STEPS = 100
_SAMPLE_STEPS = 10
_ADAPTIVE_MAX_STEPS = 4096


# ---------------------------------------------------------------------------------------------------------------
# Validation at the boundary: plain Python on static values, before anything is traced or compiled.


class _Stepping(NamedTuple):
    """How to step an ODE: `steps` fixed steps (`dt0` set) or adaptive (`steps` None, a PID controller)."""

    dt0: float | None
    controller: diffrax.AbstractStepSizeController
    max_steps: int
    steps: int | None


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_positive_int(name: str, value) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive Python int, got {describe(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def _check_positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a positive float, got {describe(value)}")
    if not value > 0:
        raise ValueError(f"{name} must be a positive float, got {value}")
    return float(value)


def _resolve_solver(solver) -> diffrax.AbstractSolver:
    if isinstance(solver, diffrax.AbstractSolver):
        return solver
    if isinstance(solver, str):
        if solver.lower() in _SOLVERS:
            return _SOLVERS[solver.lower()]()
        raise ValueError(
            f"solver must be one of {sorted(_SOLVERS)} or a diffrax.AbstractSolver instance, got {describe(solver)}"
        )
    raise TypeError(
        f"solver must be a name among {sorted(_SOLVERS)} or a diffrax.AbstractSolver instance, "
        f"got {describe(solver)}"
    )


def _resolve_times(t0, t1) -> tuple[float, float]:
    for name, value in (("t0", t0), ("t1", t1)):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{name} must be a Python float, got {describe(value)}")
    if t0 == t1:
        raise ValueError(f"t0 and t1 must differ, got t0 = t1 = {t0}")
    return float(t0), float(t1)


def _resolve_stepping(
    solver: diffrax.AbstractSolver,
    steps,
    rtol,
    atol,
    max_steps,
    t0: float,
    t1: float,
    *,
    default_steps: int,
    default_tol: float | None,
) -> _Stepping:
    """Fixed steps or adaptive tolerances, from what the caller gave and the defaults of the function called."""
    adaptive_solver = isinstance(solver, diffrax.AbstractAdaptiveSolver)
    if steps is not None and (rtol is not None or atol is not None):
        raise ValueError(
            "give either steps= (fixed steps) or rtol=/atol= (adaptive steps), not both; "
            f"got steps={short_repr(steps)}, rtol={short_repr(rtol)}, atol={short_repr(atol)}"
        )
    if steps is None and rtol is None and atol is None and default_tol is not None and adaptive_solver:
        rtol = atol = default_tol
    if rtol is not None or atol is not None:
        if not adaptive_solver:
            raise ValueError(
                f"adaptive steps (rtol/atol) need a solver with an error estimate ('heun', 'midpoint', 'tsit5'), "
                f"got {type(solver).__name__}; give steps= for fixed steps instead"
            )
        rtol = _check_positive_float("rtol", atol if rtol is None else rtol)
        atol = _check_positive_float("atol", rtol if atol is None else atol)
        max_steps = _ADAPTIVE_MAX_STEPS if max_steps is None else _check_positive_int("max_steps", max_steps)
        return _Stepping(None, diffrax.PIDController(rtol=rtol, atol=atol), max_steps, None)
    steps = default_steps if steps is None else _check_positive_int("steps", steps)
    if max_steps is None:
        max_steps = steps
    elif _check_positive_int("max_steps", max_steps) < steps:
        raise ValueError(f"max_steps must be at least steps={steps} for a fixed-step solve, got {max_steps}")
    return _Stepping((t1 - t0) / steps, diffrax.ConstantStepSize(), int(max_steps), steps)


def _model_int(model, name: str) -> int | None:
    value = getattr(model, name, None)
    return int(value) if _is_int(value) else None


def _resolve_points(model, points, name: str) -> Array:
    """Check points `[n, dim]`: non-empty, floating point, finite, matching `model.dim` when the model has one."""
    if isinstance(points, bool) or not hasattr(points, "shape") and not isinstance(points, (list, tuple)):
        raise TypeError(f"{name} must be an array [n, dim], got {describe(points)}")
    try:
        points = jnp.asarray(points)
    except Exception:  # ragged lists, strings, objects
        raise TypeError(f"{name} must be an array [n, dim] of floats, got {describe(points)}") from None
    if points.ndim != 2:
        raise ValueError(f"{name} must be an array [n, dim], got shape {points.shape}")
    if not jnp.issubdtype(points.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {points.dtype}")
    check_nonempty(points.shape, name)
    check_finite_rows(points, name)
    model_dim = _model_int(model, "dim")
    if model_dim is not None and points.shape[1] != model_dim:
        raise ValueError(f"{name} of shape {points.shape} does not match the model's dim: expected [n, {model_dim}]")
    return points


def _resolve_start(model, key, n_or_x0, dim) -> tuple[int, int, Array | None]:
    """`(n, dim, x0)` from a batch size (x0 `None`, drawn later) or from given starting points."""
    if not _is_int(n_or_x0) and (
        isinstance(n_or_x0, bool) or not hasattr(n_or_x0, "shape") and not isinstance(n_or_x0, (list, tuple))
    ):
        raise TypeError(
            f"n_or_x0 must be a batch size (a positive int) or starting points [n, dim], got {describe(n_or_x0)}"
        )
    if not _is_int(n_or_x0):
        x0 = _resolve_points(model, n_or_x0, "n_or_x0 (starting points)")
        if dim is not None and x0.shape[1] != dim:
            raise ValueError(f"starting points of shape {x0.shape} do not match dim={dim}: expected [n, {dim}]")
        return x0.shape[0], x0.shape[1], x0
    n = _check_positive_int("n", n_or_x0)
    model_dim = _model_int(model, "dim")
    if dim is None:
        if model_dim is None:
            raise ValueError(
                f"n_or_x0={n} is a batch size, so dim= is needed (the model has no int `.dim`); got dim=None"
            )
        dim = model_dim
    dim = _check_positive_int("dim", dim)
    if model_dim is not None and dim != model_dim:
        raise ValueError(f"dim={dim} does not match the model's dim={model_dim}")
    if key is None:
        raise ValueError(f"n_or_x0={n} is a batch size, so a PRNG key is needed to draw x0 ~ N(0, I); got key=None")
    return n, dim, None


def _resolve_context(model, context, n: int) -> Array | None:
    """`None`, one context `[ctx]` shared by the batch, or one per example `[n, ctx]`."""
    context_dim = _model_int(model, "context_dim")
    if context is None:
        if context_dim:
            raise ValueError(f"the model expects a context of size {context_dim} ([n, {context_dim}]), got None")
        return None
    try:
        context = jnp.asarray(context)
    except Exception:
        raise TypeError(f"context must be an array [n, ctx] or [ctx] of floats, got {describe(context)}") from None
    if context.ndim not in (1, 2):
        raise ValueError(f"context must be [n, ctx] (one per example) or [ctx] (shared), got shape {context.shape}")
    if context.ndim == 2 and context.shape[0] != n:
        raise ValueError(
            f"context has {context.shape[0]} rows (shape {context.shape}) but the batch has n={n} examples"
        )
    if context_dim is not None and context.shape[-1] != context_dim:
        raise ValueError(
            f"the model expects contexts of size {context_dim}, got context of shape {context.shape}"
            + (" (the model takes no context; pass context=None)" if context_dim == 0 else "")
        )
    check_finite_rows(context, "context")
    return context


def _check_model(model) -> None:
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t, context), got {type(model).__name__}")


def _resolve_divergence(divergence, key, num_probes, probe) -> None:
    if not isinstance(divergence, str) or divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {describe(divergence)}")
    if divergence == "hutchinson":
        _check_positive_int("num_probes", num_probes)
        if not isinstance(probe, str) or probe not in ("rademacher", "gaussian"):
            raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {describe(probe)}")
        if key is None:
            raise ValueError("divergence='hutchinson' draws random probes, so a PRNG key is needed; got key=None")


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

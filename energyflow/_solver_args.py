"""Checking and resolving the arguments of the samplers in `energyflow._solver`: solver names, stepping, times,
start points, contexts, divergence estimators; each bad argument a one-line error before anything is compiled."""

from numbers import Integral, Real
from typing import NamedTuple

import diffrax
import jax.numpy as jnp
from jaxtyping import Array

from ._validate import check_finite_rows, check_nonempty, describe, short_repr

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

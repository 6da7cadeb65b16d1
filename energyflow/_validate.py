"""Checks at the public boundary: say what was expected and what arrived, before anything is compiled."""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _describe(x) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None:
        return f"{type(x).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}"[:200]


def check_data(data, name: str = "data") -> jax.Array:
    """A finite, non-empty `[n, d]` float array; returned as a float32 JAX array."""
    try:
        arr = np.asarray(data)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of shape [n, d], got {_describe(data)}") from err
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape [n, d] (one point per row), got {_describe(arr)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of dimension >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite, but {len(rows)} of its {arr.shape[0]} rows hold NaN or inf (first: row {rows[0]})"
        )
    return jnp.asarray(arr, dtype=jnp.float32)


def check_context(context, n: int, name: str = "context") -> jax.Array | None:
    """`None`, or a finite `[n, c]` array whose length matches the data."""
    if context is None:
        return None
    ctx = check_data(context, name)
    if ctx.shape[0] != n:
        raise ValueError(f"{name} must have one row per data point ({n} rows), got {ctx.shape[0]} rows")
    return ctx


def check_beta(beta) -> float:
    """A finite, non-negative inverse temperature."""
    try:
        value = float(beta)
    except (TypeError, ValueError) as err:
        raise TypeError(f"beta must be a non-negative number, got {_describe(beta)}") from err
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {value}")
    return value


def check_positive_int(value, name: str) -> int:
    """A positive Python integer (step counts, batch sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {_describe(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_energy(energy: object, points: jax.Array, context: jax.Array | None = None) -> None:
    """Call `energy` on a few points: it must map one point to one finite scalar."""
    if not callable(energy):
        raise TypeError(f"energy must be a function of one point, E(x) -> scalar, got {_describe(energy)}")
    x = points[0]
    try:
        value = energy(x) if context is None else energy(x, context[0])
    except Exception as err:
        sig = "E(x)" if context is None else "E(x, context)"
        raise TypeError(f"calling the energy as {sig} on one point of shape {tuple(x.shape)} failed: {err}") from err
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(
            f"energy must return a scalar for one point of shape {tuple(x.shape)}, got shape {tuple(value.shape)} "
            "(write it for a single point; it is vectorised inside)"
        )
    some = points[:16]
    if context is None:
        values = jax.vmap(energy)(some)
    else:
        values = jax.vmap(energy)(some, context[:16])
    if not bool(jnp.all(jnp.isfinite(values))):
        raise ValueError(f"energy returned NaN or inf on the data: {np.asarray(values)[:8]}")

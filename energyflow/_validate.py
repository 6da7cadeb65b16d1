"""Checks at the public boundary: say what was expected and what arrived, before anything is compiled.

Every check raises a `TypeError` (wrong kind of thing) or a `ValueError` (right kind, bad value) whose message is
one line naming the argument, what it must be, and what arrived. Checks on values (finiteness) only run on concrete
arrays; under `jax.jit` or `jax.vmap` only shapes and dtypes are checked, since the values are not known yet.
"""

import functools
import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

MAX_BYTES_ENV = "ENERGYFLOW_MAX_BYTES"
"""Environment variable overriding the memory limit of one solve, in bytes (`inf` turns the check off)."""

ENERGY_CHUNK = 262_144
"""`fit` evaluates the energy on the data in slices of at most this many rows."""


# ---------------------------------------------------------------------------------------------------------------
# Describing what arrived, on one line.


def describe(value) -> str:
    """A short, one-line description of `value` for error messages."""
    if value is None:
        return "None"
    if isinstance(value, (str, bytes, bool, int, float, complex)):
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        return f"{text} ({type(value).__name__})"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        if _is_key_dtype(dtype):
            return f"an array of PRNG keys of shape {tuple(shape)}"
        return f"an array of shape {tuple(shape)} and dtype {dtype}"
    text = " ".join(repr(value).split())
    if len(text) > 60:
        text = text[:57] + "..."
    return f"a {type(value).__name__} ({text})"


def short_repr(value) -> str:
    """`repr(value)` on one line, cut to 60 characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, with its type."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _format_row(row) -> str:
    return np.array2string(np.asarray(row), precision=4, threshold=8, max_line_width=10**6).replace("\n", " ")


def is_traced(x) -> bool:
    """Whether `x` is an abstract value inside `jax.jit`/`jax.vmap`/`jax.grad` (its values are not known)."""
    return isinstance(x, jax.core.Tracer)


# ---------------------------------------------------------------------------------------------------------------
# PRNG keys.


def _is_key_dtype(dtype) -> bool:
    try:
        return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    except TypeError:
        return False


@functools.cache
def _legacy_key_shape(impl: str) -> tuple[int, ...]:
    del impl  # only the cache key: the shape follows jax's default PRNG implementation
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def check_key(key, name: str = "key", *, optional: bool = False):
    """One JAX PRNG key: a typed key (`jax.random.key(seed)`) or a legacy `uint32[2]` (`jax.random.PRNGKey(seed)`).

    Only the shape and dtype are checked, so keys inside `jax.jit` and `jax.vmap` pass. With `optional`, `None`
    is returned as is.
    """
    expected = f"{name} must be one JAX PRNG key, jax.random.key(seed) (or a legacy jax.random.PRNGKey(seed))"
    if key is None:
        if optional:
            return None
        raise TypeError(f"{expected}, got None")
    shape, dtype = getattr(key, "shape", None), getattr(key, "dtype", None)
    if shape is None or dtype is None:
        hint = f"; for a seed write jax.random.key({key})" if isinstance(key, int) and not isinstance(key, bool) else ""
        raise TypeError(f"{expected}, got {describe(key)}{hint}")
    if _is_key_dtype(dtype):
        if tuple(shape) != ():
            raise ValueError(f"{expected}, got a batch of keys of shape {tuple(shape)}; pass one of them")
        return key
    legacy = _legacy_key_shape(str(jax.config.jax_default_prng_impl))
    if np.dtype(dtype) != np.uint32:
        raise TypeError(f"{expected}, got {describe(key)}; a legacy key is uint32 of shape {legacy}")
    if tuple(shape) != legacy:
        raise ValueError(f"{expected}, got {describe(key)}; a legacy key is uint32 of shape {legacy}")
    return key


# ---------------------------------------------------------------------------------------------------------------
# Arrays of points.


def check_finite_rows(arr, name: str) -> None:
    """Reject NaN or inf in a concrete `[n, ...]` array, naming the first bad row (skipped while tracing)."""
    if is_traced(arr):
        return
    values = jnp.asarray(arr)
    if not jnp.issubdtype(values.dtype, jnp.inexact) or values.size == 0:
        return
    finite = jnp.isfinite(values)
    if bool(jnp.all(finite)):
        return
    bad_rows = ~jnp.all(finite.reshape(finite.shape[0], -1), axis=1) if values.ndim > 1 else ~finite
    first = int(jnp.argmax(bad_rows))
    count = int(jnp.sum(bad_rows))
    raise ValueError(
        f"{name} must be finite, but row {first} holds NaN or inf: {_format_row(values[first])} "
        f"({count} of {values.shape[0]} rows are not finite)"
    )


def check_nonempty(shape, name: str) -> None:
    """At least one point of dimension at least 1: an empty batch is refused everywhere, like `n=0`."""
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of dimension >= 1, got shape {tuple(shape)}")


def check_data(data, name: str = "data") -> jax.Array:
    """A finite, non-empty `[n, d]` array of real numbers; returned as a float32 JAX array."""
    if is_traced(data):  # inside jit/vmap: shapes and dtypes only
        arr = data
    elif not hasattr(data, "shape") and not isinstance(data, (list, tuple)):
        raise TypeError(f"{name} must be an array of shape [n, d], got {describe(data)}")
    else:
        try:
            arr = np.asarray(data)
        except Exception:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of shape [n, d], got {describe(data)}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape [n, d] (one point per row), got {describe(arr)}")
    check_nonempty(arr.shape, name)
    if (
        not np.issubdtype(arr.dtype, np.number)
        or np.issubdtype(arr.dtype, np.complexfloating)
        or _is_key_dtype(arr.dtype)
    ):
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    check_finite_rows(arr, name)
    return jnp.asarray(arr, dtype=jnp.float32)


def check_context(context, n: int, name: str = "context") -> jax.Array | None:
    """`None`, or a finite `[n, c]` array whose length matches the data."""
    if context is None:
        return None
    ctx = check_data(context, name)
    if ctx.shape[0] != n:
        raise ValueError(f"{name} must have one row per data point ({n} rows), got {ctx.shape[0]} rows")
    return ctx


# ---------------------------------------------------------------------------------------------------------------
# Numbers.


def check_beta(beta) -> float:
    """A finite, non-negative inverse temperature."""
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a non-negative number, got {describe(beta)}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {value}")
    return value


def check_positive_int(value, name: str) -> int:
    """A positive Python integer (step counts, batch sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {describe(value)}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


# ---------------------------------------------------------------------------------------------------------------
# The energy.


def check_energy(energy: object, points: jax.Array, context: jax.Array | None = None) -> jax.Array:
    """Evaluate `energy` on every point, vectorised: it must map one point to one finite real scalar.

    Returns the energies `[n]` (one `jax.vmap` over the data, in slices of `ENERGY_CHUNK` rows when it is larger),
    so that the caller need not evaluate them again.
    """
    sig = "E(x)" if context is None else "E(x, context)"
    if not callable(energy):
        raise TypeError(f"energy must be a function of one point, {sig} -> scalar, got {describe(energy)}")
    x = points[0]
    try:
        value = energy(x) if context is None else energy(x, context[0])
        value = jnp.asarray(value)
    except Exception as err:
        raise TypeError(
            f"calling the energy as {sig} on one point of shape {tuple(x.shape)} failed with {first_line(err)}"
        ) from err
    if value.shape != ():
        raise ValueError(
            f"energy must return a scalar for one point of shape {tuple(x.shape)}, got shape {tuple(value.shape)} "
            "(write it for a single point; it is vectorised inside)"
        )
    if not jnp.issubdtype(value.dtype, jnp.integer) and not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"energy must return a real number, got dtype {value.dtype}")

    n = points.shape[0]
    batched = jax.vmap(energy)
    try:
        if n <= ENERGY_CHUNK:
            values = batched(points) if context is None else batched(points, context)
        else:
            values = jnp.concatenate(
                [
                    batched(points[i : i + ENERGY_CHUNK])
                    if context is None
                    else batched(points[i : i + ENERGY_CHUNK], context[i : i + ENERGY_CHUNK])
                    for i in range(0, n, ENERGY_CHUNK)
                ]
            )
    except Exception as err:
        raise TypeError(
            f"the energy works on one point but failed under jax.vmap over the data, with {first_line(err)} "
            "(write it with jax.numpy operations and no Python branching on values)"
        ) from err
    values = jnp.reshape(values, (n,))
    finite = jnp.isfinite(values)
    if not bool(jnp.all(finite)):
        first = int(jnp.argmax(~finite))
        count = int(jnp.sum(~finite))
        raise ValueError(
            f"energy must be finite at every data point, but it is {float(values[first])} at row {first} "
            f"(x = {_format_row(points[first])}; {count} of {n} rows give NaN or inf)"
        )
    return values


# ---------------------------------------------------------------------------------------------------------------
# Memory of one solve.

# Stages a solver step keeps alive (vector-field evaluations of the state size).
_SOLVER_STAGES = {"Euler": 1, "Heun": 2, "Midpoint": 2, "Ralston": 2, "Bosh3": 4, "Tsit5": 7, "Dopri5": 7, "Dopri8": 14}


def _network_width(model) -> tuple[int, int]:
    """(widest layer, number of layers) over the model's `eqx.nn.Linear` layers; (0, 0) when it has none."""
    layers = jax.tree_util.tree_leaves(model, is_leaf=lambda m: isinstance(m, eqx.nn.Linear))
    widths = [m.out_features for m in layers if isinstance(m, eqx.nn.Linear) and isinstance(m.out_features, int)]
    return max(widths, default=0), len(widths)


def solve_bytes_per_point(model, dim: int, solver, itemsize: int, *, saved: int = 0, tangents: int = 0) -> int:
    """A rough estimate of the memory one point costs in one batched solve.

    The ODE state and the solver's stages (`(stages + 4) * dim` numbers), the saved trajectory (`saved * dim`),
    two activations of the model's widest `eqx.nn.Linear` layer, and for likelihoods (`tangents` > 0: `dim` for
    the exact divergence, the number of probes for Hutchinson's) the linearised network: one activation per layer
    plus `tangents` tangents of the state and of the widest layer. Measured within ~10% for `MLPVelocity` on CPU.
    """
    stages = _SOLVER_STAGES.get(type(solver).__name__, 7)
    width, layers = _network_width(model)
    numbers = (stages + 4) * (dim + (1 if tangents else 0)) + saved * dim + 2 * width
    if tangents:
        numbers += tangents * (dim + width) + layers * width
    return int(itemsize * numbers)


@functools.cache
def _device_memory_limit() -> tuple[float, str]:
    device = jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:
        stats = None
    if stats and stats.get("bytes_limit"):
        return float(stats["bytes_limit"]), f"the memory of the {device.platform} device"
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return math.inf, "no limit known"
    return 0.75 * ram, "75% of this machine's RAM"


def memory_limit() -> tuple[float, str]:
    """The most bytes one solve may need, and where that limit comes from."""
    env = os.environ.get(MAX_BYTES_ENV)
    if env is None or not env.strip():
        return _device_memory_limit()
    try:
        value = float(env)
    except ValueError:
        raise ValueError(f"{MAX_BYTES_ENV} must be a number of bytes (or 'inf'), got {env!r}") from None
    if not value > 0:
        raise ValueError(f"{MAX_BYTES_ENV} must be a positive number of bytes (or 'inf'), got {env!r}")
    return value, f"{MAX_BYTES_ENV}={env}"


def _bytes(value: float | int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{value:.3g} PB"


def check_memory(what: str, n: int, per_point: int, how_to_chunk: str) -> None:
    """Refuse a batched solve whose estimated memory `n * per_point` exceeds `memory_limit()`.

    `how_to_chunk` is formatted with `chunk` (the most points per call that fit) and `calls` (how many calls).
    """
    estimate = n * per_point
    limit, source = memory_limit()
    if estimate <= limit:
        return
    chunk = max(1, int(limit // max(per_point, 1)))
    calls = -(-n // chunk)
    raise ValueError(
        f"{what} of n={n:,} points needs about {_bytes(estimate)} ({per_point:,} bytes a point), more than the "
        f"limit of {_bytes(limit)} ({source}; set {MAX_BYTES_ENV} to change it); "
        + how_to_chunk.format(chunk=f"{chunk:,}".replace(",", "_"), calls=calls)
    )


# ---------------------------------------------------------------------------------------------------------------
# Samplers of toy targets.


def checked_sampler(method):
    """Wrap a sampler `method(self, key, n, ...)` so that it checks its key and `n` before drawing anything."""
    if getattr(method, "_checks_key_and_n", False):
        return method

    @functools.wraps(method)
    def sampler(self, key, n, *args, **kwargs):
        key = check_key(key)
        n = check_positive_int(n, "n")
        return method(self, key, n, *args, **kwargs)

    sampler._checks_key_and_n = True
    return sampler

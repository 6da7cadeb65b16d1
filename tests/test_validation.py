"""Bad input at energyflow's public boundary: a one-line error of the library's own, before any compilation.

One test per case (PRNG keys, the energy on every data point, step counts, non-finite and empty inputs, memory-sized
requests), then property-based tests that feed malformed inputs to every public function and check that the error
is a `ValueError`/`TypeError` raised by an energyflow module, on one line, naming the argument and what it must be.

Models that fail when called make sure that nothing is traced or compiled before the error; the few calls that do
run use tiny networks.
"""

import os
import re
import traceback

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import energyflow as ef
from energyflow import _validate, toys

PACKAGE_DIR = os.path.dirname(os.path.abspath(ef.__file__))
KEY = jax.random.key(0)


class Untraceable(eqx.Module):
    """A velocity that fails if called: any error must come from validation, before tracing."""

    dim: int = eqx.field(static=True, default=2)
    context_dim: int = eqx.field(static=True, default=0)

    def __call__(self, x, t, context):
        raise AssertionError("the model was called before the input was validated")


def untouchable_energy(x):
    raise AssertionError("the energy was called before the other arguments were validated")


def flow_model(velocity) -> ef.FlowModel:
    return ef.FlowModel(
        velocity=velocity, shift=jnp.zeros(2), scale=jnp.ones(2), loss_history=jnp.zeros(1), method="plain"
    )


UNTRACEABLE = Untraceable()
UNTRACEABLE_FLOW = flow_model(UNTRACEABLE)
GOOD = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)


def assert_own_error(excinfo, *names: str) -> str:
    """A ValueError/TypeError raised in energyflow, one line, naming one of `names` and what was expected."""
    err = excinfo.value
    assert type(err) in (ValueError, TypeError), f"{type(err).__name__}: {err}"
    frames = traceback.extract_tb(err.__traceback__)
    assert os.path.dirname(os.path.abspath(frames[-1].filename)).startswith(PACKAGE_DIR), frames[-1]
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), "a chained traceback"
    message = str(err)
    assert message and "\n" not in message and len(message) < 600, message
    assert re.search(r"\b(must|expected|expects|needs?|needed)\b", message), message
    assert any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message) for name in names), (names, message)
    return message


# ---------------------------------------------------------------------------------------------------------------
# PRNG keys.

KEY_MESSAGE = "key must be one JAX PRNG key, jax.random.key(seed) (or a legacy jax.random.PRNGKey(seed)), got "


@pytest.mark.parametrize(
    "key, error, got",
    [
        (0, TypeError, "0 (int); for a seed write jax.random.key(0)"),
        (None, TypeError, "None"),
        (jnp.zeros(2), TypeError, "an array of shape (2,) and dtype float32; a legacy key is uint32 of shape (2,)"),
        (np.zeros(3, np.uint32), ValueError, "an array of shape (3,) and dtype uint32"),
        (jax.random.split(KEY, 3), ValueError, "a batch of keys of shape (3,); pass one of them"),
    ],
)
def test_fit_checks_the_key_before_running_the_energy(key, error, got):
    with pytest.raises(error) as excinfo:
        ef.fit(GOOD, untouchable_energy, beta=1.0, key=key, progress=False)
    assert assert_own_error(excinfo, "key").startswith(KEY_MESSAGE + got)


KEY_CALLS = {
    "sample": lambda k: ef.sample(UNTRACEABLE, k, 4),
    "sample x0": lambda k: ef.sample(UNTRACEABLE, k, jnp.zeros((4, 2))),
    "log_prob hutchinson": lambda k: ef.log_prob(UNTRACEABLE, jnp.zeros((4, 2)), divergence="hutchinson", key=k),
    "sample_with_log_prob": lambda k: ef.sample_with_log_prob(UNTRACEABLE, k, 4),
    "FlowModel.sample": lambda k: UNTRACEABLE_FLOW.sample(k, 4),
    "FlowModel.sample_with_log_prob": lambda k: UNTRACEABLE_FLOW.sample_with_log_prob(k, 4),
    "toys sample": lambda k: toys.Moons().sample(k, 4),
    "toys sample_target": lambda k: toys.get_target("mixture").sample_target(k, 4, 1.0),
    "toys base sample_target": lambda k: toys.Checkerboard().sample_target(k, 4, 1.0),
    "fit": lambda k: ef.fit(GOOD, untouchable_energy, beta=1.0, key=k, progress=False),
}


@pytest.mark.parametrize("call", KEY_CALLS.values(), ids=KEY_CALLS.keys())
@pytest.mark.parametrize("key", [0, 1.5, "seed", jnp.zeros(2, jnp.int32), jax.random.split(KEY, 2)])
def test_every_sampler_checks_its_key(call, key):
    with pytest.raises((TypeError, ValueError)) as excinfo:
        call(key)
    assert assert_own_error(excinfo, "key").startswith(KEY_MESSAGE)


def test_legacy_and_typed_keys_are_both_accepted():
    legacy = jax.random.PRNGKey(3)
    assert _validate.check_key(legacy) is legacy
    assert _validate.check_key(np.asarray(legacy)) is not None  # a numpy copy of a legacy key
    assert _validate.check_key(KEY) is KEY
    assert _validate.check_key(None, optional=True) is None
    typed = jax.random.wrap_key_data(legacy)
    np.testing.assert_array_equal(toys.Moons().sample(legacy, 3), toys.Moons().sample(typed, 3))
    # Inside jit and vmap only shapes and dtypes are checked, so traced keys pass.
    velocity = ef.MLPVelocity(2, width=8, depth=1, key=KEY)
    batched = jax.vmap(lambda k: ef.sample(velocity, k, 3, steps=2))(jax.random.split(legacy, 2))
    assert batched.shape == (2, 3, 2)
    model = ef.fit(
        GOOD, lambda x: x[0], beta=1.0, key=legacy, steps=2, batch_size=8, width=8, depth=1, log_every=2,
        progress=False,
    )
    assert model.loss_history.shape == (2,)


# ---------------------------------------------------------------------------------------------------------------
# The energy, on every data point.


def energy_nan_at_row_100(x):
    # GOOD-like data is finite everywhere; a sentinel coordinate marks row 100.
    return jnp.where(x[0] > 1e3, jnp.nan, x[0])


def data_with_sentinel(n, row):
    data = np.random.default_rng(1).normal(size=(n, 2)).astype(np.float32)
    data[row, 0] = 1e4
    return data


def test_fit_checks_the_energy_on_every_data_point():
    with pytest.raises(ValueError) as excinfo:
        ef.fit(data_with_sentinel(200, 100), energy_nan_at_row_100, beta=1.0, key=KEY, progress=False)
    message = assert_own_error(excinfo, "energy")
    assert message.startswith("energy must be finite at every data point, but it is nan at row 100 (x = [1.0000e+04 ")
    assert message.endswith("1 of 200 rows give NaN or inf)")


def test_energy_check_is_chunked_and_returns_the_energies(monkeypatch):
    monkeypatch.setattr(_validate, "ENERGY_CHUNK", 64)
    with pytest.raises(ValueError, match=r"it is nan at row 250 .*1 of 300 rows"):
        _validate.check_energy(energy_nan_at_row_100, jnp.asarray(data_with_sentinel(300, 250)))
    points = jnp.asarray(GOOD)
    np.testing.assert_array_equal(_validate.check_energy(lambda x: jnp.sum(x**2), points), jnp.sum(GOOD**2, axis=1))
    monkeypatch.setattr(_validate, "ENERGY_CHUNK", 10)
    np.testing.assert_array_equal(_validate.check_energy(lambda x: jnp.sum(x**2), points), jnp.sum(GOOD**2, axis=1))


def test_energy_that_only_works_on_one_point_is_a_clear_error():
    def branching(x):
        return x[0] if x[0] > 0 else -x[0]  # Python branching on a value: fails under vmap

    with pytest.raises(TypeError) as excinfo:
        ef.fit(GOOD, branching, beta=1.0, key=KEY, progress=False)
    message = str(excinfo.value)
    assert message.startswith("the energy works on one point but failed under jax.vmap over the data, with ")
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------------------------
# Step counts.


@pytest.mark.parametrize(
    "steps, error, message",
    [
        (0, ValueError, "steps must be a positive integer, got 0"),
        (-2, ValueError, "steps must be a positive integer, got -2"),
        (2.0, TypeError, "steps must be a positive integer, got 2.0 (float)"),
        (True, TypeError, "steps must be a positive integer, got True (bool)"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: UNTRACEABLE_FLOW.sample(KEY, 4, steps=s),
        lambda s: UNTRACEABLE_FLOW.log_prob(GOOD[:4], steps=s),
        lambda s: UNTRACEABLE_FLOW.sample_with_log_prob(KEY, 4, steps=s),
    ],
    ids=["sample", "log_prob", "sample_with_log_prob"],
)
def test_flow_model_checks_step_counts(call, steps, error, message):
    with pytest.raises(error) as excinfo:
        call(steps)
    assert assert_own_error(excinfo, "steps") == message


def test_flow_model_honours_the_steps_it_is_given():
    velocity = ef.MLPVelocity(2, width=8, depth=1, key=KEY)
    model = flow_model(velocity)
    np.testing.assert_array_equal(
        model.sample(KEY, 4, steps=3), ef.sample(velocity, KEY, 4, solver="midpoint", steps=3)
    )


# ---------------------------------------------------------------------------------------------------------------
# Non-finite and empty inputs.


def test_log_prob_rejects_non_finite_points_naming_the_first_row():
    x = np.zeros((5, 2), np.float32)
    x[3, 1], x[4, 0] = np.nan, np.inf
    with pytest.raises(ValueError) as excinfo:
        ef.log_prob(UNTRACEABLE, x)
    message = assert_own_error(excinfo, "x")
    assert message == "x must be finite, but row 3 holds NaN or inf: [ 0. nan] (2 of 5 rows are not finite)"
    with pytest.raises(ValueError, match=r"^x must be finite, but row 3 holds NaN or inf"):
        UNTRACEABLE_FLOW.log_prob(x)
    with pytest.raises(ValueError, match=r"^n_or_x0 \(starting points\) must be finite, but row 3"):
        ef.sample(UNTRACEABLE, None, jnp.asarray(x))


def test_context_must_be_finite():
    conditional = Untraceable(context_dim=1)
    context = jnp.zeros((4, 1)).at[2, 0].set(jnp.inf)
    with pytest.raises(ValueError) as excinfo:
        ef.sample(conditional, KEY, 4, context=context)
    assert assert_own_error(excinfo, "context").startswith("context must be finite, but row 2 holds NaN or inf: [inf]")


EMPTY_MESSAGE = "x must hold at least one point of dimension >= 1, got shape (0, 2)"


def test_an_empty_batch_is_refused_by_both_log_probs_alike():
    with pytest.raises(ValueError) as excinfo:
        ef.log_prob(UNTRACEABLE, jnp.zeros((0, 2)))
    assert assert_own_error(excinfo, "x") == EMPTY_MESSAGE
    with pytest.raises(ValueError) as excinfo:
        UNTRACEABLE_FLOW.log_prob(np.zeros((0, 2)))
    assert assert_own_error(excinfo, "x") == EMPTY_MESSAGE
    with pytest.raises(ValueError, match=r"at least one point .* got shape \(0, 2\)"):
        ef.sample_with_log_prob(UNTRACEABLE, None, jnp.zeros((0, 2)))


# ---------------------------------------------------------------------------------------------------------------
# Memory-sized requests.


def test_a_billion_samples_are_refused_with_the_estimate():
    model = ef.MLPVelocity(2, key=KEY)  # width 256: about 2 kB a point
    for call in (
        lambda: ef.sample(model, KEY, 10**9),
        lambda: flow_model(model).sample(KEY, 10**9),
        lambda: jax.jit(lambda k: ef.sample(model, k, 10**9))(KEY),  # checked while tracing, before compiling
    ):
        with pytest.raises(ValueError) as excinfo:
            call()
        message = assert_own_error(excinfo, "sample")
        assert re.match(r"sample of n=1,000,000,000 points needs about 2\.\d+ TB \(2,\d{3} bytes a point\)", message)
        assert "set ENERGYFLOW_MAX_BYTES to change it" in message
        chunking = r"draw at most [\d_]+ points a call, e.g. jnp.concatenate\(\[sample\(model, k, [\d_]+"
        assert re.search(chunking, message), message


def test_memory_limit_can_be_set_and_requests_under_it_run(monkeypatch):
    model = ef.MLPVelocity(2, width=8, depth=1, key=KEY)
    x = jnp.zeros((100, 2))
    monkeypatch.setenv(_validate.MAX_BYTES_ENV, "10000")
    with pytest.raises(ValueError) as excinfo:
        ef.log_prob(model, x, solver="euler", steps=2)
    message = assert_own_error(excinfo, "log_prob")
    assert message.startswith("log_prob of n=100 points needs about ")
    assert "ENERGYFLOW_MAX_BYTES=10000" in message and "evaluate x in slices of at most" in message
    monkeypatch.setenv(_validate.MAX_BYTES_ENV, "inf")
    assert ef.log_prob(model, x, solver="euler", steps=2).shape == (100,)
    monkeypatch.setenv(_validate.MAX_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=r"^ENERGYFLOW_MAX_BYTES must be a number of bytes \(or 'inf'\), got 'lots'$"):
        ef.sample(model, KEY, 4)


def test_memory_estimate_follows_the_work():
    model = ef.MLPVelocity(2, width=64, depth=2, key=KEY)
    euler, tsit5 = ef._solver._resolve_solver("euler"), ef._solver._resolve_solver("tsit5")
    plain = _validate.solve_bytes_per_point(model, 2, euler, 4)
    assert plain == 4 * ((1 + 4) * 2 + 2 * 64)
    assert _validate.solve_bytes_per_point(model, 2, tsit5, 4) > plain
    assert _validate.solve_bytes_per_point(model, 2, euler, 4, saved=11) == plain + 4 * 11 * 2
    assert _validate.solve_bytes_per_point(model, 2, euler, 4, tangents=2) > 3 * plain
    assert _validate.solve_bytes_per_point(lambda x, t, c: x, 2, euler, 4) == 4 * 5 * 2  # no layers known


# ---------------------------------------------------------------------------------------------------------------
# Property-based: malformed inputs to every public function.

PROPERTY = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

bad_keys = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.lists(st.integers(0, 2**32 - 1), max_size=3),
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_, np.complex64]),
        hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
    ),
    hnp.arrays(np.uint32, st.sampled_from([(), (1,), (3,), (4,), (2, 2), (0,)])),
    st.integers(1, 3).map(lambda k: jax.random.split(jax.random.key(0), k)),
)


def bad_counts(allow_none: bool):
    values = st.one_of(
        st.integers(max_value=0),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.text(max_size=3),
        hnp.arrays(np.int64, (1,)),
        st.just([3]),
    )
    return st.one_of(values, st.none()) if allow_none else values


@st.composite
def bad_points(draw, dtype_strict: bool):
    """Malformed `[n, 2]` inputs: NaN/inf, wrong ranks, empty, wrong dtypes, wrong widths, not arrays at all."""
    kind = draw(st.sampled_from(["non-finite", "rank", "empty", "dtype", "width", "not an array"]))
    if kind == "non-finite":
        n = draw(st.integers(1, 6))
        x = draw(hnp.arrays(np.float32, (n, 2), elements=st.floats(-5, 5, width=32)))
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return x
    if kind == "rank":
        return draw(hnp.arrays(np.float32, st.sampled_from([(), (3,), (2, 2, 2), (1, 3, 2)]), fill=st.just(0.0)))
    if kind == "empty":
        return np.zeros(draw(st.sampled_from([(0, 2), (3, 0), (0, 0)])), np.float32)
    if kind == "dtype":
        dtypes = [np.bool_, np.complex64, np.str_] + ([np.int32] if dtype_strict else [])
        dtype = draw(st.sampled_from(dtypes))
        return np.zeros((3, 2), dtype) if dtype is not np.str_ else np.full((3, 2), "a")
    if kind == "width":
        return np.zeros((3, draw(st.sampled_from([1, 3, 5]))), np.float32)
    not_arrays = st.one_of(
        st.none(), st.text(max_size=3), st.floats(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
    )
    return draw(not_arrays)


bad_solvers = st.one_of(
    st.text(max_size=8).filter(lambda s: s.lower() not in ("euler", "heun", "midpoint", "tsit5")),
    st.integers(),
    st.floats(),
    hnp.arrays(np.float32, (2,)),
)


@PROPERTY
@given(call=st.sampled_from(list(KEY_CALLS.items())), key=bad_keys)
def test_property_bad_keys(call, key):
    name, fn = call
    if key is None and name == "sample x0":
        return  # a key is optional when the starting points are given
    with pytest.raises((TypeError, ValueError)) as excinfo:
        fn(key)
    assert_own_error(excinfo, "key")


COUNT_CALLS = [
    (("n", "n_or_x0"), False, lambda v: ef.sample(UNTRACEABLE, KEY, v)),
    (("n", "n_or_x0"), False, lambda v: ef.sample_with_log_prob(UNTRACEABLE, KEY, v)),
    (("steps",), True, lambda v: ef.sample(UNTRACEABLE, KEY, 4, steps=v)),
    (("steps",), True, lambda v: ef.log_prob(UNTRACEABLE, GOOD[:4], steps=v)),
    (("steps",), True, lambda v: ef.sample_with_log_prob(UNTRACEABLE, KEY, 4, steps=v)),
    (("max_steps",), True, lambda v: ef.sample(UNTRACEABLE, KEY, 4, steps=1, max_steps=v)),
    (
        ("num_probes",),
        False,
        lambda v: ef.log_prob(UNTRACEABLE, GOOD[:4], divergence="hutchinson", key=KEY, num_probes=v),
    ),
    (("n",), False, lambda v: UNTRACEABLE_FLOW.sample(KEY, v)),
    (("n",), False, lambda v: UNTRACEABLE_FLOW.sample_with_log_prob(KEY, v)),
    (("steps",), True, lambda v: UNTRACEABLE_FLOW.sample(KEY, 4, steps=v)),
    (("steps",), True, lambda v: UNTRACEABLE_FLOW.log_prob(GOOD[:4], steps=v)),
    (("n",), False, lambda v: toys.EightGaussians().sample(KEY, v)),
    (("n",), False, lambda v: toys.Moons().sample_target(KEY, v, 1.0)),
    (("steps",), False, lambda v: ef.fit(GOOD, untouchable_energy, beta=1.0, key=KEY, steps=v)),
    (("sample_steps",), False, lambda v: ef.fit(GOOD, untouchable_energy, beta=1.0, key=KEY, sample_steps=v)),
    (("batch_size",), False, lambda v: ef.fit(GOOD, untouchable_energy, beta=1.0, key=KEY, batch_size=v)),
]


@PROPERTY
@given(data=st.data())
def test_property_bad_step_counts_and_sizes(data):
    names, none_is_default, fn = data.draw(st.sampled_from(COUNT_CALLS))
    value = data.draw(bad_counts(allow_none=not none_is_default))
    with pytest.raises((TypeError, ValueError)) as excinfo:
        fn(value)
    assert_own_error(excinfo, *names)


POINT_CALLS = [
    (("x",), True, lambda x: ef.log_prob(UNTRACEABLE, x)),
    (("n_or_x0",), True, lambda x: ef.sample(UNTRACEABLE, None, x)),
    (("n_or_x0",), True, lambda x: ef.sample_with_log_prob(UNTRACEABLE, None, x)),
    (("x",), False, lambda x: UNTRACEABLE_FLOW.log_prob(x)),
    (("data",), False, lambda x: ef.fit(x, untouchable_energy, beta=1.0, key=KEY)),
]


@PROPERTY
@given(data=st.data())
def test_property_bad_points(data):
    names, dtype_strict, fn = data.draw(st.sampled_from(POINT_CALLS))
    x = data.draw(bad_points(dtype_strict))
    if names == ("data",) and getattr(x, "ndim", 0) == 2 and x.shape[0] and x.shape[1] and x.dtype.kind == "f":
        if np.all(np.isfinite(x)):
            return  # any width is valid training data
    with pytest.raises((TypeError, ValueError)) as excinfo:
        fn(x)
    assert_own_error(excinfo, *names)


SOLVER_CALLS = [
    lambda s: ef.sample(UNTRACEABLE, KEY, 4, solver=s),
    lambda s: ef.log_prob(UNTRACEABLE, GOOD[:4], solver=s),
    lambda s: ef.sample_with_log_prob(UNTRACEABLE, KEY, 4, solver=s),
    lambda s: UNTRACEABLE_FLOW.sample(KEY, 4, solver=s),
    lambda s: UNTRACEABLE_FLOW.log_prob(GOOD[:4], solver=s),
    lambda s: ef.fit(GOOD, untouchable_energy, beta=1.0, key=KEY, solver=s),
]


@PROPERTY
@given(call=st.sampled_from(SOLVER_CALLS), solver=bad_solvers)
def test_property_bad_solver_names(call, solver):
    with pytest.raises((TypeError, ValueError)) as excinfo:
        call(solver)
    assert_own_error(excinfo, "solver")

"""Properties of the affine schedulers (docs/maths.md, "Probability paths"): derivatives, endpoints, closed forms,
float32 accuracy near the data end, validation."""

import math

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from energyflow import AffineProbPath, CondOTScheduler, CosineScheduler, VPScheduler

# Scalar maths in eager mode costs microseconds per example; 40 examples per property keep the file fast.
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def vp_schedulers(draw):
    beta_min = draw(st.floats(0.0, 2.0))
    beta_max = beta_min + draw(st.floats(0.1, 30.0))
    return VPScheduler(beta_min=beta_min, beta_max=beta_max)


schedulers = st.one_of(
    st.builds(CondOTScheduler, sigma_min=st.floats(0.0, 0.9)),
    st.just(CosineScheduler()),
    vp_schedulers(),
)

# t in [0, 1): at t = 1 the VP derivative `d sigma / dt` diverges (sigma_1 = 0); 0.999 keeps sigma_t well away
# from the float64 rounding of `1 - alpha_t^2` for every VP schedule drawn above.
times = st.floats(0.0, 0.999)


@SETTINGS
@given(scheduler=schedulers, t=times)
def test_derivatives_match_forward_mode_autodiff(scheduler, t):
    """`d_alpha_t`, `d_sigma_t` are the derivatives of `alpha_t`, `sigma_t` (against `jax.jacfwd`).

    Float64, so the hand-written derivative and forward-mode AD differ only by rounding of the same few operations:
    rtol 1e-9 (values are O(1) to O(1e3) for VP near t = 1, where relative rounding still stays ~1e-14).
    """
    with jax.enable_x64(True):
        t = jnp.asarray(t, dtype=jnp.float64)
        out = scheduler(t)
        d_alpha = jax.jacfwd(lambda tt: scheduler(tt).alpha_t)(t)
        d_sigma = jax.jacfwd(lambda tt: scheduler(tt).sigma_t)(t)
        assert out.alpha_t.dtype == jnp.float64
        np.testing.assert_allclose(out.d_alpha_t, d_alpha, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out.d_sigma_t, d_sigma, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(scheduler=schedulers, t=times)
def test_alpha_increases_and_sigma_decreases(scheduler, t):
    """Every schedule moves from noise to data monotonically: `alpha'_t >= 0`, `sigma'_t <= 0` on [0, 1)."""
    out = scheduler(jnp.float32(t))
    assert out.d_alpha_t >= 0.0
    assert out.d_sigma_t <= 0.0
    assert 0.0 <= out.alpha_t <= 1.0
    assert 0.0 <= out.sigma_t <= 1.0


@SETTINGS
@given(sigma_min=st.floats(0.0, 0.9), t=st.floats(0.0, 1.0))
def test_condot_closed_form(sigma_min, t):
    """CondOT: `alpha_t = t`, `sigma_t = 1 - (1 - sigma_min) t` (float32 rounding of one multiply-add: rtol 1e-6)."""
    out = CondOTScheduler(sigma_min=sigma_min)(jnp.float32(t))
    np.testing.assert_allclose(out.alpha_t, t, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.sigma_t, 1.0 - (1.0 - sigma_min) * t, rtol=1e-6, atol=1e-7)


@SETTINGS
@given(scheduler=st.one_of(st.just(CosineScheduler()), vp_schedulers()), t=times)
def test_cosine_and_vp_preserve_variance(scheduler, t):
    """Cosine and VP paths keep `alpha_t^2 + sigma_t^2 = 1` (float32: a few ulps, so atol 1e-6)."""
    out = scheduler(jnp.float32(t))
    np.testing.assert_allclose(out.alpha_t**2 + out.sigma_t**2, 1.0, atol=1e-6)


@SETTINGS
@given(beta_min=st.floats(0.0, 2.0), extra=st.floats(0.1, 30.0), t=times)
def test_vp_closed_form(beta_min, extra, t):
    """VP: `alpha_t = exp(-T(1 - t) / 2)`, `T(s) = beta_min s + (beta_max - beta_min) s^2 / 2` (reference in Python
    float64; the scheduler runs in float32, so rtol 1e-5 covers the rounding of `exp` of an O(10) exponent)."""
    beta_max = beta_min + extra
    s = 1.0 - t
    expected = math.exp(-0.5 * (beta_min * s + 0.5 * (beta_max - beta_min) * s**2))
    out = VPScheduler(beta_min=beta_min, beta_max=beta_max)(jnp.float32(t))
    np.testing.assert_allclose(out.alpha_t, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("t", [0.999, 0.9999])
@pytest.mark.parametrize(("beta_min", "beta_max"), [(0.1, 20.0), (0.0, 5.0), (1.0, 1.0)])
def test_vp_is_accurate_in_float32_near_the_data_end(t, beta_min, beta_max):
    """In float32 near t = 1, `sigma_t` and `d_sigma_t` agree with a float64 reference to rtol 1e-6.

    The reference evaluates the closed form in Python float64 at the same float32-rounded `t` (so that only the
    scheduler's arithmetic is compared). Computed as `sqrt(1 - alpha_t^2)`, float32 loses most digits to the
    cancellation: a relative error of 1.4e-4 at t = 0.999 and 1.6e-3 at 0.9999 for the default schedule; via
    `expm1` it is ~1e-8, at the float32 rounding of the few operations involved.
    """
    t32 = float(np.float32(t))
    s = 1.0 - t32  # exact in float64 (and in float32: Sterbenz)
    big_t = beta_min * s + 0.5 * (beta_max - beta_min) * s**2
    alpha = math.exp(-0.5 * big_t)
    sigma = math.sqrt(-math.expm1(-big_t))
    d_alpha = 0.5 * alpha * (beta_min + (beta_max - beta_min) * s)
    out = VPScheduler(beta_min=beta_min, beta_max=beta_max)(jnp.float32(t))
    assert out.sigma_t.dtype == jnp.float32
    np.testing.assert_allclose(out.alpha_t, alpha, rtol=1e-6)
    np.testing.assert_allclose(out.sigma_t, sigma, rtol=1e-6)
    np.testing.assert_allclose(out.d_sigma_t, -alpha * d_alpha / sigma, rtol=1e-6)


points = hnp.arrays(np.float32, (3,), elements=st.floats(-10.0, 10.0, width=32, allow_subnormal=False))
# (XLA on CPU flushes subnormals to zero, so they are left out of the draws.)


@SETTINGS
@given(x0=points, x1=points)
def test_path_endpoints(x0, x1):
    """t = 0 gives the noise `x0` and t = 1 the data `x1` (docs/maths.md).

    Exactly for CondOT with sigma_min = 0; for cosine up to `cos(float32(pi / 2)) ~ 4e-8` times |x0| <= 10 (atol
    1e-6); VP ends exactly at `x1` but starts only approximately at `x0`, within the bound `alpha_0 |x1| +
    (1 - sigma_0) |x0|` computed from the closed form (plus 1e-5 for float32 rounding of values up to 10).
    """
    x0, x1 = jnp.asarray(x0), jnp.asarray(x1)

    condot = AffineProbPath(CondOTScheduler())
    np.testing.assert_array_equal(condot.sample(x0, x1, 0.0).x_t, x0)
    np.testing.assert_array_equal(condot.sample(x0, x1, 1.0).x_t, x1)

    cosine = AffineProbPath(CosineScheduler())
    np.testing.assert_array_equal(cosine.sample(x0, x1, 0.0).x_t, x0)
    np.testing.assert_allclose(cosine.sample(x0, x1, 1.0).x_t, x1, rtol=0, atol=1e-6)

    vp_scheduler = VPScheduler()
    vp = AffineProbPath(vp_scheduler)
    np.testing.assert_array_equal(vp.sample(x0, x1, 1.0).x_t, x1)
    alpha_0 = math.exp(-0.5 * (vp_scheduler.beta_min + 0.5 * (vp_scheduler.beta_max - vp_scheduler.beta_min)))
    # The bound is attained when the two terms have the same sign; 1e-5 absorbs float32 rounding (|x| <= 10).
    bound = alpha_0 * np.abs(x1) + (1.0 - math.sqrt(1.0 - alpha_0**2)) * np.abs(x0) + 1e-5
    assert alpha_0 < 0.01  # the default VP schedule starts close to pure noise
    assert np.all(np.abs(np.asarray(vp.sample(x0, x1, 0.0).x_t) - x0) <= bound)


def test_condot_with_sigma_min_ends_at_that_width():
    """With sigma_min > 0 the conditional path ends at `x1 + sigma_min x0` (a Gaussian of that width)."""
    x0, x1 = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
    x_t = AffineProbPath(CondOTScheduler(sigma_min=0.1)).sample(x0, x1, 1.0).x_t
    np.testing.assert_allclose(x_t, x1 + 0.1 * x0, rtol=1e-6)


@pytest.mark.parametrize("sigma_min", [-0.1, 1.0, 1.5])
def test_condot_rejects_bad_sigma_min(sigma_min):
    """A sigma_min outside [0, 1) is refused at construction, with the value in the message."""
    with pytest.raises(ValueError, match="sigma_min"):
        CondOTScheduler(sigma_min=sigma_min)


@pytest.mark.parametrize(("beta_min", "beta_max"), [(-0.1, 20.0), (5.0, 1.0), (0.0, 0.0)])
def test_vp_rejects_bad_rates(beta_min, beta_max):
    """Negative rates, beta_min > beta_max, or no noise at all (beta_max = 0, so sigma_t = 0 and
    `d sigma_t` = 0/0) are refused at construction."""
    with pytest.raises(ValueError, match="beta_m"):
        VPScheduler(beta_min=beta_min, beta_max=beta_max)


def test_scheduler_rejects_non_scalar_time(request):
    """A scheduler is called on one scalar time; a vector of times is a shape error caught by the runtime
    type checker of the test session (vmap the scheduler for batches)."""
    if not request.config.getoption("jaxtyping_packages"):
        pytest.skip("runtime shape checking is off (run with --jaxtyping-packages)")
    with pytest.raises(jaxtyping.TypeCheckError, match="'t'"):
        CondOTScheduler()(jnp.ones(3))

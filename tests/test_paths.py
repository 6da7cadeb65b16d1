"""Properties of the probability paths (docs/maths.md): the affine path and the energy-guided Gaussian path.

The derivative checks run in float64 (`jax.enable_x64`) so that finite differences and quadrature can be compared
with tight tolerances; everything else runs in the default float32.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from energyflow import AffineProbPath, CondOTScheduler, CosineScheduler, GuidedGaussianPath, VPScheduler

SETTINGS = settings(max_examples=25, deadline=None)

SCHEDULERS = {"condot": CondOTScheduler(), "cosine": CosineScheduler(), "vp": VPScheduler()}
CENTRES = np.array([[1.0, 1.0], [-1.0, 0.5], [0.0, -1.5]])


def nonlinear_energy(x):
    """A quartic well plus a log-sum-exp of three Gaussian bumps: curved everywhere, so `d g_t / dt != 0`."""
    bumps = -0.5 * jnp.sum((x[None, :] - jnp.asarray(CENTRES, x.dtype)) ** 2, axis=-1)
    return 0.25 * jnp.sum(x**4) - jax.nn.logsumexp(bumps)


def contextual_energy(x, c):
    """`E(x, c) = 0.25 |x - c|^4 + c.x`: a nonlinear energy that really uses its context."""
    return 0.25 * jnp.sum((x - c) ** 2) ** 2 + jnp.dot(c, x)


def linear_energy(x, b):
    """`E(x) = b.x`, with the slope passed as the context so one compiled function serves every slope."""
    return jnp.dot(b, x)


# One compiled function per path configuration (scheduler, gradient mode); beta is an array, hence traced.
@eqx.filter_jit
def _sample_nonlinear(path, x0, x1, t):
    ps = path.sample(x0, x1, t, nonlinear_energy)
    return ps.x_t, ps.dx_t


@eqx.filter_jit
def _linear_quantities(path, x0, x1, t, b):
    ps = path.sample(x0, x1, t, linear_energy, b)
    return ps.x_t, path.mean(x1, t, linear_energy, b), path.log_normalizer(x1, t, linear_energy, b)


@eqx.filter_jit
def _affine_velocity_and_jvp(path, x0, x1, t):
    _, dx = jax.jvp(lambda tt: path.sample(x0, x1, tt).x_t, (t,), (jnp.ones_like(t),))
    return path.sample(x0, x1, t).dx_t, dx


def _arrays(dim, bound, dtype=np.float64):
    # XLA on CPU flushes subnormals to zero, so they are left out of the draws.
    width = 64 if dtype == np.float64 else 32
    return hnp.arrays(dtype, (dim,), elements=st.floats(-bound, bound, width=width, allow_subnormal=False))


# ---------------------------------------------------------------------------------------------------------------
# The affine path.


@SETTINGS
@given(name=st.sampled_from(sorted(SCHEDULERS)), x0=_arrays(3, 5.0), x1=_arrays(3, 5.0), t=st.floats(0.0, 0.99))
def test_affine_velocity_is_the_time_derivative_of_x_t(name, x0, x1, t):
    """`u_t = alpha'_t x1 + sigma'_t x0` is `d x_t / dt` at fixed `(x0, x1)`: compared with `jax.jvp` in float64,
    where both differ only by rounding (rtol 1e-9, atol 1e-10 for components that cancel to ~0)."""
    path = AffineProbPath(SCHEDULERS[name])
    with jax.enable_x64(True):
        x0, x1, t = jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t)
        dx_t, dx = _affine_velocity_and_jvp(path, x0, x1, t)
        np.testing.assert_allclose(dx_t, dx, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# The guided path with lambda = 0 is the plain path.


# Op-by-op execution is slower than a compiled call, so fewer examples; the identity does not depend on the values.
@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(SCHEDULERS)),
    gradient=st.sampled_from(["mean", "data"]),
    x0=_arrays(2, 5.0, np.float32),
    x1=_arrays(2, 2.0, np.float32),
    t=st.floats(0.0, 0.99),
)
def test_zero_guidance_is_the_plain_path(name, gradient, x0, x1, t):
    """With `beta = 0` (so `lambda_t = 0`) the guided path and velocity are exactly the affine ones.

    Run op by op (no jit, so no fusion), the same float32 operations happen in the same order: `x_t` must be equal
    bit for bit, and so must `dx_t` for CondOT and cosine, whose forward-mode derivative is the hand-written one.
    VP's hand-written derivative is arranged differently from the chain rule (and `sigma_t` goes through `expm1`), so
    the two differ by float32 rounding: near t = 0, where `sigma'_t` is ~4e-4, the difference reaches ~3e-7 per unit
    of `x_0`, i.e. 1.1e-6 at |x_0| = 4 (seen at t = 0, x_0 = (4, 4)); atol 1e-5 covers |x_0| <= 5 with margin while
    any real error in the velocity (a wrong term or factor) is orders of magnitude larger.
    """
    scheduler = SCHEDULERS[name]
    x0, x1, t = jnp.asarray(x0), jnp.asarray(x1), jnp.float32(t)
    plain = AffineProbPath(scheduler).sample(x0, x1, t)
    guided = GuidedGaussianPath(scheduler, beta=0.0, gradient=gradient).sample(x0, x1, t, nonlinear_energy)
    np.testing.assert_array_equal(guided.x_t, plain.x_t)
    if name == "vp":
        np.testing.assert_allclose(guided.dx_t, plain.dx_t, rtol=1e-6, atol=1e-5)
    else:
        np.testing.assert_array_equal(guided.dx_t, plain.dx_t)


# ---------------------------------------------------------------------------------------------------------------
# Linear energy: the Gaussian form is exact; compare with 1-D quadrature of the tilted conditional.


def _tilted_moments(m, sigma, slope):
    """Mean, variance and log-normaliser of `N(x; m, sigma^2) exp(-slope x)` by the trapezoid rule (float64).

    The grid spans m +- 25 with 40001 points: the tilt moves the mass by at most |slope| sigma^2 <= 6 and sigma <= 1,
    so the integrand is negligible (< exp(-150)) at the ends; the trapezoid rule on a smooth, decaying integrand with
    at least 10 points per sigma is accurate to rounding (~1e-13).
    """
    x = np.linspace(m - 25.0, m + 25.0, 40001)
    log_f = -0.5 * ((x - m) / sigma) ** 2 - np.log(sigma * np.sqrt(2.0 * np.pi)) - slope * x
    shift = log_f.max()
    f = np.exp(log_f - shift)
    z = np.trapezoid(f, x)
    mean = np.trapezoid(x * f, x) / z
    var = np.trapezoid((x - mean) ** 2 * f, x) / z
    return mean, var, shift + np.log(z)


@SETTINGS
@given(
    name=st.sampled_from(["condot", "cosine"]),
    gradient=st.sampled_from(["mean", "data"]),
    x1=_arrays(3, 3.0),
    b=_arrays(3, 2.0),
    beta=st.floats(0.0, 3.0),
    t=st.floats(0.05, 0.97),
)
def test_linear_energy_matches_quadrature(name, gradient, x1, b, beta, t):
    """For `E(x) = b.x` the tilted conditional `N(x; alpha_t x1, sigma_t^2) exp(-lambda_t b.x)` is exactly Gaussian:
    the path's mean, its spread (`x_t - mu_t = sigma_t x0`) and `log Z_t` match quadrature in each coordinate
    (the tilt factorises over coordinates, so `log Z_t` is the sum of the 1-D ones).

    Float64 on both sides; the quadrature is accurate to ~1e-13 (see `_tilted_moments`), hence rtol/atol 1e-8.
    """
    scheduler = SCHEDULERS[name]
    with jax.enable_x64(True):
        path = GuidedGaussianPath(scheduler, beta=jnp.asarray(beta), gradient=gradient)
        x1_, b_, t_ = jnp.asarray(x1), jnp.asarray(b), jnp.asarray(t)
        x0 = jnp.ones(3)
        x_t, mean, log_z = _linear_quantities(path, x0, x1_, t_, b_)
        sched = scheduler(t_)
        alpha, sigma, lam = float(sched.alpha_t), float(sched.sigma_t), float(path.lambda_t(t_))

    moments = [_tilted_moments(alpha * x1[j], sigma, lam * b[j]) for j in range(3)]
    q_mean = np.array([mo[0] for mo in moments])
    q_var = np.array([mo[1] for mo in moments])
    q_log_z = sum(mo[2] for mo in moments)
    np.testing.assert_allclose(mean, q_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose((np.asarray(x_t) - np.asarray(mean)) ** 2, q_var, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(log_z, q_log_z, rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# The guided velocity is d x_t / dt: finite differences, and the Hessian-vector term.


@SETTINGS
@given(
    name=st.sampled_from(sorted(SCHEDULERS)),
    gradient=st.sampled_from(["mean", "data"]),
    x0=_arrays(2, 3.0),
    x1=_arrays(2, 2.0),
    beta=st.floats(0.0, 3.0),
    t=st.floats(0.05, 0.95),
)
def test_guided_velocity_matches_central_difference(name, gradient, x0, x1, beta, t):
    """`dx_t` (forward-mode AD) matches `(x_{t+h} - x_{t-h}) / 2h` for a nonlinear energy, in both gradient modes.

    Float64 with h = 1e-5: truncation error ~h^2 |x'''| / 6 < 1e-8 for these schedules on [0.05, 0.95], rounding
    ~1e-16 |x| / h ~ 1e-10; so rtol/atol 1e-6. A missing `d g_t / dt` or `d lambda_t / dt` term is O(0.1 - 1).
    """
    path_cfg = dict(scheduler=SCHEDULERS[name], gradient=gradient)
    h = 1e-5
    with jax.enable_x64(True):
        path = GuidedGaussianPath(beta=jnp.asarray(beta), **path_cfg)
        x0, x1, t = jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t)
        _, dx_t = _sample_nonlinear(path, x0, x1, t)
        x_plus, _ = _sample_nonlinear(path, x0, x1, t + h)
        x_minus, _ = _sample_nonlinear(path, x0, x1, t - h)
        np.testing.assert_allclose(dx_t, (x_plus - x_minus) / (2 * h), rtol=1e-6, atol=1e-6)


@eqx.filter_jit
def _expected_velocity(scheduler, gradient, beta, x0, x1, t, d_lambda):
    """The guided velocity written out: `alpha' x1 - (lambda' sigma^2 + 2 lambda sigma sigma') g - lambda sigma^2 dg
    + sigma' x0`, with `dg = H(alpha x1) alpha' x1` for gradient="mean" and `g = grad E(x1)`, `dg = 0` for "data"."""
    s = scheduler(t)
    lam = beta * t
    m = s.alpha_t * x1
    if gradient == "mean":
        g = jax.grad(nonlinear_energy)(m)
        dg = jax.hessian(nonlinear_energy)(m) @ (s.d_alpha_t * x1)
    else:
        g = jax.grad(nonlinear_energy)(x1)
        dg = jnp.zeros_like(x1)
    frozen = s.d_alpha_t * x1 - (d_lambda * s.sigma_t**2 + 2 * lam * s.sigma_t * s.d_sigma_t) * g + s.d_sigma_t * x0
    return frozen - lam * s.sigma_t**2 * dg, frozen


@SETTINGS
@given(
    gradient=st.sampled_from(["mean", "data"]),
    x0=_arrays(2, 3.0),
    x1=_arrays(2, 2.0),
    beta=st.floats(0.0, 3.0),
    t=st.floats(0.0, 1.0),
)
def test_guided_velocity_closed_form(gradient, x0, x1, beta, t):
    """The velocity equals the formula of docs/maths.md written out by hand (linear `lambda_t = beta t`, cosine
    schedule): with gradient="mean" it includes the Hessian-vector term `-lambda_t sigma_t^2 H(m_t) alpha'_t x1`,
    with gradient="data" it does not. Float64, same quantities by two routes: rtol 1e-9, atol 1e-9."""
    scheduler = CosineScheduler()
    with jax.enable_x64(True):
        path = GuidedGaussianPath(scheduler, beta=jnp.asarray(beta), gradient=gradient)
        x0, x1, t = jnp.asarray(x0), jnp.asarray(x1), jnp.asarray(t)
        _, dx_t = _sample_nonlinear(path, x0, x1, t)
        beta = jnp.asarray(beta)
        expected, _ = _expected_velocity(scheduler, gradient, beta, x0, x1, t, d_lambda=beta)
        np.testing.assert_allclose(dx_t, expected, rtol=1e-9, atol=1e-9)


def test_mean_gradient_velocity_differs_from_the_frozen_one():
    """For a curved energy the Hessian-vector term is not negligible: the gradient="mean" velocity differs from the
    velocity with `g_t` held fixed by more than 0.05 here (and equals the frozen one plus that term, float64)."""
    scheduler = CosineScheduler()
    with jax.enable_x64(True):
        x0, x1, t = jnp.array([0.3, -0.7]), jnp.array([1.2, 0.8]), jnp.asarray(0.6)
        path = GuidedGaussianPath(scheduler, beta=jnp.asarray(2.0), gradient="mean")
        _, dx_t = _sample_nonlinear(path, x0, x1, t)
        beta = jnp.asarray(2.0)
        with_hvp, frozen = _expected_velocity(scheduler, "mean", beta, x0, x1, t, d_lambda=beta)
        assert np.linalg.norm(dx_t - frozen) > 0.05
        np.testing.assert_allclose(dx_t, with_hvp, rtol=1e-9, atol=1e-9)


@eqx.filter_jit
def _mean_and_log_z(path, x1, t):
    x_t = path.sample(jnp.zeros_like(x1), x1, t, nonlinear_energy).x_t
    return x_t, path.mean(x1, t, nonlinear_energy), path.log_normalizer(x1, t, nonlinear_energy)


@SETTINGS
@given(gradient=st.sampled_from(["mean", "data"]), x1=_arrays(2, 2.0), beta=st.floats(0.0, 3.0), t=st.floats(0.0, 1.0))
def test_mean_and_log_normalizer_closed_form(gradient, x1, beta, t):
    """For a curved energy, `mean` is the point `sample` maps `x0 = 0` to, and `log_normalizer` is the formula of
    docs/maths.md at the linearisation point: `-lambda E(m_t) + lambda^2 sigma^2 |g|^2 / 2` with `g = grad E(m_t)`
    (gradient="mean", `m_t = alpha_t x1`), or the linear model about `x1`, `E(x1) + g.(m_t - x1)` with
    `g = grad E(x1)` (gradient="data"). Float64, same quantities by two routes: rtol/atol 1e-9."""
    scheduler = CosineScheduler()
    with jax.enable_x64(True):
        path = GuidedGaussianPath(scheduler, beta=jnp.asarray(beta), gradient=gradient)
        x1, t = jnp.asarray(x1), jnp.asarray(t)
        x_t, mean, log_z = _mean_and_log_z(path, x1, t)
        s = scheduler(t)
        lam, m = beta * t, s.alpha_t * x1
        point = m if gradient == "mean" else x1
        e, g = jax.value_and_grad(nonlinear_energy)(point)
        e_m = e + jnp.dot(g, m - point)
        np.testing.assert_allclose(mean, m - lam * s.sigma_t**2 * g, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(x_t, mean, rtol=1e-9, atol=1e-9)
        expected_log_z = -lam * e_m + 0.5 * lam**2 * s.sigma_t**2 * jnp.sum(g**2)
        np.testing.assert_allclose(log_z, expected_log_z, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Lambda schedules, endpoints, contexts, validation, shapes.


@pytest.mark.parametrize(
    ("schedule", "lam", "d_lam"),
    [
        ("linear", lambda t, b: b * t, lambda t, b: b),
        ("constant", lambda t, b: b, lambda t, b: 0.0),
        (lambda t, b: b * t**2, lambda t, b: b * t**2, lambda t, b: 2 * b * t),
    ],
    ids=["linear", "constant", "callable"],
)
def test_lambda_schedules(schedule, lam, d_lam):
    """`lambda_t` follows the named or user-given schedule, and its time derivative enters the velocity
    (gradient="data", so the velocity is the hand formula with `lambda'_t`; float64, rtol 1e-9)."""
    scheduler = CosineScheduler()
    with jax.enable_x64(True):
        x0, x1, t, beta = jnp.array([0.3, -0.7]), jnp.array([1.2, 0.8]), jnp.asarray(0.6), 1.5
        path = GuidedGaussianPath(scheduler, beta=beta, lambda_schedule=schedule, gradient="data")
        np.testing.assert_allclose(path.lambda_t(t), lam(0.6, beta), rtol=1e-12)
        ps = path.sample(x0, x1, t, nonlinear_energy)
        s = scheduler(t)
        lam_t, d_lam_t = lam(0.6, beta), d_lam(0.6, beta)
        g = jax.grad(nonlinear_energy)(x1)
        d_tilt = d_lam_t * s.sigma_t**2 + 2 * lam_t * s.sigma_t * s.d_sigma_t  # d/dt of lambda_t sigma_t^2
        expected = s.d_alpha_t * x1 - d_tilt * g + s.d_sigma_t * x0
        np.testing.assert_allclose(ps.dx_t, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("gradient", ["mean", "data"])
def test_guided_condot_path_endpoints(gradient):
    """CondOT (sigma_min = 0), linear lambda: the guided path starts at the noise (`lambda_0 = 0`, `alpha_0 = 0`) and
    every conditional ends at its own data point (`sigma_1 = 0`), so without weights the endpoint marginal is `p`
    (docs/maths.md). Float32; the `lambda sigma^2 g` term vanishes at both ends, so the match is to rounding, 1e-6."""
    path = GuidedGaussianPath(CondOTScheduler(), beta=3.0, gradient=gradient)
    x0, x1 = jnp.array([0.4, -1.1]), jnp.array([1.5, 0.2])
    np.testing.assert_allclose(path.sample(x0, x1, 0.0, nonlinear_energy).x_t, x0, atol=1e-6)
    np.testing.assert_allclose(path.sample(x0, x1, 1.0, nonlinear_energy).x_t, x1, atol=1e-6)


@pytest.mark.parametrize("gradient", ["mean", "data"])
def test_context_reaches_the_energy(gradient):
    """`E(x, c)` with `context=c` behaves as the energy `x -> E(x, c)` in `sample`, `mean` and `log_normalizer`,
    and a different context gives a different path (so the context is really used). Same float32 operations on
    both routes: equal to rounding (rtol 1e-6)."""
    path = GuidedGaussianPath(CosineScheduler(), beta=2.0, gradient=gradient)
    x0, x1, t = jnp.array([0.4, -1.1]), jnp.array([1.5, 0.2]), 0.7
    c = jnp.array([0.5, -0.3])
    closed = lambda x: contextual_energy(x, c)  # noqa: E731
    with_ctx = path.sample(x0, x1, t, contextual_energy, c)
    without = path.sample(x0, x1, t, closed)
    np.testing.assert_allclose(with_ctx.x_t, without.x_t, rtol=1e-6)
    np.testing.assert_allclose(with_ctx.dx_t, without.dx_t, rtol=1e-6)
    np.testing.assert_allclose(path.mean(x1, t, contextual_energy, c), path.mean(x1, t, closed), rtol=1e-6)
    np.testing.assert_allclose(
        path.log_normalizer(x1, t, contextual_energy, c), path.log_normalizer(x1, t, closed), rtol=1e-6
    )
    other = path.sample(x0, x1, t, contextual_energy, -c)
    assert np.linalg.norm(other.dx_t - with_ctx.dx_t) > 1e-2


@pytest.mark.parametrize(
    "kwargs",
    [dict(gradient="hessian"), dict(lambda_schedule="cubic"), dict(beta=-1.0)],
    ids=["gradient", "lambda_schedule", "beta"],
)
def test_guided_path_rejects_bad_config(kwargs):
    """Unknown gradient modes or schedules and negative beta are refused at construction (a ValueError; under the
    test session's runtime type checker a wrong literal is already a TypeCheckError, naming the same field)."""
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match=next(iter(kwargs))):
        GuidedGaussianPath(**kwargs)


def test_wrong_shapes_raise(request):
    """The runtime type checker of the test session rejects mismatched `x0`/`x1` and a non-scalar energy."""
    if not request.config.getoption("jaxtyping_packages"):
        pytest.skip("runtime shape checking is off (run with --jaxtyping-packages)")
    path = GuidedGaussianPath()
    with pytest.raises(jaxtyping.TypeCheckError):
        path.sample(jnp.ones(2), jnp.ones(3), 0.5, nonlinear_energy)
    with pytest.raises(jaxtyping.TypeCheckError):
        path.sample(jnp.ones(2), jnp.ones(2), 0.5, lambda x: x[:1])  # energy of shape [1], not a scalar
    with pytest.raises(jaxtyping.TypeCheckError):
        AffineProbPath().sample(jnp.ones((4, 2)), jnp.ones((4, 2)), jnp.ones(4))  # batch: vmap it instead


def test_both_paths_take_one_signature():
    """`sample(x_0, x_1, t, energy=None, context=None)` on either path, by keyword; the fields of the `PathSample`
    carry the same names. The affine path ignores the energy; the guided one needs it (float32, rtol 1e-6)."""
    x_0, x_1 = jnp.array([0.4, -1.1]), jnp.array([1.5, 0.2])
    affine = AffineProbPath(CosineScheduler()).sample(x_0=x_0, x_1=x_1, t=0.3, energy=nonlinear_energy, context=None)
    flat = GuidedGaussianPath(CosineScheduler(), beta=0.0).sample(x_0=x_0, x_1=x_1, t=0.3, energy=nonlinear_energy)
    for ps in (affine, flat):
        np.testing.assert_array_equal(ps.x_0, x_0)
        np.testing.assert_array_equal(ps.x_1, x_1)
    np.testing.assert_allclose(flat.x_t, affine.x_t, rtol=1e-6)
    np.testing.assert_allclose(flat.dx_t, affine.dx_t, rtol=1e-6)
    with pytest.raises(TypeError, match="needs the energy"):
        GuidedGaussianPath().sample(x_0, x_1, 0.3)

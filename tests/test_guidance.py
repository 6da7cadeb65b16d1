"""Inference-time guidance (`GuidedVelocity`, `sample_guided`): its scale, its endpoint prediction, and where it lands
on a flow whose velocity is known exactly (a Gaussian `p`), where the tilted target is known too."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import energyflow as ef
from energyflow._guidance import _endpoint


class GaussianFlow(eqx.Module):
    """The exact marginal velocity of the CondOT path from `N(0, I)` to `N(m, diag(s^2))` (per coordinate,
    `v = m + k_t (x - t m)` with `k_t = d/dt log sqrt(t^2 s^2 + (1 - t)^2)`); the mean is shifted by the context."""

    mean: jax.Array
    std: jax.Array
    dim: int = eqx.field(static=True, default=2)

    def __call__(self, x, t, context=None):
        m = self.mean if context is None else self.mean + context
        s2 = self.std**2
        k = (t * s2 - (1 - t)) / (t**2 * s2 + (1 - t) ** 2)
        return m + k * (x - t * m)


MEAN, STD, SLOPE = jnp.array([1.0, -0.5]), jnp.array([0.5, 1.5]), jnp.array([0.5, 0.5])
FLOW = GaussianFlow(MEAN, STD)


def linear_energy(x):
    return jnp.dot(SLOPE, x)


def test_zero_beta_is_the_plain_flow():
    """With beta = 0 the guidance term vanishes: the same points as `sample`, to float32 rounding of `v - 0 g`."""
    key = jax.random.key(0)
    plain = ef.sample(FLOW, key, 64, steps=8)
    for gradient_at in ("x_t", "endpoint", "endpoint_backprop"):
        guided = ef.sample_guided(FLOW, linear_energy, key, 64, beta=0.0, gradient_at=gradient_at, steps=8)
        np.testing.assert_allclose(guided, plain, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_guidance_scale_of_condot(t):
    """CondOT with `lambda_t = beta t`: `k_t lambda_t = (1 - t) / t * beta t = beta (1 - t)`, finite at t = 0 (the
    limit `lambda'_0 / alpha'_0 = beta`) and zero at the data. With `lambda = beta` it is `beta (1 - t) / t` for
    t > 0, and 0 at t = 0 (no finite limit there). Float32 rounding: rtol 1e-6."""
    beta = 3.0
    linear = ef.GuidedVelocity(FLOW, linear_energy, beta, gradient_at="x_t")
    np.testing.assert_allclose(linear.guidance_scale(jnp.float32(t)), beta * (1 - t), rtol=1e-6, atol=1e-6)
    constant = ef.GuidedVelocity(FLOW, linear_energy, beta, lambda_schedule="constant")
    expected = beta * (1 - t) / t if t > 0 else 0.0
    np.testing.assert_allclose(constant.guidance_scale(jnp.float32(t)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0.3, 0.7])
def test_guidance_scale_of_a_general_schedule(t):
    """For any affine schedule, `k_t = sigma_t (alpha'_t sigma_t - sigma'_t alpha_t) / alpha_t` is the factor that turns
    a change of the score of `p_t` into a change of the velocity: checked on the cosine schedule against that
    relation computed from two Gaussian marginals (float64, rtol 1e-9).

    For `p = N(0, c^2)` the cosine path has `p_t = N(0, alpha^2 c^2 + sigma^2)`, velocity `v = (alpha alpha' c^2 +
    sigma sigma') x / var_t` and score `-x / var_t`; changing `c` changes both, and `dv / dscore = k_t` must hold
    whatever `alpha'/alpha x` part is shared."""
    with jax.enable_x64(True):
        scheduler = ef.CosineScheduler()
        s = scheduler(jnp.float64(t))
        a, sg, da, ds = (float(v) for v in s)

        def velocity_and_score(c2, x=1.3):
            var = a**2 * c2 + sg**2
            return (a * da * c2 + sg * ds) * x / var, -x / var

        (v1, s1), (v2, s2) = velocity_and_score(0.5), velocity_and_score(2.0)
        k = (v2 - v1) / (s2 - s1)
        guided = ef.GuidedVelocity(FLOW, linear_energy, 1.0, scheduler, lambda_schedule="constant")
        np.testing.assert_allclose(float(guided.guidance_scale(jnp.float64(t))), k, rtol=1e-9)


@pytest.mark.parametrize("scheduler", [ef.CondOTScheduler(), ef.CosineScheduler(), ef.VPScheduler()], ids=str)
def test_endpoint_prediction_inverts_the_path(scheduler):
    """Given a point of a conditional path and its conditional velocity, the endpoint prediction is the data end
    `x_1` exactly (float64, rtol 1e-9), for every affine schedule and time in (0, 1)."""
    with jax.enable_x64(True):
        path = ef.AffineProbPath(scheduler)
        x_0, x_1 = jnp.array([0.4, -1.2]), jnp.array([1.5, 0.3])
        for t in (0.1, 0.5, 0.95):
            ps = path.sample(x_0, x_1, jnp.float64(t))
            np.testing.assert_allclose(_endpoint(ps.x_t, ps.dx_t, scheduler(ps.t)), x_1, rtol=1e-9)


def test_gradient_through_the_endpoint_is_exact_on_a_gaussian():
    """`p = N(m, diag(s^2))`, `E = b.x`: `q = N(m - beta diag(s^2) b, diag(s^2))`. With the exact velocity, the
    endpoint prediction differentiated through the flow with `lambda = beta` recovers `q`'s mean to 0.03 and its
    standard deviations to 2% (20 000 samples: Monte-Carlo error of the mean <= 1.5 / sqrt(20000) = 0.011; 64
    midpoint steps: solver error < 1e-3). The gradient at `x_t` (or at the prediction without the Jacobian) with
    `lambda_t = beta t` stops short: it moves the mean less than 80% of the way (measured: 38% here)."""
    beta = 2.0
    exact = MEAN - beta * STD**2 * SLOPE
    kwargs = dict(beta=beta, steps=64, solver="midpoint")
    x = ef.sample_guided(
        FLOW, linear_energy, jax.random.key(1), 20_000, gradient_at="endpoint_backprop", lambda_schedule="constant",
        **kwargs,
    )
    np.testing.assert_allclose(x.mean(0), exact, atol=0.03)
    np.testing.assert_allclose(x.std(0), STD, rtol=0.02)
    for gradient_at in ("x_t", "endpoint"):
        x = ef.sample_guided(FLOW, linear_energy, jax.random.key(1), 20_000, gradient_at=gradient_at, **kwargs)
        moved = float(jnp.dot(x.mean(0) - MEAN, exact - MEAN) / jnp.sum((exact - MEAN) ** 2))
        assert 0.1 < moved < 0.8, (gradient_at, moved)


def test_guidance_with_a_context():
    """A conditional flow and an energy `E(x, c)`: each context's samples are guided by its own energy (here the
    context shifts both the flow's mean and the energy's slope's sign), matching a per-context closed form."""

    def energy(x, c):
        return jnp.sign(c[0]) * jnp.dot(SLOPE, x)

    context = jnp.repeat(jnp.array([[1.0, 0.0], [-1.0, 0.0]]), 5000, axis=0)
    x = ef.sample_guided(
        FLOW, energy, jax.random.key(2), 10_000, context=context, beta=1.0, gradient_at="endpoint_backprop",
        lambda_schedule="constant", steps=64, solver="midpoint",
    )
    for half, sign in ((slice(0, 5000), 1.0), (slice(5000, None), -1.0)):
        exact = MEAN + context[half][0] - sign * STD**2 * SLOPE
        np.testing.assert_allclose(x[half].mean(0), exact, atol=0.05)  # MC error 1.5 / sqrt(5000) = 0.02


def test_bad_options_are_refused():
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match="gradient_at"):
        ef.GuidedVelocity(FLOW, linear_energy, 1.0, gradient_at="middle")
    with pytest.raises((TypeError, jaxtyping.TypeCheckError), match="energy"):
        ef.GuidedVelocity(FLOW, 3.0, 1.0)
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match="lambda_schedule"):
        ef.GuidedVelocity(FLOW, linear_energy, 1.0, lambda_schedule="cubic")
    with pytest.raises(ValueError, match="beta"):
        ef.GuidedVelocity(FLOW, linear_energy, -1.0)


def test_public_names():
    """Public classes and functions print under `energyflow`, where users import them from."""
    for obj in (ef.FlowModel, ef.fit, ef.GuidedGaussianPath, ef.AbstractProbPath, ef.cfm_loss, ef.sample_guided,
                ef.GuidedVelocity, ef.CondOTScheduler, ef.sample):
        assert obj.__module__ == "energyflow", obj
    assert repr(ef.FlowModel) == "<class 'energyflow.FlowModel'>"

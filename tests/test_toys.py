"""The toy targets: their closed forms agree with resampling from p, and the 8-gaussians energy is what it claims."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from energyflow import toys


@pytest.mark.parametrize("name", sorted(toys.TARGETS))
def test_every_target_samples_and_has_a_finite_energy(name):
    target = toys.get_target(name)
    x = target.sample(jax.random.key(0), 512)
    assert x.shape == (512, target.dim)
    e = jax.vmap(target.energy)(x)
    assert e.shape == (512,) and bool(jnp.all(jnp.isfinite(e)))
    q = target.sample_target(jax.random.key(1), 256, 1.0)
    assert q.shape == (256, target.dim) and bool(jnp.all(jnp.isfinite(q)))


def test_unknown_target_is_a_clear_error():
    with pytest.raises(ValueError, match="expected one of"):
        toys.get_target("banana")


def test_mixture_closed_form_matches_resampling():
    """The closed-form tilted mixture weights agree with importance resampling of p (TV < 0.02 with 40k draws)."""
    mix = toys.get_target("mixture")
    beta = 1.5
    x = toys.AbstractTarget.sample_target(mix, jax.random.key(0), 40_000, beta)  # the generic SIR route
    fractions = toys.mode_fractions(mix.component_of(x, beta), 3)
    assert toys.total_variation(fractions, mix.target_weights(beta)) < 0.02


def test_gaussian_closed_forms_match_resampling():
    """Gaussian x linear and x quadratic: the closed-form mean agrees with importance resampling to 0.05."""
    g = toys.get_target("gaussian")
    quad = toys.GaussianQuadratic(
        mean=jnp.array([0.5, 0.0]), cov=jnp.eye(2), centre=jnp.array([-1.0, 1.0]), a=jnp.diag(jnp.array([2.0, 0.5]))
    )
    for target in (g, quad):
        x = toys.AbstractTarget.sample_target(target, jax.random.key(1), 40_000, 1.0)
        np.testing.assert_allclose(x.mean(0), target.target_mean(1.0), atol=0.05)


def test_eight_gaussians_energy_is_flat_on_each_mode():
    """E = -k/7 on mode k to within 2e-3 over 20k samples, so the exact mode weights are exp(beta k / 7) normalised."""
    t = toys.EightGaussians()
    x = t.sample(jax.random.key(0), 20_000)
    e = np.asarray(jax.vmap(t.energy)(x))
    modes = np.asarray(t.mode_of(x))
    np.testing.assert_allclose(e, -modes / 7.0, atol=2e-3)
    w = np.asarray(t.target_weights(7.0))
    np.testing.assert_allclose(w[1:] / w[:-1], np.e, rtol=1e-5)


def test_total_variation():
    assert toys.total_variation([1, 0], [0, 1]) == pytest.approx(1.0)
    assert toys.total_variation([0.5, 0.5], [1, 1]) == pytest.approx(0.0)
    assert toys.total_variation([0.2, 0.8], [0.5, 0.5]) == pytest.approx(0.3)

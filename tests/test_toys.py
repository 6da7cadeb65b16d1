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


# ----------------------------------------------------------------------------------------------------------------------
# The closed forms against quadrature of p(x) exp(-beta E(x)) on a grid, at several beta (not only beta = 1, where a
# beta stuck at 1 would pass).

BETAS = (0.0, 0.5, 2.5)
# A 641 x 641 grid of step 0.025 on [-8, 8]^2: every density here has its mass within 8 of the origin (to < 1e-14) and
# standard deviations >= 0.1 (>= 4 grid steps), where a Riemann sum of a smooth, decaying integrand is accurate to
# ~1e-10 relative; the comparisons are therefore limited by the float32 closed forms (rtol 1e-4).
_AXIS = np.linspace(-8.0, 8.0, 641)
GRID = np.stack(np.meshgrid(_AXIS, _AXIS, indexing="ij"), axis=-1).reshape(-1, 2)


def _gaussian_log_density(x, mean, cov):
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    r = x - mean
    return -0.5 * np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r) - 0.5 * np.log(np.linalg.det(2 * np.pi * cov))


def _tilted(log_p, energies, beta):
    """Mass, mean and covariance of `p exp(-beta E)` on the grid (float64)."""
    log_w = log_p - beta * energies
    shift = log_w.max()
    w = np.exp(log_w - shift)
    mass = w.sum()
    mean = w @ GRID / mass
    r = GRID - mean
    return np.log(mass) + shift, mean, (w[:, None] * r).T @ r / mass


def _energies(target):
    return np.asarray(jax.vmap(target.energy)(jnp.asarray(GRID, jnp.float32)), np.float64)


@pytest.mark.parametrize("beta", BETAS)
def test_gaussian_closed_forms_match_quadrature(beta):
    """Gaussian x linear and Gaussian x quadratic: `target_mean` and `target_cov` equal the tilted moments."""
    quad = toys.GaussianQuadratic(
        mean=jnp.array([0.5, 0.0]), cov=jnp.eye(2), centre=jnp.array([-1.0, 1.0]), a=jnp.diag(jnp.array([2.0, 0.5]))
    )
    for target in (toys.get_target("gaussian"), quad):
        _, mean, cov = _tilted(_gaussian_log_density(GRID, target.mean, target.cov), _energies(target), beta)
        np.testing.assert_allclose(target.target_mean(beta), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(target.target_cov(beta), cov, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("beta", BETAS)
def test_mixture_closed_form_matches_quadrature(beta):
    """Mixture x linear: each component's tilted mass gives `target_weights`, its tilted mean `target_means`."""
    mix = toys.get_target("mixture")
    energies = _energies(mix)
    parts = [
        _tilted(np.log(float(w)) + _gaussian_log_density(GRID, m, c), energies, beta)
        for w, m, c in zip(mix.weights, mix.means, mix.covs)
    ]
    log_mass = np.array([p[0] for p in parts])
    weights = np.exp(log_mass - log_mass.max())
    np.testing.assert_allclose(mix.target_weights(beta), weights / weights.sum(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mix.target_means(beta), np.stack([p[1] for p in parts]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("beta", BETAS)
def test_eight_gaussians_weights_match_quadrature(beta):
    """The mass of `p exp(-beta E)` around each mode (grid points assigned to the nearest centre) is
    `target_weights(beta)` to 2e-3: the energy is flat on each mode only to ~2e-3, which moves a weight by at most
    about `beta * 2e-3` relative. A beta stuck at 1 is off by more than 0.05 at beta = 2.5 or 0."""
    target = toys.EightGaussians()
    centres = np.asarray(target.centres, np.float64)
    log_p = np.logaddexp.reduce(
        [np.log(1 / 8) + _gaussian_log_density(GRID, c, target.std**2 * np.eye(2)) for c in centres], axis=0
    )
    w = np.exp(log_p - beta * _energies(target))
    modes = np.argmin(((GRID[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    mass = np.bincount(modes, weights=w, minlength=8)
    np.testing.assert_allclose(target.target_weights(beta), mass / mass.sum(), atol=2e-3)

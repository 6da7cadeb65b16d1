"""`energyflow.fit` end to end on targets with a closed-form answer (docs/maths.md, "Targets with a known answer"),
and its input checks.

The statistical tests use fixed seeds (data, training and sampling keys), so they are deterministic on a given
platform; tolerances are several times the Monte-Carlo error of the sample statistics (stated at each test) and
well below the size of the effect being tested (the shift from `p` to `q`), so a model that ignored the energy fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import energyflow as ef
from energyflow import _fit, energy_guided_loss, toys

N_DATA = 20_000
N_SAMPLES = 8_000
FIT = dict(steps=1500, batch_size=512, width=128, depth=3, log_every=500, progress=False)


@pytest.fixture(scope="module")
def gaussian():
    return toys.get_target("gaussian")


@pytest.fixture(scope="module")
def mixture():
    return toys.get_target("mixture")


@pytest.fixture(scope="module")
def gaussian_fits(gaussian):
    data = gaussian.sample(jax.random.key(0), N_DATA)
    return {
        method: ef.fit(data, gaussian.energy, beta=1.0, method=method, key=jax.random.key(1), **FIT)
        for method in ("weighted", "guided", "plain")
    }


@pytest.mark.parametrize("method", ["weighted", "guided"])
def test_fit_gaussian_times_linear(gaussian, gaussian_fits, method):
    """q = N(m - beta S b, S): the sample mean is within 0.1 and the covariance within 0.15 of the exact ones.

    Monte-Carlo error of the mean with 8000 samples is ~0.01 per coordinate; the shift being tested is 0.76.
    """
    x = np.asarray(gaussian_fits[method].sample(jax.random.key(2), N_SAMPLES))
    np.testing.assert_allclose(x.mean(0), gaussian.target_mean(1.0), atol=0.1)
    np.testing.assert_allclose(np.cov(x.T), gaussian.target_cov(1.0), atol=0.15)


def test_plain_fit_ignores_energy(gaussian, gaussian_fits):
    """The plain flow reproduces p, not q: its mean is near m and far from the tilted mean."""
    x = np.asarray(gaussian_fits["plain"].sample(jax.random.key(2), N_SAMPLES))
    np.testing.assert_allclose(x.mean(0), gaussian.mean, atol=0.1)
    assert np.linalg.norm(x.mean(0) - gaussian.target_mean(1.0)) > 0.5


def test_log_prob_matches_the_exact_density(gaussian, gaussian_fits):
    """The plain flow's log-density at data points is within 0.15 nats (mean absolute error) of log N(x; m, S)."""
    model = gaussian_fits["plain"]
    x = gaussian.sample(jax.random.key(3), 2000)
    exact = jax.vmap(lambda p: jax.scipy.stats.multivariate_normal.logpdf(p, gaussian.mean, gaussian.cov))(x)
    lp = model.log_prob(x)
    assert lp.shape == (2000,)
    assert float(jnp.mean(jnp.abs(lp - exact))) < 0.15


def test_sample_with_log_prob_agrees_with_log_prob(gaussian_fits):
    """One augmented solve gives the same log-density as a separate backward solve (to 0.05 nats)."""
    model = gaussian_fits["weighted"]
    x, lp = model.sample_with_log_prob(jax.random.key(4), 500)
    np.testing.assert_allclose(lp, model.log_prob(x), atol=0.05)


@pytest.mark.parametrize("method", ["weighted", "guided"])
def test_fit_mixture_times_linear(mixture, method):
    """Mode weights of q (closed form) are matched to total variation < 0.05; medians of the modes holding >= 10% of q within 0.15.

    Sampling error of the mode fractions with 8000 samples is ~0.005 in TV; p's own weights are 0.19 away in TV.
    """
    beta = 1.5
    data = mixture.sample(jax.random.key(10), N_DATA)
    model = ef.fit(data, mixture.energy, beta=beta, method=method, key=jax.random.key(11), **FIT)
    x = model.sample(jax.random.key(12), N_SAMPLES)
    comp = np.asarray(mixture.component_of(x, beta))
    fractions = toys.mode_fractions(comp, 3)
    exact = np.asarray(mixture.target_weights(beta))
    assert toys.total_variation(mixture.weights, exact) > 0.15  # the test can tell p from q
    assert toys.total_variation(fractions, exact) < 0.05
    # Medians, not means: a flow leaves a thin trail of samples between modes that drags a per-mode mean. Only modes
    # holding >= 10% of q are checked (the tilt leaves mode 1 with 2%, ~180 samples, mostly that trail).
    means = np.asarray(mixture.target_means(beta))
    for k in np.flatnonzero(exact >= 0.1):
        np.testing.assert_allclose(np.median(np.asarray(x)[comp == k], axis=0), means[k], atol=0.15)


@pytest.mark.parametrize("method", ["weighted", "guided"])
def test_fit_follows_beta(gaussian, method):
    """At beta = 2.5 the tilted mean `m - beta S b` moves 1.9 from `m`; the fitted mean is within 0.15 of it.

    A beta stuck at 1 would land 1.1 away (`1.5 |S b|`). Monte-Carlo error of the mean with 8000 samples is ~0.01
    per coordinate; EFM's batch normaliser at this tilt leaves ~70 effective points of 512 per batch, whose bias on
    the mean measured here is < 0.05.
    """
    beta = 2.5
    data = gaussian.sample(jax.random.key(0), N_DATA)
    model = ef.fit(data, gaussian.energy, beta=beta, method=method, key=jax.random.key(1), **FIT)
    x = np.asarray(model.sample(jax.random.key(2), N_SAMPLES))
    np.testing.assert_allclose(x.mean(0), gaussian.target_mean(beta), atol=0.15)


def test_guided_weights_at_t_share_one_time_per_group(monkeypatch):
    """With `guided_weight_at="t"` the loss gets one time per group of `guided_group_size` consecutive examples
    (`[t1]*G + [t2]*G + ...`, so that `softmax(log Z_t)` compares examples at the same time), and different groups
    get different times. The loss `fit` builds is run once outside `jit`, with `energy_guided_loss` observed."""
    seen = {}

    def observed(*args, **kwargs):
        seen.update(kwargs)
        return energy_guided_loss(*args, **kwargs)

    monkeypatch.setattr(_fit, "energy_guided_loss", observed)
    groups, group_size = 4, 8
    loss = _fit._make_loss(
        "guided", ef.CondOTScheduler(), 2.0, linear, True, "t", "linear", "mean", group_size, "sqrt"
    )
    model = ef.MLPVelocity(2, width=8, depth=1, key=jax.random.key(0))
    x1 = jax.random.normal(jax.random.key(1), (groups * group_size, 2))
    assert np.isfinite(float(loss(model, x1, None, jax.random.key(2))))
    assert seen["group_size"] == group_size and seen["weighted"] and seen["weight_at"] == "t"
    t = np.asarray(seen["t"]).reshape(groups, group_size)
    np.testing.assert_array_equal(t, np.repeat(t[:, :1], group_size, axis=1))
    assert len(np.unique(t[:, 0])) == groups


def test_fit_guided_weights_at_t_runs():
    """`fit(method="guided", guided_weight_at="t")` trains (a few steps) and refuses a batch that its groups do not
    divide."""
    model = ef.fit(GOOD, linear, beta=1.0, method="guided", guided_weight_at="t", guided_group_size=16, batch_size=32,
                   steps=3, log_every=3, width=8, depth=1, key=jax.random.key(0), progress=False)
    assert model.loss_history.shape == (3,) and np.all(np.isfinite(model.loss_history))
    with pytest.raises(ValueError, match="multiple of guided_group_size"):
        ef.fit(GOOD, linear, beta=1.0, method="guided", guided_weight_at="t", guided_group_size=24, batch_size=32,
               key=jax.random.key(0), progress=False)


# ----------------------------------------------------------------------------------------------------------------------
# Bad input: a clear error at the boundary, before anything is compiled.

GOOD = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)


def linear(x):
    return x[0]


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros(10), "2-D array"),
        (np.zeros((0, 2)), "at least one point"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or inf"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or inf"),
        (np.zeros((3, 2, 2)), "2-D array"),
    ],
)
def test_fit_rejects_bad_data(data, match):
    with pytest.raises(ValueError, match=match):
        ef.fit(data, linear, beta=1.0, key=jax.random.key(0))


def test_fit_rejects_bad_energy():
    with pytest.raises(ValueError, match="scalar"):
        ef.fit(GOOD, lambda x: x, beta=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="NaN or inf"):
        ef.fit(GOOD, lambda x: jnp.log(x[0] - 100.0), beta=1.0, key=jax.random.key(0))
    with pytest.raises(TypeError, match="function"):
        ef.fit(GOOD, 3.0, beta=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="needs an energy"):
        ef.fit(GOOD, None, beta=1.0, key=jax.random.key(0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(beta=-1.0), ValueError, "beta must be"),
        (dict(beta=float("nan")), ValueError, "beta must be"),
        (dict(beta=1.0, steps=0), ValueError, "steps must be a positive integer"),
        (dict(beta=1.0, steps=2.5), TypeError, "steps must be a positive integer"),
        (dict(beta=1.0, batch_size=-3), ValueError, "batch_size"),
        (dict(beta=1.0, method="nope"), ValueError, "method must be one of"),
        (dict(beta=1.0, sample_steps=0), ValueError, "sample_steps"),
    ],
)
def test_fit_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        ef.fit(GOOD, linear, key=jax.random.key(0), **kwargs)


def test_fitted_model_rejects_bad_points(gaussian_fits):
    model = gaussian_fits["plain"]
    with pytest.raises(ValueError, match="2 columns"):
        model.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(jax.random.key(0), 0)

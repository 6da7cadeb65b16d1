"""Properties of the flow-matching losses (docs/maths.md): CFM, energy-weighted (EFM), energy-guided.

Every loss is compared on pinned draws (`x0`, `t` given), so the properties are deterministic identities between
losses; tolerances are float32 rounding of sums over a handful of examples unless a test says otherwise.
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

from energyflow import (
    AbstractProbPath,
    AffineProbPath,
    CondOTScheduler,
    CosineScheduler,
    GuidedGaussianPath,
    MLPVelocity,
    cfm_loss,
    energy_guided_loss,
    energy_weighted_loss,
    energy_weights,
    group_softmax,
    tempered_beta,
)

SETTINGS = settings(max_examples=30, deadline=None)
N, DIM, CTX = 8, 2, 2

PATH = AffineProbPath(CondOTScheduler())
MODEL = MLPVelocity(DIM, width=16, depth=2, time_embed_dim=8, key=jax.random.key(0))
CONTEXT_MODEL = MLPVelocity(DIM, context_dim=CTX, width=16, depth=2, time_embed_dim=8, key=jax.random.key(1))

# Compiled once per shape and static configuration; arrays (model weights, beta, data) are traced.
cfm = eqx.filter_jit(cfm_loss)
efm = eqx.filter_jit(energy_weighted_loss)
guided = eqx.filter_jit(energy_guided_loss)


def quartic_energy(x):
    """A curved energy of one point."""
    return 0.25 * jnp.sum(x**4) - jnp.sum(x)


def contextual_energy(x, c):
    """`E(x, c) = |x - c|^2 / 2 + 0.1 sum(x^4)`: its value and its gradient in `x` both depend on the context."""
    return 0.5 * jnp.sum((x - c) ** 2) + 0.1 * jnp.sum(x**4)


def _floats(shape, lo, hi):
    """float32 JAX arrays (the losses take JAX arrays, not NumPy ones)."""
    # XLA on CPU flushes subnormals to zero, so they are left out of the draws.
    elements = st.floats(lo, hi, width=32, allow_subnormal=False)
    return hnp.arrays(np.float32, shape, elements=elements).map(jnp.asarray)


@st.composite
def batches(draw, n=N):
    """Data, noise and times of one pinned batch."""
    return draw(_floats((n, DIM), -3.0, 3.0)), draw(_floats((n, DIM), -3.0, 3.0)), draw(_floats((n,), 0.0, 1.0))


# ---------------------------------------------------------------------------------------------------------------
# EFM (docs/maths.md, "Energy-weighted flow matching").


@SETTINGS
@given(batch=batches(), energies=_floats((N,), -1e4, 1e4), c=st.floats(-1e4, 1e4), beta=st.floats(0.0, 100.0))
def test_efm_without_tilt_is_cfm(batch, energies, c, beta):
    """`beta = 0` (any energies) or a constant energy (any beta, up to |beta E| = 1e6) gives the CFM batch mean.

    The weights are then exactly 1/8; the two losses differ only in summation order: rtol 1e-5.
    """
    x1, x0, t = batch
    plain = cfm(MODEL, PATH, x1, x_0=x0, t=t)
    zero_beta = efm(MODEL, PATH, x1, energies, beta=jnp.float32(0.0), x_0=x0, t=t)
    constant = efm(MODEL, PATH, x1, jnp.full((N,), c, jnp.float32), beta=jnp.float32(beta), x_0=x0, t=t)
    np.testing.assert_allclose(zero_beta, plain, rtol=1e-5)
    np.testing.assert_allclose(constant, plain, rtol=1e-5)


@SETTINGS
@given(batch=batches(), energies=_floats((N,), -3.0, 3.0), c=st.floats(-50.0, 50.0), beta=st.floats(0.0, 5.0))
def test_efm_ignores_a_constant_added_to_the_energy(batch, energies, c, beta):
    """`E -> E + c` changes neither the weights nor the loss.

    In float32, `beta (E + c)` is rounded to ~2 ulp of 265 (~3e-5 absolute), so a weight moves by < 1e-4 relative:
    rtol 2e-4. A weighting that is not shift-invariant (e.g. `exp(-beta E)` divided by the batch size) would be
    off by a factor `exp(-beta c)`.
    """
    x1, x0, t = batch
    shifted = energies + jnp.float32(c)
    beta = jnp.float32(beta)
    np.testing.assert_allclose(energy_weights(shifted, beta), energy_weights(energies, beta), rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(
        efm(MODEL, PATH, x1, shifted, beta=beta, x_0=x0, t=t),
        efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t),
        rtol=2e-4,
    )


@SETTINGS
@given(
    batch=batches(),
    energies=_floats((N,), -3.0, 3.0),
    beta=st.floats(0.0, 10.0),
    perm=st.permutations(range(N)),
    group_perm=st.permutations(range(2)),
)
def test_efm_is_invariant_to_permuting_the_batch(batch, energies, beta, perm, group_perm):
    """Permuting examples together with their `(x0, t, E)` leaves the loss unchanged; with groups of 4, so does
    permuting whole groups (and examples within a group). Only the summation order changes: rtol 1e-5."""
    x1, x0, t = batch
    beta = jnp.float32(beta)
    reference = efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t)
    p = np.asarray(perm)
    np.testing.assert_allclose(efm(MODEL, PATH, x1[p], energies[p], beta=beta, x_0=x0[p], t=t[p]), reference, rtol=1e-5)

    grouped = efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t, group_size=4)
    # New order: groups in `group_perm` order; inside each group, the order in which `perm` lists 0..3.
    within = [i for i in perm if i < 4]
    q = np.array([4 * g + w for g in group_perm for w in within])
    np.testing.assert_allclose(
        efm(MODEL, PATH, x1[q], energies[q], beta=beta, x_0=x0[q], t=t[q], group_size=4), grouped, rtol=1e-5
    )


@st.composite
def compositions(draw, total=10, parts=4):
    """Positive integers `k_1..k_parts` summing to `total`."""
    cuts = sorted(draw(st.lists(st.integers(1, total - 1), min_size=parts - 1, max_size=parts - 1, unique=True)))
    return np.diff([0, *cuts, total])


@SETTINGS
@given(batch=batches(4), k=compositions(), beta=st.floats(0.1, 100.0))
def test_efm_integer_weights_equal_repeating_samples(batch, k, beta):
    """Sample i repeated k_i times with the same `(t, x0)`: plain CFM on the repeated batch (10 rows) equals EFM on
    the 4 unique rows with weights proportional to k_i, obtained from `E_i = -log(k_i) / beta`.

    `-beta E_i` reproduces `log k_i` to float32 rounding; rtol 1e-5.
    """
    x1, x0, t = batch
    rep = np.repeat(np.arange(4), k)
    repeated = cfm(MODEL, PATH, x1[rep], x_0=x0[rep], t=t[rep])
    energies = jnp.asarray(-np.log(k) / beta, jnp.float32)
    weighted = efm(MODEL, PATH, x1, energies, beta=jnp.float32(beta), x_0=x0, t=t)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-5)


@SETTINGS
@given(batch=batches(), energies=_floats((N,), -1e4, 1e4), beta=st.floats(0.0, 100.0))
def test_efm_weights_stay_finite_for_huge_energies(batch, energies, beta):
    """Energies of magnitude 1e4 and beta up to 100 (exponents up to 1e6) give finite weights that sum to one over
    the batch (1/G per group) and put the largest weight on the lowest energy; the loss stays finite.
    atol 1e-6: float32 rounding of a sum of at most 8 terms of size <= 1."""
    x1, x0, t = batch
    beta = jnp.float32(beta)
    for group_size, groups in [(None, 1), (4, 2)]:
        w = np.asarray(energy_weights(energies, beta, group_size))
        assert np.all(np.isfinite(w)) and np.all(w >= 0.0)
        np.testing.assert_allclose(w.reshape(groups, -1).sum(axis=1), 1.0 / groups, atol=1e-6)
        e = np.asarray(energies).reshape(groups, -1)
        w_g = w.reshape(groups, -1)
        for g in range(groups):
            assert w_g[g, np.argmin(e[g])] == w_g[g].max()
        assert np.isfinite(efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t, group_size=group_size))


def test_efm_weights_of_extreme_energies():
    """A single example with energy -1e4 among +1e4 takes all the weight at beta = 100 (no 0/0, no inf)."""
    energies = jnp.array([1e4, -1e4, 1e4, 1e4])
    np.testing.assert_array_equal(energy_weights(energies, 100.0), [0.0, 1.0, 0.0, 0.0])


@SETTINGS
@given(
    batch=batches(), energies=_floats((N,), -3.0, 3.0), beta=st.floats(0.1, 10.0), cap=st.floats(-5.0, 5.0)
)
def test_capped_efm_weights_are_the_softmax_of_capped_logits(batch, energies, beta, cap):
    """`max_log_weight` caps `-beta E` before normalising: the weights match a float64 softmax of
    `min(-beta E, cap)` (rtol 1e-5: float32 exp), every example at or beyond the cap weighs the same, and a cap
    above every logit changes nothing (the same float32 operations: exact). The loss uses those weights."""
    x1, x0, t = batch
    beta = jnp.float32(beta)
    w = np.asarray(energy_weights(energies, beta, max_log_weight=cap))
    logits = np.minimum(-float(beta) * np.asarray(energies, np.float64), cap)
    ref = np.exp(logits - logits.max())
    np.testing.assert_allclose(w, ref / ref.sum(), rtol=1e-5, atol=1e-12)
    capped = logits >= cap
    if capped.sum() > 1:
        np.testing.assert_allclose(w[capped], w[capped][0], rtol=1e-6)
    above = float(jnp.max(-beta * energies)) + 1.0
    np.testing.assert_array_equal(energy_weights(energies, beta, max_log_weight=above), energy_weights(energies, beta))
    x_t = t[:, None] * x1 + (1.0 - t[:, None]) * x0
    errors = np.array([float(jnp.sum((MODEL(x_t[i], t[i], None) - (x1[i] - x0[i])) ** 2)) for i in range(N)])
    np.testing.assert_allclose(
        efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t, max_log_weight=cap), np.sum(w * errors), rtol=1e-5
    )


@SETTINGS
@given(
    group_size=st.sampled_from([1, 2, 3, 4, 6, 12]),
    logits=_floats((12,), -10.0, 10.0),
    noise=_floats((12,), -10.0, 10.0),
)
def test_group_softmax(group_size, logits, noise):
    """Each group is a softmax of its own logits scaled by 1/G (G groups), matching a float64 reference to rtol
    1e-5 (float32 exp), summing to 1/G; changing the logits of other groups leaves a group's weights unchanged
    (each group is normalised on its own, so the same float32 operations: rtol 1e-6)."""
    groups = 12 // group_size
    w = np.asarray(group_softmax(logits, group_size))
    ref = np.exp(np.asarray(logits, np.float64).reshape(groups, group_size))
    ref = (ref / ref.sum(axis=1, keepdims=True) / groups).reshape(12)
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(w.reshape(groups, group_size).sum(axis=1), 1.0 / groups, rtol=1e-5)
    # Perturb every group except the first.
    other = logits.at[group_size:].add(noise[group_size:])
    np.testing.assert_allclose(np.asarray(group_softmax(other, group_size))[:group_size], w[:group_size], rtol=1e-6)


@pytest.mark.parametrize("group_size", [0, -2, 5])
def test_group_size_must_divide_the_batch(group_size):
    """A group size that is not a positive divisor of the batch is refused with a message naming it."""
    with pytest.raises(ValueError, match="group_size"):
        energy_weights(jnp.zeros(12), 1.0, group_size)


@SETTINGS
@given(batch=batches(), energies=_floats((N,), -3.0, 3.0), beta=st.floats(0.0, 10.0))
def test_grouped_efm_is_the_mean_of_per_group_losses(batch, energies, beta):
    """With `group_size`, EFM is the average over groups of the EFM loss of each group alone: a group's weights do
    not depend on the other groups, and each group counts 1/G. Summation order only: rtol 1e-5."""
    x1, x0, t = batch
    beta = jnp.float32(beta)
    grouped = efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t, group_size=4)
    parts = [
        efm(MODEL, PATH, x1[s], energies[s], beta=beta, x_0=x0[s], t=t[s]) for s in (slice(0, 4), slice(4, 8))
    ]
    np.testing.assert_allclose(grouped, np.mean(parts), rtol=1e-5)


def test_efm_weights_carry_no_gradient():
    """The weights are constants for the optimiser: the gradient of EFM with respect to a scale of the energies is
    exactly zero, while the gradient with respect to the model is not."""
    x1 = jax.random.normal(jax.random.key(2), (N, DIM))
    x0 = jax.random.normal(jax.random.key(3), (N, DIM))
    t = jax.random.uniform(jax.random.key(4), (N,))
    energies = jnp.linspace(-1.0, 1.0, N)
    grad_scale = jax.grad(lambda a: efm(MODEL, PATH, x1, a * energies, beta=jnp.float32(2.0), x_0=x0, t=t))(1.0)
    assert grad_scale == 0.0
    grads = eqx.filter_grad(lambda m: efm(m, PATH, x1, energies, beta=jnp.float32(2.0), x_0=x0, t=t))(MODEL)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def _constant_velocity(x, t, context=None):
    """`v = (0.5, -0.5)` everywhere: with `x_0 = 0` on CondOT the target is `x_1`, so an example's squared error
    `|v - x_1|^2` depends on the example only, not on its draws."""
    return jnp.array([0.5, -0.5]) + 0.0 * x


@pytest.mark.parametrize("cap", [None, 0.5])
def test_resampled_efm_is_unbiased_for_the_weighted_loss(cap):
    """With `resample=m` the loss is the mean error of `m` examples drawn in proportion to the (capped) weights, so
    its average over many draws is the weighted loss `sum_i g_i e_i`. Here each example's error is fixed (the
    constant velocity above, `x_0 = 0`), so the draws are the only randomness: 2000 keys × 16 draws, and the bound
    is 5 standard errors of that average, computed from the exact weights (fixed keys: not flaky)."""
    x1 = jax.random.normal(jax.random.key(40), (N, DIM)) * 2.0
    energies = jnp.linspace(-1.5, 1.5, N)
    beta, m = jnp.float32(2.0), 16
    zeros = dict(x_0=jnp.zeros((m, DIM)), t=jnp.zeros(m))
    keys = jax.random.split(jax.random.key(41), 2000)
    draws = jax.vmap(lambda k: efm(_constant_velocity, PATH, x1, energies, beta=beta, key=k, resample=m,
                                   max_log_weight=cap, **zeros))(keys)
    g = np.asarray(energy_weights(energies, beta, max_log_weight=cap), np.float64)
    errors = np.sum((np.array([0.5, -0.5]) - np.asarray(x1, np.float64)) ** 2, axis=1)
    expected = float(g @ errors)
    standard_error = np.sqrt(float(g @ (errors - expected) ** 2) / (len(keys) * m))
    weighted = efm(_constant_velocity, PATH, x1, energies, beta=beta, max_log_weight=cap, x_0=jnp.zeros((N, DIM)),
                   t=jnp.zeros(N))
    np.testing.assert_allclose(weighted, expected, rtol=1e-5)  # the weighted loss the draws estimate
    assert abs(float(jnp.mean(draws)) - expected) < 5 * standard_error, (float(jnp.mean(draws)), expected)
    assert float(jnp.std(draws)) > 0  # the draws do vary: the average is not the weighted loss computed directly


def test_resampled_efm_draws_its_own_times_and_noise():
    """Each of the `m` resampled examples gets its own `(t, x_0)` and the loss trains the model: with data at 0 and
    the quantile velocity the error is `(x_0 - Phi^{-1}(t))^2`, whose mean is 2 only if the draws are independent
    (4096 draws: standard error 0.044, the bound 0.5 is 11 of them; fixed key)."""
    x1 = jnp.zeros((8, 1))
    loss = energy_weighted_loss(_quantile_velocity, PATH, x1, jnp.linspace(0.0, 1.0, 8), beta=3.0,
                                key=jax.random.key(42), resample=4096)
    assert 1.5 < float(loss) < 2.5, float(loss)
    x1 = jax.random.normal(jax.random.key(43), (N, DIM))
    grads = eqx.filter_grad(lambda m: efm(m, PATH, x1, jnp.zeros(N), beta=jnp.float32(1.0), key=jax.random.key(44),
                                          resample=32))(MODEL)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("bad", ["zero", "bool", "group_size", "no_key"])
def test_bad_resample_is_refused(bad):
    """`resample` must be a positive integer, drawn from the whole batch (no `group_size`), with a key to draw from:
    anything else is a ValueError naming what was wrong."""
    x1 = jnp.zeros((N, DIM))
    kwargs = {"zero": dict(resample=0, key=jax.random.key(0)), "bool": dict(resample=True, key=jax.random.key(0)),
              "group_size": dict(resample=4, group_size=4, key=jax.random.key(0)),
              "no_key": dict(resample=4, x_0=jnp.zeros((4, DIM)), t=jnp.zeros(4))}[bad]
    with pytest.raises(ValueError, match={"zero": "positive", "bool": "positive", "group_size": "group_size",
                                          "no_key": "key"}[bad]):
        energy_weighted_loss(MODEL, PATH, x1, jnp.zeros(N), beta=1.0, **kwargs)


def _ess_fraction(energies, beta):
    g = np.asarray(energy_weights(energies, beta), np.float64)
    return 1.0 / np.sum(g**2) / len(g)


@SETTINGS
@given(energies=_floats((64,), -3.0, 3.0), beta=st.floats(0.1, 20.0), min_ess=st.floats(0.05, 0.95))
def test_tempered_beta_keeps_the_effective_sample_size(energies, beta, min_ess):
    """`tempered_beta` is `beta` when its weights keep `min_ess` of the batch, else the inverse temperature whose
    weights keep exactly that: checked in float64 from the returned value (the bisection's 30 halvings leave it
    within beta 2^-30 of the root; the tolerance 2e-3 is float32 rounding of the weights)."""
    b = float(tempered_beta(energies, jnp.float32(beta), min_ess))
    assert 0.0 <= b <= beta * (1 + 1e-6)
    if _ess_fraction(energies, jnp.float32(beta)) >= min_ess + 2e-3:
        assert b == pytest.approx(beta, rel=1e-6)
    elif b < beta * (1 - 1e-4):
        assert _ess_fraction(energies, jnp.float32(b)) == pytest.approx(min_ess, abs=2e-3)


def test_efm_with_min_ess_is_efm_at_the_tempered_beta():
    """`min_ess` only changes the inverse temperature: the loss equals EFM at `tempered_beta`'s value (same draws),
    which here is well below `beta` (the energies spread over 8 units, so beta = 5 leaves about one example)."""
    x1 = jax.random.normal(jax.random.key(45), (N, DIM))
    x0 = jax.random.normal(jax.random.key(46), (N, DIM))
    t = jax.random.uniform(jax.random.key(47), (N,))
    energies, beta = jnp.linspace(-4.0, 4.0, N), jnp.float32(5.0)
    b = tempered_beta(energies, beta, 0.5)
    assert float(b) < 0.5 * float(beta)
    np.testing.assert_allclose(efm(MODEL, PATH, x1, energies, beta=beta, min_ess=0.5, x_0=x0, t=t),
                               efm(MODEL, PATH, x1, energies, beta=b, x_0=x0, t=t), rtol=1e-6)
    assert abs(float(efm(MODEL, PATH, x1, energies, beta=beta, x_0=x0, t=t))
               - float(efm(MODEL, PATH, x1, energies, beta=b, x_0=x0, t=t))) > 1e-3
    with pytest.raises(ValueError, match="min_ess must be a fraction"):
        energy_weighted_loss(MODEL, PATH, x1, energies, beta=1.0, min_ess=1.5, x_0=x0, t=t)
    with pytest.raises(ValueError, match="group_size"):
        energy_weighted_loss(MODEL, PATH, x1, energies, beta=1.0, min_ess=0.5, group_size=4, x_0=x0, t=t)


# ---------------------------------------------------------------------------------------------------------------
# The energy-guided loss (docs/maths.md, "The energy-guided Gaussian path").


@pytest.mark.parametrize("scheduler", [CondOTScheduler(), CosineScheduler()], ids=["condot", "cosine"])
@pytest.mark.parametrize("gradient", ["mean", "data"])
def test_guided_loss_without_guidance_is_cfm(scheduler, gradient):
    """`lambda = 0` (beta = 0): the guided loss, weighted or not, is the CFM loss on the same draws (the weights
    `softmax(log Z_t)` are uniform). Compiled separately, the two programs may round differently: rtol 1e-5."""
    x1 = jax.random.normal(jax.random.key(5), (N, DIM))
    x0 = jax.random.normal(jax.random.key(6), (N, DIM))
    t = jax.random.uniform(jax.random.key(7), (N,))
    path = GuidedGaussianPath(scheduler, beta=jnp.float32(0.0), gradient=gradient)
    plain = cfm(MODEL, AffineProbPath(scheduler), x1, x_0=x0, t=t)
    np.testing.assert_allclose(guided(MODEL, path, x1, quartic_energy, x_0=x0, t=t), plain, rtol=1e-5)
    np.testing.assert_allclose(guided(MODEL, path, x1, quartic_energy, x_0=x0, t=t, weighted=True), plain, rtol=1e-5)


@eqx.filter_jit
def _guided_errors_and_log_z(path, x_1, x_0, t):
    """Per-example squared errors of the guided path (unweighted) and `log Z_t(x_1)`, one example at a time."""

    def one(a, b, c):
        err = energy_guided_loss(MODEL, path, a[None], quartic_energy, x_0=b[None], t=c[None])
        return err, path.log_normalizer(a, c, quartic_energy)

    return jax.vmap(one)(x_1, x_0, t)


@SETTINGS
@given(batch=batches(), beta=st.floats(0.0, 5.0), gradient=st.sampled_from(["mean", "data"]))
def test_weighted_guided_loss_at_t1_is_efm(batch, beta, gradient):
    """At t = 1 with sigma_1 = 0 (CondOT, sigma_min = 0) the guided conditional is the data point, its velocity is
    `x1 - x0` and `log Z_1 = -beta E(x1)`: the weighted guided loss is exactly EFM, with either `weight_at`.

    At the drawn times (t < 1) the two `weight_at` differ, and each must give its own weights on the guided errors:
    `"endpoint"` EFM's weights `softmax(-beta E(x1))` (so it equals `energy_weighted_loss` on the guided path),
    `"t"` the weights `softmax(log Z_t(x1))` (float64 reference). Same float32 quantities by two routes: rtol 1e-5
    (a sum of 8 terms; the float64 softmax differs from float32's by < 1e-6 relative).
    """
    x1, x0, t = batch
    beta = jnp.float32(beta)
    path = GuidedGaussianPath(CondOTScheduler(), beta=beta, gradient=gradient)
    ones = jnp.ones(N)
    reference = efm(MODEL, PATH, x1, quartic_energy, beta=beta, x_0=x0, t=ones)
    for weight_at in ("t", "endpoint"):
        loss = guided(MODEL, path, x1, quartic_energy, x_0=x0, t=ones, weighted=True, weight_at=weight_at)
        np.testing.assert_allclose(loss, reference, rtol=1e-5, atol=1e-6)

    errors, log_z_t = (np.asarray(a, np.float64) for a in _guided_errors_and_log_z(path, x1, x0, t))
    at_t = guided(MODEL, path, x1, quartic_energy, x_0=x0, t=t, weighted=True, weight_at="t")
    np.testing.assert_allclose(at_t, np.sum(_softmax_groups(log_z_t, N) * errors), rtol=1e-5, atol=1e-6)
    at_endpoint = guided(MODEL, path, x1, quartic_energy, x_0=x0, t=t, weighted=True, weight_at="endpoint")
    np.testing.assert_allclose(at_endpoint, efm(MODEL, path, x1, quartic_energy, beta=beta, x_0=x0, t=t), rtol=1e-5)


def test_weight_at_values_differ_away_from_t1():
    """On a fixed batch at t = 0.5 and beta = 3 the two normalisers give losses more than 10% apart, so a loss that
    ignored `weight_at` fails the references of `test_weighted_guided_loss_at_t1_is_efm`; the default is
    `"endpoint"` (the one that does not under-tilt)."""
    x1 = jax.random.normal(jax.random.key(20), (N, DIM))
    x0 = jax.random.normal(jax.random.key(21), (N, DIM))
    t = jnp.full((N,), 0.5)
    path = GuidedGaussianPath(CondOTScheduler(), beta=jnp.float32(3.0))
    losses = {w: float(guided(MODEL, path, x1, quartic_energy, x_0=x0, t=t, weighted=True, weight_at=w))
              for w in ("t", "endpoint")}
    assert abs(losses["t"] - losses["endpoint"]) > 0.1 * losses["endpoint"], losses
    default = float(guided(MODEL, path, x1, quartic_energy, x_0=x0, t=t, weighted=True))
    assert default == losses["endpoint"]


def test_guided_loss_trains_only_the_model():
    """The regression target and the weights carry no gradient: the loss has zero gradient in the path's beta
    (which moves the target and the weights) and a non-zero gradient in the model."""
    x1 = jax.random.normal(jax.random.key(8), (N, DIM))
    x0 = jax.random.normal(jax.random.key(9), (N, DIM))
    t = jax.random.uniform(jax.random.key(10), (N,))

    def loss(beta, model, weighted):
        path = GuidedGaussianPath(CondOTScheduler(), beta=beta)
        return guided(model, path, x1, quartic_energy, x_0=x0, t=t, weighted=weighted)

    for weighted in (False, True):
        assert jax.grad(loss)(jnp.float32(1.5), MODEL, weighted) == 0.0
    grads = eqx.filter_grad(lambda m: loss(jnp.float32(1.5), m, True))(MODEL)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


# ---------------------------------------------------------------------------------------------------------------
# Losses with a context: a model and an energy that use it, against per-example references.


@pytest.fixture(scope="module")
def context_batch():
    """Two states (contexts), each shared by a group of four candidate actions, as in QIPO."""
    keys = jax.random.split(jax.random.key(11), 4)
    x1 = jax.random.normal(keys[0], (N, DIM))
    x0 = jax.random.normal(keys[1], (N, DIM))
    t = jax.random.uniform(keys[2], (N,))
    states = jax.random.normal(keys[3], (2, CTX))
    context = jnp.repeat(states, 4, axis=0)
    return x1, x0, t, context


def _reference_errors(model, x_t, u, t, context):
    """`|v(x_t,i, t_i, c_i) - u_i|^2`, one example at a time."""
    return np.array([float(jnp.sum((model(x_t[i], t[i], context[i]) - u[i]) ** 2)) for i in range(x_t.shape[0])])


def _softmax_groups(logits, group_size):
    z = np.asarray(logits, np.float64).reshape(-1, group_size)
    w = np.exp(z - z.max(axis=1, keepdims=True))
    return (w / w.sum(axis=1, keepdims=True) / z.shape[0]).reshape(-1)


def test_context_model_uses_its_context(context_batch):
    """Sanity check for the context tests: the loss changes when the context changes (so they can fail)."""
    x1, x0, t, context = context_batch
    a = cfm(CONTEXT_MODEL, PATH, x1, x_0=x0, t=t, context=context)
    b = cfm(CONTEXT_MODEL, PATH, x1, x_0=x0, t=t, context=context + 1.0)
    assert abs(float(a) - float(b)) > 1e-3


def test_cfm_and_efm_with_context_match_per_example_reference(context_batch):
    """CFM and grouped EFM with a context equal a per-example computation: `x_t = t x1 + (1 - t) x0`,
    `u = x1 - x0`, `v(x_t, t, c_i)`, weights `softmax(-beta E(x1_i, c_i))` within each state's group (float64).
    A callable energy `E(x, c)` gives the same loss as its precomputed values. Float32 vs float64: rtol 1e-5."""
    x1, x0, t, context = context_batch
    beta = 1.5
    x_t = t[:, None] * x1 + (1.0 - t[:, None]) * x0
    errors = _reference_errors(CONTEXT_MODEL, x_t, x1 - x0, t, context)
    energies = np.array([float(contextual_energy(x1[i], context[i])) for i in range(N)])
    weights = _softmax_groups(-beta * energies, 4)

    np.testing.assert_allclose(cfm(CONTEXT_MODEL, PATH, x1, x_0=x0, t=t, context=context), errors.mean(), rtol=1e-5)
    kwargs = dict(beta=jnp.float32(beta), x_0=x0, t=t, context=context, group_size=4)
    with_fn = efm(CONTEXT_MODEL, PATH, x1, contextual_energy, **kwargs)
    with_values = efm(CONTEXT_MODEL, PATH, x1, jnp.asarray(energies, jnp.float32), **kwargs)
    np.testing.assert_allclose(with_fn, np.sum(weights * errors), rtol=1e-5)
    np.testing.assert_allclose(with_values, with_fn, rtol=1e-5)


@pytest.mark.parametrize("gradient", ["mean", "data"])
def test_guided_loss_with_context_matches_per_example_reference(context_batch, gradient):
    """The guided loss with a context equals the per-example path (`sample(x0_i, x1_i, t_i, E, c_i)`) fed to
    `v(x_t, t, c_i)`: as a mean, weighted by `softmax(log Z_t(x1_i, c_i))` within groups, and weighted at the
    endpoint (`log Z_1`). Float32 vs float64 reference weights: rtol 1e-5."""
    x1, x0, t, context = context_batch
    path = GuidedGaussianPath(CosineScheduler(), beta=1.5, gradient=gradient)
    samples = [path.sample(x0[i], x1[i], t[i], contextual_energy, context[i]) for i in range(N)]
    x_t = jnp.stack([s.x_t for s in samples])
    u = jnp.stack([s.dx_t for s in samples])
    errors = _reference_errors(CONTEXT_MODEL, x_t, u, t, context)
    log_z_t = [float(path.log_normalizer(x1[i], t[i], contextual_energy, context[i])) for i in range(N)]
    log_z_1 = [float(path.log_normalizer(x1[i], 1.0, contextual_energy, context[i])) for i in range(N)]

    kwargs = dict(x_0=x0, t=t, context=context)
    np.testing.assert_allclose(guided(CONTEXT_MODEL, path, x1, contextual_energy, **kwargs), errors.mean(), rtol=1e-5)
    for weight_at, log_z in (("t", log_z_t), ("endpoint", log_z_1)):
        loss = guided(
            CONTEXT_MODEL, path, x1, contextual_energy, weighted=True, weight_at=weight_at, group_size=4, **kwargs
        )
        np.testing.assert_allclose(loss, np.sum(_softmax_groups(log_z, 4) * errors), rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The draws of `x_0` and `t`, and losses on any path.


def _quantile_velocity(x, t, context=None):
    """`-Phi^{-1}(t)` in 1-D: with data at 0, CondOT's target is `u = -x_0`, so the squared error is
    `(x_0 - Phi^{-1}(t))^2`, which is ~0 exactly when `x_0` is the normal quantile of `t`."""
    return -jax.scipy.special.ndtri(jnp.clip(t, 1e-6, 1.0 - 1e-6)) * jnp.ones_like(x)


@pytest.mark.parametrize("loss", ["cfm", "efm", "guided"])
def test_x0_and_t_are_drawn_independently(loss):
    """In 1-D a normal and a uniform drawn from the same key are tied, `x_0 = Phi^{-1}(t)`; the losses must draw them
    from independent keys. With data at 0 and `v(x, t) = -Phi^{-1}(t)` the loss is the mean of
    `(x_0 - Phi^{-1}(t))^2`: 2 for independent draws (two unit variances), ~0 for tied ones. With 4096 examples the
    mean's standard error is sqrt(8 / 4096) = 0.044, so the bound 1.5 is 11 standard errors below 2 (fixed key)."""
    x1 = jnp.zeros((4096, 1))
    key = jax.random.key(30)
    path = GuidedGaussianPath(CondOTScheduler(), beta=jnp.float32(0.0))
    value = {
        "cfm": lambda: cfm_loss(_quantile_velocity, PATH, x1, key=key),
        "efm": lambda: energy_weighted_loss(_quantile_velocity, PATH, x1, jnp.zeros(4096), beta=1.0, key=key),
        "guided": lambda: energy_guided_loss(_quantile_velocity, path, x1, quartic_energy, key=key, weighted=True),
    }[loss]()
    assert 1.5 < float(value) < 2.5, float(value)


def test_cfm_loss_takes_any_path():
    """`cfm_loss` on a guided path with its energy is the unweighted guided loss; with `beta = 0` (lambda = 0) it is
    plain CFM. `energy_weighted_loss` on a guided path (CondOT, sigma_1 = 0) is the guided loss with endpoint
    weights. Same float32 quantities by two routes, compiled apart: rtol 1e-5."""
    x1 = jax.random.normal(jax.random.key(22), (N, DIM))
    x0 = jax.random.normal(jax.random.key(23), (N, DIM))
    t = jax.random.uniform(jax.random.key(24), (N,))
    tilted = GuidedGaussianPath(CondOTScheduler(), beta=jnp.float32(2.0))
    flat = GuidedGaussianPath(CondOTScheduler(), beta=jnp.float32(0.0))
    kw = dict(x_0=x0, t=t)
    np.testing.assert_allclose(
        cfm(MODEL, tilted, x1, energy=quartic_energy, **kw), guided(MODEL, tilted, x1, quartic_energy, **kw), rtol=1e-5
    )
    np.testing.assert_allclose(cfm(MODEL, flat, x1, energy=quartic_energy, **kw), cfm(MODEL, PATH, x1, **kw), rtol=1e-5)
    assert abs(float(cfm(MODEL, tilted, x1, energy=quartic_energy, **kw)) - float(cfm(MODEL, PATH, x1, **kw))) > 1e-3
    np.testing.assert_allclose(
        efm(MODEL, tilted, x1, quartic_energy, beta=jnp.float32(2.0), **kw),
        guided(MODEL, tilted, x1, quartic_energy, weighted=True, weight_at="endpoint", **kw),
        rtol=1e-5,
    )


def test_paths_share_one_abstract_base():
    """Both paths are `AbstractProbPath`s (abstract-or-final: the base cannot be built); a guided path without its
    energy, or the guided loss on an affine path, is a clear error."""
    assert isinstance(PATH, AbstractProbPath) and isinstance(GuidedGaussianPath(), AbstractProbPath)
    with pytest.raises(TypeError):
        AbstractProbPath()
    x1 = jnp.zeros((N, DIM))
    with pytest.raises(TypeError, match="needs the energy"):
        cfm_loss(MODEL, GuidedGaussianPath(), x1, x_0=x1, t=jnp.zeros(N))
    with pytest.raises((TypeError, jaxtyping.TypeCheckError), match="GuidedGaussianPath|path"):
        energy_guided_loss(MODEL, PATH, x1, quartic_energy, x_0=x1, t=jnp.zeros(N))


# ---------------------------------------------------------------------------------------------------------------
# Input errors.


def test_a_key_is_needed_unless_draws_are_given():
    """Without `key`, both `x0` and `t` must be given; the message says so."""
    x1 = jnp.zeros((N, DIM))
    with pytest.raises(ValueError, match="key"):
        cfm_loss(MODEL, PATH, x1, x_0=jnp.zeros((N, DIM)))


def test_unknown_weight_at_is_refused():
    """`weight_at` other than "t" / "endpoint" is refused (ValueError; a TypeCheckError under the test session's
    runtime type checker, naming the same argument)."""
    x1 = jnp.zeros((N, DIM))
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match="weight_at"):
        energy_guided_loss(
            MODEL, GuidedGaussianPath(), x1, quartic_energy, x_0=x1, t=jnp.zeros(N), weighted=True, weight_at="start"
        )


@pytest.mark.parametrize(
    "bad",
    ["x1_vector", "x0_width", "t_column", "energies_column", "context_rows"],
)
def test_wrongly_shaped_calls_raise(request, bad):
    """Shape contracts (`x1: [n, dim]`, `x0` like `x1`, `t: [n]`, energies `[n]`, context `[n, ctx]`) are enforced
    by jaxtyping + beartype in the test session, before any computation."""
    if not request.config.getoption("jaxtyping_packages"):
        pytest.skip("runtime shape checking is off (run with --jaxtyping-packages)")
    x1, x0, t = jnp.zeros((N, DIM)), jnp.zeros((N, DIM)), jnp.zeros(N)
    energies, context = jnp.zeros(N), jnp.zeros((N, CTX))
    calls = {
        "x1_vector": lambda: cfm_loss(MODEL, PATH, jnp.zeros(N), x_0=x0, t=t),
        "x0_width": lambda: cfm_loss(MODEL, PATH, x1, x_0=jnp.zeros((N, DIM + 1)), t=t),
        "t_column": lambda: cfm_loss(MODEL, PATH, x1, x_0=x0, t=jnp.zeros((N, 1))),
        "energies_column": lambda: energy_weighted_loss(MODEL, PATH, x1, energies[:, None], beta=1.0, x_0=x0, t=t),
        "context_rows": lambda: energy_weighted_loss(
            CONTEXT_MODEL, PATH, x1, energies, beta=1.0, x_0=x0, t=t, context=context[:-1]
        ),
    }
    with pytest.raises(jaxtyping.TypeCheckError):
        calls[bad]()

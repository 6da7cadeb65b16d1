"""ODE samplers and likelihoods: known solutions, known densities, trajectories, contexts and bad input.

Everything is deterministic (fixed keys). Tolerances are stated per test; none is close to float32 rounding
unless said so.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from energyflow._solver import _resolve_solver, log_prob, sample, sample_with_log_prob


# ---------------------------------------------------------------------------------------------------------------
# Models with known answers.


class LinearField(eqx.Module):
    """`v(x, t) = A x`: the flow from `x0` is `expm(A (t - t0)) x0`."""

    a: jax.Array
    dim: int = eqx.field(static=True, default=2)

    def __call__(self, x, t, context=None):
        return self.a @ x


class GaussianFlow(eqx.Module):
    """The exact marginal velocity of the CondOT path `x_t = t x1 + (1 - t) x0` from `N(0, I)` to `N(m, S)`.

    `S = R diag(s^2) R^T` and the mean `m` is the context. In the eigenbasis each coordinate has
    `sigma_t^2 = t^2 s^2 + (1 - t)^2` and `v = m + R diag(k_t) R^T (x - t m)` with `k_t = d/dt log sigma_t`,
    so the flow maps `x0` to `m + R diag(s) R^T x0`, and `log p_1 = log N(x; m, S)`.
    """

    rotation: jax.Array
    scales: jax.Array
    dim: int = eqx.field(static=True, default=2)
    context_dim: int = eqx.field(static=True, default=2)

    def __call__(self, x, t, context):
        s2 = self.scales**2
        k = (t * s2 - (1 - t)) / (t**2 * s2 + (1 - t) ** 2)
        return context + self.rotation @ (k * (self.rotation.T @ (x - t * context)))

    def transport(self, x0, mean):
        return mean + ((x0 @ self.rotation) * self.scales[None, :]) @ self.rotation.T

    def log_density(self, x, mean):
        z = (x - mean) @ self.rotation  # coordinates in the eigenbasis, [n, dim]
        per_coordinate = -0.5 * (z / self.scales[None, :]) ** 2 - jnp.log(self.scales)[None, :]
        return jnp.sum(per_coordinate, axis=-1) - 0.5 * self.dim * math.log(2 * math.pi)


A = jnp.array([[-1.0, 4.0], [-4.0, -1.0]])  # a decaying rotation, |x(1)| ~ 1 for |x0| ~ 1
ANGLE = 0.6
GAUSS = GaussianFlow(
    rotation=jnp.array([[math.cos(ANGLE), -math.sin(ANGLE)], [math.sin(ANGLE), math.cos(ANGLE)]]),
    scales=jnp.array([0.5, 1.5]),  # log det S != 0, so a wrong sign of the divergence term shows
)
N = 64


@pytest.fixture(scope="module")
def linear_case():
    x0 = jax.random.normal(jax.random.key(0), (8, 2))
    return LinearField(A), x0, x0 @ jax.scipy.linalg.expm(A).T


@pytest.fixture(scope="module")
def gauss_case():
    k0, km = jax.random.split(jax.random.key(1))
    x0 = jax.random.normal(k0, (N, 2))
    means = jax.random.normal(km, (N, 2))
    return x0, means, GAUSS.transport(x0, means)


# ---------------------------------------------------------------------------------------------------------------
# (1) Solvers on an ODE with a known solution.


@pytest.mark.parametrize(
    ("solver", "order", "steps"), [("euler", 1, 64), ("heun", 2, 32), ("midpoint", 2, 32), ("tsit5", 5, 8)]
)
def test_fixed_step_order(linear_case, solver, order, steps):
    # The error of an order-p solver falls by 2^p when the step halves. For an autonomous field a step of size h on
    # `A` is the same map as a step of size 2h on `A / 2`, so `steps` steps on `A / 2`, done twice, are `2 steps`
    # steps on `A`: the halved step reuses the compiled solve. The step counts are in the asymptotic regime
    # (errors from 0.14 down to 7e-7, above float32 rounding of ~1e-7 on values of size ~1), where the observed
    # order is within 0.15 of p; the tolerance 0.5 leaves room without letting a wrong order pass.
    model, x0, exact = linear_case
    half = LinearField(A / 2)
    coarse = sample(model, None, x0, solver=solver, steps=steps)
    fine = sample(half, None, sample(half, None, x0, solver=solver, steps=steps), solver=solver, steps=steps)
    errors = [float(jnp.max(jnp.abs(x - exact))) for x in (coarse, fine)]
    assert abs(math.log2(errors[0] / errors[1]) - order) < 0.5, errors


def test_adaptive_tolerance(linear_case):
    # rtol = atol = 1e-6 controls the local error; the global error measured is ~3e-6; 1e-4 is a loose bound.
    # (Tsit5's adaptive steps are tested with save times below.)
    model, x0, exact = linear_case
    assert jnp.max(jnp.abs(sample(model, None, x0, solver="heun", rtol=1e-6, atol=1e-6) - exact)) < 1e-4


def test_backwards_in_time_and_solver_instances(linear_case):
    # From t0 = 1 to t1 = 0 the flow is expm(-A) x0; a diffrax solver instance is accepted as is.
    model, x0, _ = linear_case
    back = sample(model, None, x0, solver=diffrax.Tsit5(), steps=16, t0=1.0, t1=0.0)
    np.testing.assert_allclose(back, x0 @ jax.scipy.linalg.expm(-A).T, atol=1e-5)


def test_solver_names():
    names = {"euler": diffrax.Euler, "heun": diffrax.Heun, "midpoint": diffrax.Midpoint, "Tsit5": diffrax.Tsit5}
    for name, cls in names.items():
        assert type(_resolve_solver(name)) is cls


# ---------------------------------------------------------------------------------------------------------------
# (2) A flow with a known density; (5) the context reaches the model (it is the target mean).


def test_sample_transports_to_known_gaussian(gauss_case):
    # Tsit5 with 20 fixed steps on this smooth affine field: the measured error is ~1e-6; 1e-4 bounds it.
    x0, means, exact = gauss_case
    np.testing.assert_allclose(sample(GAUSS, None, x0, context=means, solver="tsit5", steps=20), exact, atol=1e-4)


def test_shared_context_equals_repeated_context(gauss_case):
    x0, means, _ = gauss_case
    shared = sample(GAUSS, None, x0, context=means[0])
    repeated = sample(GAUSS, None, x0, context=jnp.broadcast_to(means[0], means.shape))
    np.testing.assert_allclose(shared, repeated, rtol=1e-6, atol=1e-6)
    assert not np.allclose(shared, sample(GAUSS, None, x0, context=means), atol=1e-2)


@pytest.fixture(scope="module")
def exact_log_prob(gauss_case):
    _, means, x = gauss_case
    return GAUSS.log_density(x, means), log_prob(GAUSS, x, context=means)


def test_log_prob_exact_divergence(exact_log_prob):
    # Adaptive Tsit5 at rtol = atol = 1e-5 (the default): measured error ~1e-5 on log-densities of size ~3.
    truth, estimate = exact_log_prob
    np.testing.assert_allclose(estimate, truth, atol=1e-3)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_log_prob_hutchinson(gauss_case, exact_log_prob, probe):
    # The field is affine, so with probes fixed over the solve the Hutchinson error per example is exactly
    # -(mean_k eps_k^T M eps_k - tr M) with M = int_0^1 J dt = R diag(log s) R^T. Its standard deviation over
    # examples is sd / sqrt(K) with sd^2 = 2 sum_{i != j} M_ij^2 (Rademacher) or 2 |M|_F^2 (Gaussian).
    # With N = 64 examples the sample sd is within 4 standard errors (+-36%) of that, and the mean error within
    # 5 standard errors (5 sd / sqrt(K N)) of 0; fixed keys make the check deterministic.
    _, means, x = gauss_case
    truth, _ = exact_log_prob
    k = 16
    key = jax.random.key(7)
    estimate = log_prob(GAUSS, x, context=means, divergence="hutchinson", probe=probe, num_probes=k, key=key)
    m = GAUSS.rotation @ jnp.diag(jnp.log(GAUSS.scales)) @ GAUSS.rotation.T
    off_diagonal = m - jnp.diag(jnp.diag(m))
    sd = float(jnp.sqrt(2 * jnp.sum((off_diagonal if probe == "rademacher" else m) ** 2)) / math.sqrt(k))
    errors = np.asarray(estimate - truth)
    assert 0.64 * sd < errors.std() < 1.36 * sd, (errors.std(), sd)
    assert abs(errors.mean()) < 5 * sd / math.sqrt(N), (errors.mean(), sd)


def test_sample_with_log_prob_is_consistent(gauss_case):
    # One forward solve starts from the same points as `sample` for the same key, ends at the exact transport
    # (measured error ~1e-6, bound 1e-4) and carries their exact log-density (measured ~1e-5, bound 1e-3).
    _, means, _ = gauss_case
    key = jax.random.key(3)
    x, lp = sample_with_log_prob(GAUSS, key, N, context=means)
    np.testing.assert_allclose(x, GAUSS.transport(jax.random.normal(key, (N, 2)), means), atol=1e-4)
    np.testing.assert_allclose(lp, GAUSS.log_density(x, means), atol=1e-3)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_probes_are_independent_of_the_starting_points(probe):
    # `sample_with_log_prob` draws both the starting points and the probes from one key; drawn from the same key
    # they would be tied (Gaussian probes equal to x0, Rademacher probes the signs of x0). For the linear field
    # `v = A x` with A = [[0, 1], [1, 0]] (tr A = 0) and probes fixed over the solve, the log-density error of
    # sample i is exactly `-(eps_i^T A eps_i - tr A)`, whatever the solver; x0 is recovered from the end points by
    # inverting the Euler map. Tied probes correlate that error with `x0_i^T A x0_i` (correlation -1 for Gaussian
    # probes, about 0.6 in size for Rademacher ones); independent ones give a correlation whose standard error over
    # 2000 samples is 1 / sqrt(2000) = 0.022, so the bound 0.15 is 6.7 standard errors (fixed key).
    a = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    n, steps = 2000, 4
    x1, lp = sample_with_log_prob(
        LinearField(a), jax.random.key(8), n, solver="euler", steps=steps, divergence="hutchinson", probe=probe
    )
    euler_map = np.linalg.matrix_power(np.eye(2) + np.asarray(a) / steps, steps)
    x0 = np.linalg.solve(euler_map, np.asarray(x1, np.float64).T).T
    exact = -0.5 * np.sum(x0**2, axis=1) - math.log(2 * math.pi)  # tr A = 0
    error = np.asarray(lp, np.float64) - exact
    assert np.std(error) > 0.5  # the estimate really is noisy: |eps^T A eps| = 2 for Rademacher probes
    correlation = np.corrcoef(error, np.einsum("ni,ij,nj->n", x0, np.asarray(a), x0))[0, 1]
    assert abs(correlation) < 0.15, correlation


def test_gradients_through_the_solver(gauss_case):
    # x1 = m + S^(1/2) x0, so d sum(x1) / d m = 1 per coordinate; Tsit5 with 10 steps: measured error ~1e-6.
    x0, means, _ = gauss_case
    grad_m = jax.grad(lambda c: jnp.sum(sample(GAUSS, None, x0, context=c, solver="tsit5", steps=10)))(means)
    np.testing.assert_allclose(grad_m, jnp.ones_like(grad_m), atol=1e-4)


def test_usable_inside_jit_and_vmap(gauss_case):
    _, means, _ = gauss_case
    key = jax.random.key(5)
    eager = sample(GAUSS, key, N, context=means)
    np.testing.assert_allclose(jax.jit(lambda c, k: sample(GAUSS, k, N, context=c))(means, key), eager, atol=1e-6)
    batched = jax.vmap(lambda k: sample(GAUSS, k, N, context=means))(jnp.stack([jax.random.key(4), key]))
    assert batched.shape == (2, N, 2)
    np.testing.assert_allclose(batched[1], eager, atol=1e-6)
    assert not np.allclose(batched[0], eager, atol=1e-2)


# ---------------------------------------------------------------------------------------------------------------
# (3) Trajectories.


def test_trajectory_is_the_euler_grid():
    key = jax.random.key(11)
    model = LinearField(A)
    traj = sample(model, key, 8, steps=5, return_trajectory=True)
    assert traj.shape == (6, 8, 2)
    np.testing.assert_array_equal(traj[0], jax.random.normal(key, (8, 2)))  # x0 is drawn from the key itself
    h = 1 / 5
    np.testing.assert_allclose(traj[1:], traj[:-1] + h * traj[:-1] @ A.T, rtol=1e-6, atol=1e-6)
    # A larger step budget does not change the grid; diffrax's padding of the unused slots is cut off.
    np.testing.assert_array_equal(sample(model, key, 8, steps=5, max_steps=9, return_trajectory=True), traj)
    # Integer times are accepted (and mean the same).
    np.testing.assert_array_equal(sample(model, key, 8, steps=5, t0=0, t1=1, return_trajectory=True), traj)


def test_trajectory_at_given_times(linear_case):
    model, x0, _ = linear_case
    ts = jnp.array([0.0, 0.25, 1.0])
    traj = sample(model, None, x0, solver="tsit5", rtol=1e-6, return_trajectory=ts)
    assert traj.shape == (3, *x0.shape)
    for t, x_t in zip(ts, traj):
        np.testing.assert_allclose(x_t, x0 @ jax.scipy.linalg.expm(A * t).T, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# (4) Bad input: a clear error, raised before the model is ever traced.


class Untraceable(eqx.Module):
    """Fails if called: an error raised by validation must come before any tracing or compilation."""

    dim: int = eqx.field(static=True, default=2)
    context_dim: int = eqx.field(static=True, default=3)

    def __call__(self, x, t, context):
        raise AssertionError("the model was called before the input was validated")


def _plain_field(x, t, context):  # a model with no `.dim`
    return x


KEY = jax.random.key(0)
X = jnp.zeros((4, 2))
C = jnp.zeros((4, 3))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: sample(m, KEY, 4, context=C, steps=0), ValueError, r"steps must be a positive int, got 0"),
        (lambda m: sample(m, KEY, 4, context=C, steps=-3), ValueError, r"steps.*got -3"),
        (lambda m: sample(m, KEY, 4, context=C, steps=2.5), TypeError, r"steps"),
        (lambda m: sample(m, KEY, 4, context=C, solver="rk4"), ValueError, r"solver must be one of .*got 'rk4'"),
        (lambda m: sample(m, KEY, X[0], context=C), ValueError, r"\[n, dim\], got shape \(2,\)"),
        (lambda m: sample(m, KEY, jnp.zeros((4, 3)), context=C), ValueError, r"expected \[n, 2\]"),
        (lambda m: sample(m, KEY, 4, context=jnp.zeros((5, 3))), ValueError, r"5 rows .* n=4"),
        (lambda m: sample(m, KEY, 4, context=jnp.zeros((4, 2))), ValueError, r"size 3, got context of shape \(4, 2\)"),
        (lambda m: sample(m, KEY, 4), ValueError, r"context of size 3 .* got None"),
        (lambda m: sample(m, None, 4, context=C), ValueError, r"PRNG key is needed .* got key=None"),
        (lambda m: sample(m, KEY, 4, context=C, dim=5), ValueError, r"dim=5 does not match the model's dim=2"),
        (lambda m: sample(m, KEY, 4, context=C, steps=10, rtol=1e-3), ValueError, r"not both; got steps=10, rtol="),
        (lambda m: sample(m, KEY, 4, context=C, rtol=1e-3), ValueError, r"error estimate .* got Euler"),
        (lambda m: sample(m, KEY, 4, context=C, solver="heun", rtol=-1.0), ValueError, r"rtol must be .* got -1.0"),
        (lambda m: sample(m, KEY, 4, context=C, steps=5, max_steps=3), ValueError, r"at least steps=5 .* got 3"),
        (lambda m: sample(m, KEY, 4, context=C, t1=0.0), ValueError, r"t0 and t1 must differ"),
        (
            lambda m: sample(m, KEY, 4, context=C, solver="tsit5", rtol=1e-3, return_trajectory=True),
            ValueError,
            r"array of save times",
        ),
        (lambda m: log_prob(m, X[0], context=C), ValueError, r"x must be an array \[n, dim\], got shape \(2,\)"),
        (lambda m: log_prob(m, X, context=C[:3]), ValueError, r"3 rows .* n=4"),
        (lambda m: log_prob(m, X, context=C, divergence="trace"), ValueError, r"'exact' or 'hutchinson', got 'trace'"),
        (lambda m: log_prob(m, X, context=C, divergence="hutchinson"), ValueError, r"PRNG key is needed; got key=None"),
        (lambda m: log_prob(m, X, context=C, divergence="hutchinson", key=KEY, num_probes=0), ValueError, r"got 0"),
        (lambda m: log_prob(m, X, context=C, steps=0), ValueError, r"steps must be a positive int, got 0"),
        (lambda m: sample_with_log_prob(m, KEY, 4, context=C[:2]), ValueError, r"2 rows .* n=4"),
        (lambda m: sample_with_log_prob(m, KEY, 4, context=C, solver="euler", rtol=1e-4), ValueError, r"estimate"),
    ],
)
def test_bad_input_is_rejected_before_tracing(call, error, match):
    with pytest.raises(error, match=match):
        call(Untraceable())


def test_dim_is_needed_without_model_dim():
    with pytest.raises(ValueError, match=r"dim= is needed .* got dim=None"):
        sample(_plain_field, KEY, 4)
    with pytest.raises(TypeError, match=r"model"):
        sample("not a model", KEY, 4, dim=2)

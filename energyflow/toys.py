"""Toy targets: a data distribution `p` you can sample, an energy `E`, and where it exists the exact target `q`.

The closed-form targets (docs/maths.md, "Targets with a known answer") expose their exact answer (`target_mean`,
`target_cov`, `target_weights`) for tests and docs. The 2-D picture targets (moons, checkerboard, rings, swiss roll,
two spirals) have no closed form; their `sample_target` resamples a large draw from `p` by the weights
`exp(-beta E)` (sampling-importance-resampling), which is exact as the draw grows.

Every target has `dim`, `sample(key, n) -> [n, dim]` (from `p`), `energy(x) -> scalar` (one point) and
`sample_target(key, n, beta) -> [n, dim]` (from `q ∝ p exp(-beta E)`).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._validate import checked_sampler

__all__ = [
    "AbstractTarget",
    "Checkerboard",
    "EightGaussians",
    "GaussianLinear",
    "GaussianQuadratic",
    "MixtureLinear",
    "Moons",
    "Rings",
    "SwissRoll",
    "TwoSpirals",
    "TARGETS",
    "get_target",
]


class AbstractTarget(eqx.Module):
    """A data distribution `p` with an energy `E`; the target is `q ∝ p exp(-beta E)`.

    Every subclass's `sample` and `sample_target` check their `key` (one JAX PRNG key) and `n` (a positive int)
    first, raising a one-line `TypeError`/`ValueError`.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("sample", "sample_target"):
            if name in cls.__dict__:
                setattr(cls, name, checked_sampler(cls.__dict__[name]))

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The dimension of a point."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
        """Draw `n` points from the data distribution `p`."""

    @abc.abstractmethod
    def energy(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """The energy of one point."""

    @checked_sampler
    def sample_target(self, key: PRNGKeyArray, n: int, beta: float) -> Float[Array, "n dim"]:
        """Draw `n` points from `q ∝ p exp(-beta E)` by resampling `64 n` draws of `p` (exact as that grows)."""
        kp, kr = jax.random.split(key)
        pool = self.sample(kp, 64 * n)
        logits = -beta * jax.vmap(self.energy)(pool)
        idx = jax.random.choice(kr, pool.shape[0], shape=(n,), p=jax.nn.softmax(logits))  # inverse-CDF, O(pool)
        return pool[idx]


def _mvn(key, mean, cov, n):
    return jax.random.multivariate_normal(key, mean, cov, shape=(n,))


class GaussianLinear(AbstractTarget):
    """`p = N(m, S)`, `E(x) = b.x`; then `q = N(m - beta S b, S)`."""

    mean: Float[Array, " d"]
    cov: Float[Array, "d d"]
    b: Float[Array, " d"]

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def sample(self, key, n):
        return _mvn(key, self.mean, self.cov, n)

    def energy(self, x):
        return jnp.dot(self.b, x)

    def target_mean(self, beta: float) -> Float[Array, " d"]:
        return self.mean - beta * self.cov @ self.b

    def target_cov(self, beta: float) -> Float[Array, "d d"]:
        return self.cov

    def sample_target(self, key, n, beta):
        return _mvn(key, self.target_mean(beta), self.cov, n)


class GaussianQuadratic(AbstractTarget):
    """`p = N(m, S)`, `E(x) = (x - c)^T A (x - c) / 2`; `q` is Gaussian with precision `S^-1 + beta A`."""

    mean: Float[Array, " d"]
    cov: Float[Array, "d d"]
    centre: Float[Array, " d"]
    a: Float[Array, "d d"]

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def sample(self, key, n):
        return _mvn(key, self.mean, self.cov, n)

    def energy(self, x):
        r = x - self.centre
        return 0.5 * r @ self.a @ r

    def target_cov(self, beta: float) -> Float[Array, "d d"]:
        return jnp.linalg.inv(jnp.linalg.inv(self.cov) + beta * self.a)

    def target_mean(self, beta: float) -> Float[Array, " d"]:
        return self.target_cov(beta) @ (jnp.linalg.solve(self.cov, self.mean) + beta * self.a @ self.centre)

    def sample_target(self, key, n, beta):
        return _mvn(key, self.target_mean(beta), self.target_cov(beta), n)


class MixtureLinear(AbstractTarget):
    """`p = sum_k pi_k N(m_k, S_k)`, `E(x) = b.x`; `q = sum_k pi~_k N(m_k - beta S_k b, S_k)` with
    `pi~_k ∝ pi_k exp(-beta b.m_k + beta^2 b^T S_k b / 2)`."""

    weights: Float[Array, " k"]
    means: Float[Array, "k d"]
    covs: Float[Array, "k d d"]
    b: Float[Array, " d"]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _sample_mixture(self, key, n, log_weights, means):
        kc, kx = jax.random.split(key)
        comp = jax.random.categorical(kc, log_weights, shape=(n,))
        chol = jnp.linalg.cholesky(self.covs)
        z = jax.random.normal(kx, (n, self.dim))
        return means[comp] + jnp.einsum("nij,nj->ni", chol[comp], z)

    def sample(self, key, n):
        return self._sample_mixture(key, n, jnp.log(self.weights), self.means)

    def energy(self, x):
        return jnp.dot(self.b, x)

    def target_weights(self, beta: float) -> Float[Array, " k"]:
        quad = jnp.einsum("i,kij,j->k", self.b, self.covs, self.b)
        return jax.nn.softmax(jnp.log(self.weights) - beta * self.means @ self.b + 0.5 * beta**2 * quad)

    def target_means(self, beta: float) -> Float[Array, "k d"]:
        return self.means - beta * jnp.einsum("kij,j->ki", self.covs, self.b)

    def sample_target(self, key, n, beta):
        return self._sample_mixture(key, n, jnp.log(self.target_weights(beta)), self.target_means(beta))

    def component_of(self, x: Float[Array, "n d"], beta: float = 0.0) -> Int[Array, " n"]:
        """The most likely component of each point under `q` at `beta` (for per-mode fractions)."""
        means = self.target_means(beta)
        prec = jnp.linalg.inv(self.covs)
        r = x[:, None, :] - means[None]
        maha = jnp.sum(r * jnp.einsum("kij,nkj->nki", prec, r), axis=-1)
        return jnp.argmin(maha, axis=1)


class EightGaussians(AbstractTarget):
    """Eight equal Gaussians on a circle; mode `k` has energy `-k / 7`, so `q`'s mode weights are `∝ exp(beta k / 7)`.

    The energy is a smooth soft assignment to the modes, `E(x) = -sum_k softmax_k(-|x - m_k|^2 / (2 h^2)) k / 7`,
    flat to within about 1e-3 over each mode's mass (neighbouring modes are 15 standard deviations apart) and differentiable between
    modes, so that gradient-based guidance has something to follow.
    """

    radius: float = 2.0
    std: float = 0.1
    bandwidth: float = 0.3

    @property
    def dim(self) -> int:
        return 2

    @property
    def centres(self) -> Float[Array, "8 2"]:
        angles = 2.0 * jnp.pi * jnp.arange(8) / 8
        return self.radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)

    @property
    def mode_energies(self) -> Float[Array, " 8"]:
        return -jnp.arange(8.0) / 7.0

    def sample(self, key, n):
        kc, kx = jax.random.split(key)
        comp = jax.random.randint(kc, (n,), 0, 8)
        return self.centres[comp] + self.std * jax.random.normal(kx, (n, 2))

    def energy(self, x):
        d2 = jnp.sum((x[None, :] - self.centres) ** 2, axis=1)
        return jnp.dot(jax.nn.softmax(-d2 / (2 * self.bandwidth**2)), self.mode_energies)

    def target_weights(self, beta: float) -> Float[Array, " 8"]:
        return jax.nn.softmax(-beta * self.mode_energies)

    def mode_of(self, x: Float[Array, "n 2"]) -> Int[Array, " n"]:
        """The nearest mode of each point."""
        return jnp.argmin(jnp.sum((x[:, None, :] - self.centres[None]) ** 2, axis=2), axis=1)

    def sample_target(self, key, n, beta):
        kc, kx = jax.random.split(key)
        comp = jax.random.categorical(kc, -beta * self.mode_energies, shape=(n,))
        return self.centres[comp] + self.std * jax.random.normal(kx, (n, 2))


class Moons(AbstractTarget):
    """Two interleaved half circles with noise; energy `E(x) = x_0` (favours the left)."""

    noise: float = 0.08

    @property
    def dim(self) -> int:
        return 2

    def sample(self, key, n):
        ks, kc, kn = jax.random.split(key, 3)
        s = jnp.pi * jax.random.uniform(ks, (n,))
        upper = jax.random.bernoulli(kc, 0.5, (n,))
        x = jnp.where(upper, jnp.cos(s), 1.0 - jnp.cos(s))
        y = jnp.where(upper, jnp.sin(s), 0.5 - jnp.sin(s))
        pts = jnp.stack([x - 0.5, y - 0.25], axis=1) * 2.0
        return pts + self.noise * jax.random.normal(kn, (n, 2))

    def energy(self, x):
        return x[0]


class Checkerboard(AbstractTarget):
    """Uniform on the dark squares of a 4x4 board on `[-4, 4]^2`; energy `E(x) = |x - (2, 2)|^2 / 8`."""

    @property
    def dim(self) -> int:
        return 2

    def sample(self, key, n):
        k1, k2, k3 = jax.random.split(key, 3)
        x1 = jax.random.uniform(k1, (n,), minval=-4.0, maxval=4.0)
        x2 = jax.random.uniform(k2, (n,), minval=0.0, maxval=2.0) - 2.0 * jax.random.randint(k3, (n,), 0, 2)
        x2 = x2 + 4.0 * (jnp.floor(x1 / 2.0) % 2) - 2.0
        return jnp.stack([x1, x2], axis=1)

    def energy(self, x):
        return jnp.sum((x - 2.0) ** 2) / 8.0


class Rings(AbstractTarget):
    """Four concentric rings; energy `E(x) = -|x| / 4` (favours the outer rings)."""

    noise: float = 0.08

    @property
    def dim(self) -> int:
        return 2

    def sample(self, key, n):
        kr, ka, kn = jax.random.split(key, 3)
        radius = 1.0 + jax.random.randint(kr, (n,), 0, 4).astype(jnp.float32)
        angle = 2.0 * jnp.pi * jax.random.uniform(ka, (n,))
        pts = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
        return pts + self.noise * jax.random.normal(kn, (n, 2))

    def energy(self, x):
        return -jnp.sqrt(jnp.sum(x**2) + 1e-12) / 4.0


class SwissRoll(AbstractTarget):
    """A 2-D swiss roll; energy `E(x) = x_1 / 2` (favours the lower half)."""

    noise: float = 0.1

    @property
    def dim(self) -> int:
        return 2

    def sample(self, key, n):
        ks, kn = jax.random.split(key)
        s = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(ks, (n,)))
        pts = jnp.stack([s * jnp.cos(s), s * jnp.sin(s)], axis=1) / 3.0
        return pts + self.noise * jax.random.normal(kn, (n, 2))

    def energy(self, x):
        return x[1] / 2.0


class TwoSpirals(AbstractTarget):
    """Two interleaved spirals; energy `E(x) = -x_0 / 2` (favours the right)."""

    noise: float = 0.1

    @property
    def dim(self) -> int:
        return 2

    def sample(self, key, n):
        ks, kc, kn = jax.random.split(key, 3)
        s = jnp.sqrt(jax.random.uniform(ks, (n,))) * 3.0 * jnp.pi
        sign = jnp.where(jax.random.bernoulli(kc, 0.5, (n,)), 1.0, -1.0)
        pts = sign[:, None] * jnp.stack([-s * jnp.cos(s), s * jnp.sin(s)], axis=1) / 2.5
        return pts + self.noise * jax.random.normal(kn, (n, 2))

    def energy(self, x):
        return -x[0] / 2.0


def _default_mixture() -> MixtureLinear:
    """Three 2-D Gaussians and a linear energy: the closed-form mixture x linear target used in tests and docs."""
    return MixtureLinear(
        weights=jnp.array([0.5, 0.3, 0.2]),
        means=jnp.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]),
        covs=jnp.stack([0.3 * jnp.eye(2), 0.2 * jnp.eye(2), jnp.diag(jnp.array([0.4, 0.1]))]),
        b=jnp.array([0.5, -0.25]),
    )


TARGETS = {
    "8gaussians": EightGaussians,
    "moons": Moons,
    "checkerboard": Checkerboard,
    "rings": Rings,
    "swissroll": SwissRoll,
    "2spirals": TwoSpirals,
    "mixture": _default_mixture,
    "gaussian": lambda: GaussianLinear(mean=jnp.array([1.0, -0.5]), cov=jnp.array([[1.0, 0.3], [0.3, 0.5]]), b=jnp.array([0.5, 0.5])),
}


def get_target(name: str) -> AbstractTarget:
    """A toy target by name: one of `TARGETS`."""
    if name not in TARGETS:
        raise ValueError(f"unknown toy target {name!r}; expected one of {sorted(TARGETS)}")
    return TARGETS[name]()


def total_variation(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Total-variation distance `sum |p - q| / 2` between two discrete distributions."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def mode_fractions(modes: npt.ArrayLike, num_modes: int) -> np.ndarray:
    """The fraction of points in each mode, from an array of mode indices."""
    return np.bincount(np.asarray(modes), minlength=num_modes) / max(len(np.asarray(modes)), 1)


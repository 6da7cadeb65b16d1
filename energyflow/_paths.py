"""Probability paths: the ordinary affine Gaussian path and the energy-guided Gaussian path.

Both implement `AbstractProbPath`: `sample(x_0, x_1, t, energy=None, context=None)` returns a `PathSample`, a point
`x_t` on the conditional path from the noise `x_0` (t = 0) to the data point `x_1` (t = 1) and its velocity `dx_t`.
All methods act on one example (`x_0`, `x_1` of shape `[dim]`, scalar `t`); `jax.vmap` them for batches.
"""

import abc
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, ScalarLike

from ._schedulers import AbstractScheduler, CondOTScheduler

# An energy of one point, `E(x)`, or of one point and its context, `E(x, c)`.
Energy = Callable[..., Float[Array, ""]]
LambdaSchedule = Literal["linear", "constant"] | Callable[[Float[Array, ""], float], Float[Array, ""]]


class PathSample(eqx.Module):
    """A point on a conditional path: `x_t` and its conditional velocity `dx_t` at time `t`.

    Attributes:
        x_0: the noise end of the conditional path (t = 0).
        x_1: the data end (t = 1).
        t: the time.
        x_t: the point at time `t`.
        dx_t: its velocity `d x_t / dt` at fixed `(x_0, x_1)`, the regression target of flow matching.
    """

    x_0: Float[Array, " dim"]
    x_1: Float[Array, " dim"]
    t: Float[Array, ""]
    x_t: Float[Array, " dim"]
    dx_t: Float[Array, " dim"]


def call_energy(energy: Energy, x: Float[Array, " dim"], context: Float[Array, " ctx"] | None) -> Float[Array, ""]:
    """Evaluate `energy(x)` or, with a context, `energy(x, context)`."""
    return energy(x) if context is None else energy(x, context)


class AbstractProbPath(eqx.Module):
    """A family of conditional paths `x_t | (x_0, x_1)` from the noise `x_0 ~ N(0, I)` at t = 0 to a data point `x_1`
    at t = 1, built on an affine schedule.

    Subclasses are final: `AffineProbPath` (the ordinary path, which ignores any energy) and `GuidedGaussianPath`
    (tilted by an energy, which it needs). A loss takes any path and passes its energy along. The definitions are
    in the docs' maths page (`docs/maths.md`, "Probability paths" and "The energy-guided Gaussian path").
    """

    scheduler: eqx.AbstractVar[AbstractScheduler]

    @abc.abstractmethod
    def sample(
        self,
        x_0: Float[Array, " dim"],
        x_1: Float[Array, " dim"],
        t: ScalarLike,
        energy: Energy | None = None,
        context: Float[Array, " ctx"] | None = None,
    ) -> PathSample:
        """The point `x_t` of the conditional path through `(x_0, x_1)` at time `t`, and its velocity `dx_t`.

        Args:
            x_0: the noise end, shape `[dim]`.
            x_1: the data end, shape `[dim]`.
            t: a scalar time in `[0, 1]`.
            energy: `E(x)`, or `E(x, c)` with a context; paths that do not use an energy ignore it.
            context: the context passed to the energy, or `None`.
        """
        raise NotImplementedError


class AffineProbPath(AbstractProbPath):
    """The conditional Gaussian path `x_t = alpha_t x_1 + sigma_t x_0` of a scheduler (no energy involved)."""

    scheduler: AbstractScheduler = CondOTScheduler()

    def sample(
        self,
        x_0: Float[Array, " dim"],
        x_1: Float[Array, " dim"],
        t: ScalarLike,
        energy: Energy | None = None,
        context: Float[Array, " ctx"] | None = None,
    ) -> PathSample:
        """Return `x_t` and the conditional velocity `u_t = alpha'_t x_1 + sigma'_t x_0`; `energy` and `context` are
        accepted for a uniform signature and ignored."""
        t = jnp.asarray(t, dtype=x_1.dtype)
        s = self.scheduler(t)
        return PathSample(
            x_0=x_0,
            x_1=x_1,
            t=t,
            x_t=s.alpha_t * x_1 + s.sigma_t * x_0,
            dx_t=s.d_alpha_t * x_1 + s.d_sigma_t * x_0,
        )


class GuidedGaussianPath(AbstractProbPath):
    """The energy-guided Gaussian path: each conditional of an affine path tilted by `exp(-lambda_t E(x))`.

    Each conditional `N(x; alpha_t x_1, sigma_t^2 I)` is tilted by `exp(-lambda_t E(x))`. Linearising `E` at a point
    `c` with gradient `g` keeps it Gaussian with mean `mu_t = alpha_t x_1 - lambda_t sigma_t^2 g` (exact for linear
    `E`); the derivation, the velocity's Hessian-vector term and `log Z_t` are in the docs' maths page
    (`docs/maths.md`, "The energy-guided Gaussian path").

    Attributes:
        scheduler: the affine schedule of the untilted path.
        beta: inverse temperature, `lambda_1 = beta`.
        lambda_schedule: `"linear"` (`lambda_t = beta t`, the default), `"constant"` (`lambda_t = beta`; note that it
            breaks `lambda_0 = 0`, so the path does not start at `N(0, I)`), or a callable `(t, beta) -> lambda_t`.
        gradient: `"mean"` takes `g = grad E(alpha_t x_1)` at the conditional mean, so the velocity includes the
            Hessian-vector term `d g / dt`; `"data"` freezes `g = grad E(x_1)` (cheaper, one gradient per sample).
    """

    scheduler: AbstractScheduler = CondOTScheduler()
    beta: ScalarLike = 1.0
    lambda_schedule: LambdaSchedule = eqx.field(default="linear", static=True)
    gradient: Literal["mean", "data"] = eqx.field(default="mean", static=True)

    def __check_init__(self):
        if self.gradient not in ("mean", "data"):
            raise ValueError(f"gradient must be 'mean' or 'data', got {self.gradient!r}")
        if not callable(self.lambda_schedule) and self.lambda_schedule not in ("linear", "constant"):
            raise ValueError(
                "lambda_schedule must be 'linear', 'constant' or a callable (t, beta) -> lambda_t, "
                f"got {self.lambda_schedule!r}"
            )
        if isinstance(self.beta, (int, float)) and self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")

    def lambda_t(self, t: ScalarLike) -> Float[Array, ""]:
        """The guidance strength at time `t`."""
        t = jnp.asarray(t)
        if self.lambda_schedule == "linear":
            return self.beta * t
        if self.lambda_schedule == "constant":
            return self.beta * jnp.ones_like(t)
        return jnp.asarray(self.lambda_schedule(t, self.beta))

    def _linearisation(self, x_1, t, energy, context):
        """`(c, E(c), g)`: the point where `E` is linearised, its energy and gradient."""
        alpha = self.scheduler(t).alpha_t
        c = alpha * x_1 if self.gradient == "mean" else x_1
        e, g = jax.value_and_grad(lambda x: call_energy(energy, x, context))(c)
        return c, e, g

    def _x_t(self, x_0, x_1, t, energy, context, g_frozen):
        s = self.scheduler(t)
        if g_frozen is None:
            g = jax.grad(lambda x: call_energy(energy, x, context))(s.alpha_t * x_1)
        else:
            g = g_frozen
        return s.alpha_t * x_1 - self.lambda_t(t) * s.sigma_t**2 * g + s.sigma_t * x_0

    def sample(
        self,
        x_0: Float[Array, " dim"],
        x_1: Float[Array, " dim"],
        t: ScalarLike,
        energy: Energy | None = None,
        context: Float[Array, " ctx"] | None = None,
    ) -> PathSample:
        """Return `x_t = mu_t + sigma_t x_0` and `dx_t = d x_t / dt` at fixed `(x_0, x_1)`, by forward-mode AD.

        `energy` is required: `E(x)`, or `E(x, c)` with `context=c`.
        """
        energy = _require_energy(energy)
        t = jnp.asarray(t, dtype=x_1.dtype)
        g_frozen = None if self.gradient == "mean" else jax.grad(lambda x: call_energy(energy, x, context))(x_1)
        x_t, dx_t = jax.jvp(
            lambda tt: self._x_t(x_0, x_1, tt, energy, context, g_frozen), (t,), (jnp.ones_like(t),)
        )
        return PathSample(x_0=x_0, x_1=x_1, t=t, x_t=x_t, dx_t=dx_t)

    def mean(
        self,
        x_1: Float[Array, " dim"],
        t: ScalarLike,
        energy: Energy,
        context: Float[Array, " ctx"] | None = None,
    ) -> Float[Array, " dim"]:
        """The mean `mu_t` of the guided conditional (its standard deviation is `sigma_t`)."""
        energy = _require_energy(energy)
        t = jnp.asarray(t, dtype=x_1.dtype)
        s = self.scheduler(t)
        _, _, g = self._linearisation(x_1, t, energy, context)
        return s.alpha_t * x_1 - self.lambda_t(t) * s.sigma_t**2 * g

    def log_normalizer(
        self,
        x_1: Float[Array, " dim"],
        t: ScalarLike,
        energy: Energy,
        context: Float[Array, " ctx"] | None = None,
    ) -> Float[Array, ""]:
        """`log Z_t(x_1) = log E_{N(x; alpha_t x_1, sigma_t^2)}[exp(-lambda_t E(x))]` under the linearisation.

        At the conditional mean this is `-lambda_t E(m_t) + lambda_t^2 sigma_t^2 |g|^2 / 2`; with `gradient="data"`
        the linear model around `x_1` is used, `E(m_t) ~ E(x_1) + g.(m_t - x_1)`.
        """
        energy = _require_energy(energy)
        t = jnp.asarray(t, dtype=x_1.dtype)
        s = self.scheduler(t)
        lam = self.lambda_t(t)
        c, e, g = self._linearisation(x_1, t, energy, context)
        e_mean = e + jnp.dot(g, s.alpha_t * x_1 - c)
        return -lam * e_mean + 0.5 * lam**2 * s.sigma_t**2 * jnp.sum(g**2)


def _require_energy(energy: Energy | None) -> Energy:
    if not callable(energy):
        raise TypeError(
            "GuidedGaussianPath needs the energy as a function of one point, E(x) or E(x, c), to tilt its "
            f"conditionals; got {type(energy).__name__}"
            + (" (energies already evaluated cannot be differentiated)" if energy is not None else "")
        )
    return energy

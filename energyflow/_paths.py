"""Probability paths: the ordinary affine Gaussian path and the energy-guided Gaussian path.

All methods act on one example (`x0`, `x1` of shape `[d]`, scalar `t`); `jax.vmap` them for batches.
"""

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
    """A point on a conditional path: `x_t` and its conditional velocity `dx_t` at time `t`."""

    x_0: Float[Array, "dim"]
    x_1: Float[Array, "dim"]
    t: Float[Array, ""]
    x_t: Float[Array, "dim"]
    dx_t: Float[Array, "dim"]


def call_energy(energy: Energy, x: Float[Array, "dim"], context: Float[Array, "ctx"] | None) -> Float[Array, ""]:
    """Evaluate `energy(x)` or, with a context, `energy(x, context)`."""
    return energy(x) if context is None else energy(x, context)


class AffineProbPath(eqx.Module):
    """The conditional Gaussian path `x_t = alpha_t x1 + sigma_t x0` of a scheduler."""

    scheduler: AbstractScheduler = CondOTScheduler()

    def sample(self, x0: Float[Array, "dim"], x1: Float[Array, "dim"], t: ScalarLike) -> PathSample:
        """Return `x_t` and the conditional velocity `u_t = alpha'_t x1 + sigma'_t x0`."""
        t = jnp.asarray(t, dtype=x1.dtype)
        s = self.scheduler(t)
        return PathSample(
            x_0=x0,
            x_1=x1,
            t=t,
            x_t=s.alpha_t * x1 + s.sigma_t * x0,
            dx_t=s.d_alpha_t * x1 + s.d_sigma_t * x0,
        )


class GuidedGaussianPath(eqx.Module):
    """The energy-guided Gaussian path (MATH section 4).

    Each conditional `N(x; alpha_t x1, sigma_t^2 I)` is tilted by `exp(-lambda_t E(x))`. Linearising `E` at a point
    `c` with gradient `g` keeps it Gaussian with mean `mu_t = alpha_t x1 - lambda_t sigma_t^2 g` (exact for linear `E`).

    Attributes:
        scheduler: the affine schedule of the untilted path.
        beta: inverse temperature, `lambda_1 = beta`.
        schedule: `"linear"` (`lambda_t = beta t`, the default), `"constant"` (`lambda_t = beta`; note that it
            breaks `lambda_0 = 0`, so the path does not start at `N(0, I)`), or a callable `(t, beta) -> lambda_t`.
        gradient: `"mean"` takes `g = grad E(alpha_t x1)` at the conditional mean, so the velocity includes the
            Hessian-vector term `d g / dt`; `"data"` freezes `g = grad E(x1)` (cheaper, one gradient per sample).
    """

    scheduler: AbstractScheduler = CondOTScheduler()
    beta: ScalarLike = 1.0
    schedule: LambdaSchedule = eqx.field(default="linear", static=True)
    gradient: Literal["mean", "data"] = eqx.field(default="mean", static=True)

    def __check_init__(self):
        if self.gradient not in ("mean", "data"):
            raise ValueError(f"gradient must be 'mean' or 'data', got {self.gradient!r}")
        if not callable(self.schedule) and self.schedule not in ("linear", "constant"):
            raise ValueError(f"schedule must be 'linear', 'constant' or a callable (t, beta) -> lambda_t, got {self.schedule!r}")
        if isinstance(self.beta, (int, float)) and self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")

    def lambda_t(self, t: ScalarLike) -> Float[Array, ""]:
        """The guidance strength at time `t`."""
        t = jnp.asarray(t)
        if self.schedule == "linear":
            return self.beta * t
        if self.schedule == "constant":
            return self.beta * jnp.ones_like(t)
        return jnp.asarray(self.schedule(t, self.beta))

    def _linearisation(self, x1, t, energy, context):
        """`(c, E(c), g)`: the point where `E` is linearised, its energy and gradient."""
        alpha = self.scheduler(t).alpha_t
        c = alpha * x1 if self.gradient == "mean" else x1
        e, g = jax.value_and_grad(lambda x: call_energy(energy, x, context))(c)
        return c, e, g

    def _x_t(self, x0, x1, t, energy, context, g_frozen):
        s = self.scheduler(t)
        if g_frozen is None:
            g = jax.grad(lambda x: call_energy(energy, x, context))(s.alpha_t * x1)
        else:
            g = g_frozen
        return s.alpha_t * x1 - self.lambda_t(t) * s.sigma_t**2 * g + s.sigma_t * x0

    def sample(
        self,
        x0: Float[Array, "dim"],
        x1: Float[Array, "dim"],
        t: ScalarLike,
        energy: Energy,
        context: Float[Array, "ctx"] | None = None,
    ) -> PathSample:
        """Return `x_t = mu_t + sigma_t x0` and `dx_t = d x_t / dt` at fixed `(x0, x1)`, by forward-mode AD."""
        t = jnp.asarray(t, dtype=x1.dtype)
        g_frozen = None if self.gradient == "mean" else jax.grad(lambda x: call_energy(energy, x, context))(x1)
        x_t, dx_t = jax.jvp(lambda tt: self._x_t(x0, x1, tt, energy, context, g_frozen), (t,), (jnp.ones_like(t),))
        return PathSample(x_0=x0, x_1=x1, t=t, x_t=x_t, dx_t=dx_t)

    def mean(
        self,
        x1: Float[Array, "dim"],
        t: ScalarLike,
        energy: Energy,
        context: Float[Array, "ctx"] | None = None,
    ) -> Float[Array, "dim"]:
        """The mean `mu_t` of the guided conditional (its standard deviation is `sigma_t`)."""
        t = jnp.asarray(t, dtype=x1.dtype)
        s = self.scheduler(t)
        _, _, g = self._linearisation(x1, t, energy, context)
        return s.alpha_t * x1 - self.lambda_t(t) * s.sigma_t**2 * g

    def log_normalizer(
        self,
        x1: Float[Array, "dim"],
        t: ScalarLike,
        energy: Energy,
        context: Float[Array, "ctx"] | None = None,
    ) -> Float[Array, ""]:
        """`log Z_t(x1) = log E_{N(x; alpha_t x1, sigma_t^2)}[exp(-lambda_t E(x))]` under the linearisation.

        At the conditional mean this is `-lambda_t E(m_t) + lambda_t^2 sigma_t^2 |g|^2 / 2`; with `gradient="data"`
        the linear model around `x1` is used, `E(m_t) ~ E(x1) + g.(m_t - x1)`.
        """
        t = jnp.asarray(t, dtype=x1.dtype)
        s = self.scheduler(t)
        lam = self.lambda_t(t)
        c, e, g = self._linearisation(x1, t, energy, context)
        e_mean = e + jnp.dot(g, s.alpha_t * x1 - c)
        return -lam * e_mean + 0.5 * lam**2 * s.sigma_t**2 * jnp.sum(g**2)

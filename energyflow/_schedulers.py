"""Affine schedulers: `x_t = alpha_t x1 + sigma_t x0`, with t = 0 noise and t = 1 data."""

import abc
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, ScalarLike


class SchedulerOutput(NamedTuple):
    """The schedule and its time derivatives at one time `t`."""

    alpha_t: Float[Array, ""]
    sigma_t: Float[Array, ""]
    d_alpha_t: Float[Array, ""]
    d_sigma_t: Float[Array, ""]


class AbstractScheduler(eqx.Module):
    """A schedule `(alpha_t, sigma_t)` with `alpha_1 = 1` (data) and `sigma_0 = 1` (noise)."""

    @abc.abstractmethod
    def __call__(self, t: ScalarLike) -> SchedulerOutput:
        """Return `alpha_t, sigma_t` and their derivatives in `t` at a scalar time."""
        raise NotImplementedError


class CondOTScheduler(AbstractScheduler):
    """Conditional optimal transport (rectified flow): `alpha_t = t`, `sigma_t = 1 - (1 - sigma_min) t`.

    With `sigma_min > 0` every conditional path ends in a Gaussian of that width around its data point.
    """

    sigma_min: float = eqx.field(default=0.0, static=True)

    def __check_init__(self):
        if not 0.0 <= self.sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1), got {self.sigma_min!r}")

    def __call__(self, t: ScalarLike) -> SchedulerOutput:
        t = jnp.asarray(t)
        one = jnp.ones_like(t)
        return SchedulerOutput(
            alpha_t=t,
            sigma_t=1.0 - (1.0 - self.sigma_min) * t,
            d_alpha_t=one,
            d_sigma_t=-(1.0 - self.sigma_min) * one,
        )


class CosineScheduler(AbstractScheduler):
    """Cosine schedule: `alpha_t = sin(pi t / 2)`, `sigma_t = cos(pi t / 2)`."""

    def __call__(self, t: ScalarLike) -> SchedulerOutput:
        t = jnp.asarray(t)
        half_pi = 0.5 * jnp.pi
        return SchedulerOutput(
            alpha_t=jnp.sin(half_pi * t),
            sigma_t=jnp.cos(half_pi * t),
            d_alpha_t=half_pi * jnp.cos(half_pi * t),
            d_sigma_t=-half_pi * jnp.sin(half_pi * t),
        )


class VPScheduler(AbstractScheduler):
    """Variance-preserving schedule with a linear noise rate `b(s) = beta_min + s (beta_max - beta_min)`.

    In diffusion time `s = 1 - t`: `alpha_t = exp(-T(s) / 2)` with `T(s) = beta_min s + (beta_max - beta_min) s^2 / 2`
    and `sigma_t = sqrt(1 - alpha_t^2)`, computed as `sqrt(-expm1(-T))`: near `t = 1`, where `alpha_t^2` is within a
    few float32 ulps of 1, the subtraction `1 - alpha_t^2` would lose most of its digits (a relative error of 1e-3 in
    `sigma_t` at `t = 0.9999`). `alpha_0` is small but not zero, and `d_sigma_t` diverges at `t = 1` (as for every VP
    path); training draws `t < 1` and samplers need not evaluate there.
    """

    beta_min: float = eqx.field(default=0.1, static=True)
    beta_max: float = eqx.field(default=20.0, static=True)

    def __check_init__(self):
        # beta_max = 0 would mean no noise at all: sigma_t = 0 everywhere and d_sigma_t = 0/0.
        if not (0.0 <= self.beta_min <= self.beta_max and self.beta_max > 0.0):
            raise ValueError(
                "need 0 <= beta_min <= beta_max and beta_max > 0, "
                f"got beta_min={self.beta_min!r}, beta_max={self.beta_max!r}"
            )

    def __call__(self, t: ScalarLike) -> SchedulerOutput:
        t = jnp.asarray(t)
        s = 1.0 - t
        big_t = self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2
        rate = self.beta_min + (self.beta_max - self.beta_min) * s  # dT/ds
        alpha = jnp.exp(-0.5 * big_t)
        sigma = jnp.sqrt(-jnp.expm1(-big_t))  # = sqrt(1 - alpha^2), without the cancellation near t = 1
        d_alpha = 0.5 * alpha * rate  # ds/dt = -1
        d_sigma = -alpha * d_alpha / sigma
        return SchedulerOutput(alpha_t=alpha, sigma_t=sigma, d_alpha_t=d_alpha, d_sigma_t=d_sigma)

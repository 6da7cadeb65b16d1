"""Inference-time energy guidance: steer a flow trained on `p` towards `q ∝ p exp(-beta E)` while sampling.

The flow's velocity `v(x, t)` is corrected by a `lambda_t`-scaled `-grad E` term, with no retraining. For an affine
path, the velocity and the score of the marginal `p_t` are tied by `v = (alpha'_t / alpha_t) x + k_t grad log p_t`
with `k_t = sigma_t (alpha'_t sigma_t - sigma'_t alpha_t) / alpha_t` (`(1 - t) / t` for CondOT). Tilting the marginal
as `q_t ≈ p_t exp(-lambda_t E(y))` therefore adds `-k_t lambda_t grad_x E(y)` to the velocity, where the point `y`
is one of the usual choices:

- `"x_t"`: the current point (classifier guidance applied to the flow's own state);
- `"endpoint"`: the one-step prediction of the data end, `x1_hat = E[x_1 | x_t]` read off the velocity, with the
  gradient taken at that point and no derivative through the network;
- `"endpoint_backprop"`: the same prediction, differentiated through the network (`grad_x E(x1_hat(x))`, as in
  diffusion posterior sampling; one vector-Jacobian product of the network per step).

All three are approximations: the exact correction is `grad log E[exp(-beta E(x_1)) | x_t]`, which none of them
computes. The docs' guidance page (`docs/guidance.md`) measures how far each lands from `q`, next to the trained
alternatives; the derivation is in `docs/maths.md`, "Inference-time guidance".
"""

from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, ScalarLike

from ._losses import VelocityModel
from ._paths import Energy, GuidedGaussianPath, LambdaSchedule, call_energy
from ._schedulers import AbstractScheduler, CondOTScheduler, SchedulerOutput
from ._solver import sample

GradientAt = Literal["x_t", "endpoint", "endpoint_backprop"]
_GRADIENT_AT = ("x_t", "endpoint", "endpoint_backprop")


def _endpoint(x: Float[Array, " dim"], v: Float[Array, " dim"], s: SchedulerOutput) -> Float[Array, " dim"]:
    """The data end predicted from `x_t` and the velocity: solve `x_t = alpha x1 + sigma x0`, `v = alpha' x1 +
    sigma' x0` for `x1` (for CondOT, `x + (1 - t) v`)."""
    return (s.d_sigma_t * x - s.sigma_t * v) / (s.d_sigma_t * s.alpha_t - s.sigma_t * s.d_alpha_t)


class GuidedVelocity(eqx.Module):
    """A flow's velocity with energy guidance added at sampling time: `v(x, t) - k_t lambda_t grad E(y)`.

    Use it wherever a velocity model goes (`energyflow.sample`, `log_prob`, ...), or call `sample_guided`.
    `lambda_t` follows `GuidedGaussianPath`'s schedules; the default `lambda_t = beta t` puts no tilt on the noise and
    the full `exp(-beta E)` on the data. With `"endpoint_backprop"`, `lambda_schedule="constant"` (`lambda = beta`) is
    exact for a Gaussian `p` and a linear `E` given the exact velocity (the network's Jacobian fades the correction
    out at the noise end), but it multiplies the error of a fitted network's Jacobian by `1 / t` near the noise, which
    the docs' guidance page shows to be ruinous on multi-modal targets. `k_t` converts a score correction into a
    velocity for the scheduler the flow was trained with; at `t = 0`, where `alpha_0 = 0`, `lambda_t / alpha_t` is
    taken as its limit `lambda'_0 / alpha'_0` (`beta` for CondOT with the linear schedule; 0 for schedules with
    `lambda_0 != 0`, which have no finite limit there, so their guidance starts after the first step).

    Attributes:
        model: the trained velocity, `model(x, t, context)`.
        energy: `E(x)`, or `E(x, c)` for a conditional model.
        beta: inverse temperature of the target.
        scheduler: the affine schedule the model was trained on (default CondOT).
        lambda_schedule: `"linear"` (`lambda_t = beta t`, the default), `"constant"` or a callable
            `(t, beta) -> lambda_t`.
        gradient_at: where `grad E` is taken: `"x_t"`, `"endpoint"` or `"endpoint_backprop"` (see the module).
    """

    model: VelocityModel
    energy: Energy
    beta: ScalarLike
    scheduler: AbstractScheduler = CondOTScheduler()
    lambda_schedule: LambdaSchedule = eqx.field(default="linear", static=True)
    gradient_at: GradientAt = eqx.field(default="x_t", static=True)

    def __check_init__(self):
        if self.gradient_at not in _GRADIENT_AT:
            raise ValueError(f"gradient_at must be one of {_GRADIENT_AT}, got {self.gradient_at!r}")
        if not callable(self.energy):
            raise TypeError(
                f"energy must be a function of one point, E(x) or E(x, c); got {type(self.energy).__name__}"
            )
        self._tilt_path()  # the lambda schedule is GuidedGaussianPath's; building the path checks it and beta

    def _tilt_path(self) -> GuidedGaussianPath:
        return GuidedGaussianPath(self.scheduler, beta=self.beta, lambda_schedule=self.lambda_schedule)

    @property
    def dim(self) -> int | None:
        return getattr(self.model, "dim", None)

    @property
    def context_dim(self) -> int | None:
        return getattr(self.model, "context_dim", None)

    def guidance_scale(self, t: ScalarLike) -> Float[Array, ""]:
        """`k_t lambda_t`: the factor of `-grad E` in the velocity at time `t`."""
        t = jnp.asarray(t)
        s = self.scheduler(t)
        lam, d_lam = jax.jvp(self._tilt_path().lambda_t, (t,), (jnp.ones_like(t),))
        positive = s.alpha_t > 0
        ratio = jnp.where(positive, lam / jnp.where(positive, s.alpha_t, 1.0), d_lam / s.d_alpha_t)
        return ratio * s.sigma_t * (s.d_alpha_t * s.sigma_t - s.d_sigma_t * s.alpha_t)

    def __call__(
        self, x: Float[Array, " dim"], t: ScalarLike, context: Float[Array, " ctx"] | None = None
    ) -> Float[Array, " dim"]:
        t = jnp.asarray(t, dtype=x.dtype)
        s = self.scheduler(t)

        def energy_of(y):
            return call_energy(self.energy, y, context)

        if self.gradient_at == "endpoint_backprop":
            def predicted_endpoint(z):
                v = self.model(z, t, context)
                return _endpoint(z, v, s), v

            x1_hat, pullback, v = jax.vjp(predicted_endpoint, x, has_aux=True)
            (g,) = pullback(jax.grad(energy_of)(x1_hat))
        else:
            v = self.model(x, t, context)
            y = x if self.gradient_at == "x_t" else jax.lax.stop_gradient(_endpoint(x, v, s))
            g = jax.grad(energy_of)(y)
        return v - self.guidance_scale(t) * g


def sample_guided(
    model: VelocityModel,
    energy: Energy,
    key: PRNGKeyArray | None,
    n_or_x0: int | ArrayLike,
    *,
    beta: ScalarLike,
    scheduler: AbstractScheduler | None = None,
    lambda_schedule: LambdaSchedule = "linear",
    gradient_at: GradientAt = "x_t",
    **sample_options: Any,
) -> Float[Array, "n dim"]:
    """Sample a flow trained on `p` with energy guidance towards `q ∝ p exp(-beta E)` added at inference time.

    The same as `energyflow.sample(GuidedVelocity(model, energy, beta, ...), key, n_or_x0, **sample_options)`. Each
    solver step costs one energy gradient on top of the network (and, with `"endpoint_backprop"`, a backward pass
    through the network), for every sample: the guidance is paid at sampling time, not in training.

    Args:
        model: the velocity of a flow trained on `p`, `model(x, t, context)`.
        energy: `E(x)`, or `E(x, c)` for a conditional model.
        key: PRNG key for the starting noise (or `None` with given starting points).
        n_or_x0: a number of samples, or the starting points `[n, dim]`.
        beta: inverse temperature.
        scheduler: the affine schedule the model was trained on (default CondOT).
        lambda_schedule: the guidance schedule, as `GuidedGaussianPath`'s (default `lambda_t = beta t`).
        gradient_at: `"x_t"`, `"endpoint"` or `"endpoint_backprop"` (see `GuidedVelocity`).
        **sample_options: passed to `energyflow.sample` (`steps`, `solver`, `context`, `dim`, ...).
    """
    guided = GuidedVelocity(
        model,
        energy,
        beta,
        CondOTScheduler() if scheduler is None else scheduler,
        lambda_schedule=lambda_schedule,
        gradient_at=gradient_at,
    )
    return sample(guided, key, n_or_x0, **sample_options)

"""`fit`: hand it samples of `p` and an energy `E`, get back a flow that samples `q ∝ p exp(-beta E)`."""

import typing
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray
from tqdm.auto import tqdm

from ._losses import cfm_loss, energy_guided_loss, energy_weighted_loss
from ._nets import MLPVelocity
from ._paths import AffineProbPath, GuidedGaussianPath
from ._schedulers import AbstractScheduler, CondOTScheduler
from ._solver import log_prob as _log_prob
from ._solver import sample as _sample
from ._solver import sample_with_log_prob as _sample_with_log_prob
from ._validate import check_beta, check_data, check_energy, check_positive_int

Method = Literal["weighted", "guided", "plain"]
METHODS = ("weighted", "guided", "plain")


class FlowModel(eqx.Module):
    """A trained flow. The network works on standardised data `z = (x - shift) / scale`; this class maps back.

    Attributes:
        velocity: the velocity network `v(z, t, None)` in standardised coordinates.
        shift, scale: the standardisation of the training data.
        loss_history: the training loss at every step.
        method: the loss it was trained with.
        solver, steps: the ODE solver and number of steps used by default by `sample` and `log_prob`.
    """

    velocity: eqx.Module
    shift: Float[Array, " dim"]
    scale: Float[Array, " dim"]
    loss_history: Float[Array, " steps"]
    method: str = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="midpoint")
    steps: int = eqx.field(static=True, default=32)

    @property
    def dim(self) -> int:
        return self.shift.shape[0]

    def _to_x(self, z):
        return z * self.scale[None, :] + self.shift[None, :]

    def sample(self, key: PRNGKeyArray, n: int, *, solver: str | None = None, steps: int | None = None) -> Float[Array, "n dim"]:
        """Draw `n` samples of the target by solving the flow ODE from noise."""
        n = check_positive_int(n, "n")
        z = _sample(self.velocity, key, n, dim=self.dim, solver=solver or self.solver, steps=steps or self.steps)
        return self._to_x(z)

    def log_prob(self, x: Float[ArrayLike, "n dim"], *, solver: str | None = None, steps: int | None = None) -> Float[Array, " n"]:
        """The model's log-density at `x` (instantaneous change of variables, exact divergence)."""
        x = check_data(x, "x")
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} columns like the training data, got shape {tuple(x.shape)}")
        z = (x - self.shift[None, :]) / self.scale[None, :]
        lp = _log_prob(self.velocity, z, solver=solver or self.solver, steps=steps or self.steps)
        return lp - jnp.sum(jnp.log(self.scale))

    def sample_with_log_prob(
        self, key: PRNGKeyArray, n: int, *, solver: str | None = None, steps: int | None = None
    ) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
        """Samples and their model log-density from one solve."""
        n = check_positive_int(n, "n")
        z, lp = _sample_with_log_prob(
            self.velocity, key, n, dim=self.dim, solver=solver or self.solver, steps=steps or self.steps
        )
        return self._to_x(z), lp - jnp.sum(jnp.log(self.scale))


def _make_loss(method, scheduler, beta, energy_z, guided_weighted, guided_weight_at, lambda_schedule, gradient, group_size):
    """`loss(model, x1, energies, key)` for the chosen method, on standardised data."""
    if method == "plain":
        path = AffineProbPath(scheduler)
        return lambda model, x1, e, key: cfm_loss(model, path, x1, key=key)
    if method == "weighted":
        path = AffineProbPath(scheduler)
        return lambda model, x1, e, key: energy_weighted_loss(model, path, x1, e, beta=beta, key=key)
    path = GuidedGaussianPath(scheduler, beta=beta, schedule=lambda_schedule, gradient=gradient)
    if not guided_weighted:
        return lambda model, x1, e, key: energy_guided_loss(model, path, x1, energy_z, key=key)
    if guided_weight_at == "endpoint":
        return lambda model, x1, e, key: energy_guided_loss(
            model, path, x1, energy_z, key=key, weighted=True, weight_at="endpoint"
        )

    def guided_weighted_loss(model, x1, e, key):
        # The weights softmax(log Z_t(x1)) must be normalised among examples at the SAME time t (a softmax across
        # different times would also reweight time itself, starving small t at large beta), so the batch is cut into
        # groups that share one t, and each group is normalised on its own.
        k_t, k_loss = jax.random.split(key)
        groups = x1.shape[0] // group_size
        t = jnp.repeat(jax.random.uniform(k_t, (groups,)), group_size)
        return energy_guided_loss(
            model, path, x1, energy_z, key=k_loss, t=t, weighted=True, group_size=group_size
        )

    return guided_weighted_loss


@typing.no_type_check  # validated by hand below, so that users and tests see the same messages
def fit(
    data: Float[ArrayLike, "n dim"],
    energy: Callable[[Float[Array, " dim"]], Float[Array, ""]] | None,
    *,
    beta: float,
    key: PRNGKeyArray,
    method: Method = "weighted",
    steps: int = 4000,
    batch_size: int = 512,
    learning_rate: float = 2e-3,
    width: int = 256,
    depth: int = 3,
    model: eqx.Module | None = None,
    scheduler: AbstractScheduler | None = None,
    guided_weighted: bool = True,
    guided_weight_at: Literal["t", "endpoint"] = "endpoint",
    lambda_schedule: Literal["linear", "constant"] | Callable = "linear",
    gradient: Literal["mean", "data"] = "mean",
    guided_group_size: int = 128,
    standardize: bool = True,
    solver: str = "midpoint",
    sample_steps: int = 32,
    log_every: int = 100,
    progress: bool = True,
) -> FlowModel:
    """Train a flow whose samples follow `q(x) ∝ p(x) exp(-beta E(x))`, given samples of `p` and the energy `E`.

    Args:
        data: samples of `p`, shape `[n, dim]` (numpy or JAX).
        energy: `E(x)` for ONE point `x` of shape `[dim]`, returning a scalar (it is vectorised inside). May be
            `None` with `method="plain"`.
        beta: inverse temperature, `>= 0`.
        key: a JAX PRNG key (for the network, the batches and the noise).
        method: `"weighted"` (energy-weighted flow matching: exact target, needs `E` at data points only),
            `"guided"` (energy-guided Gaussian path: needs `grad E`), or `"plain"` (fits `p`, ignores `E`).
        steps: optimiser steps.
        batch_size: points per step; EFM's weights are normalised within a batch, so larger batches mean less
            bias at large `beta`.
        learning_rate: peak Adam learning rate (cosine decay to 10% of it).
        width: the default `MLPVelocity`'s hidden width; ignored when `model` is given.
        depth: the default `MLPVelocity`'s number of hidden layers; ignored when `model` is given.
        model: your own velocity network, called as `model(z, t, None)` on standardised data `z`.
        scheduler: the affine schedule; default `CondOTScheduler()`.
        guided_weighted: with `"guided"`, weight examples by the guided path's normalisers `softmax(log Z_t)`
            (without them the path's end is `p`, not `q`; see the docs' comparison).
        guided_weight_at: `"endpoint"` (weights `softmax(log Z_1)`, constant in time: the flow ends at `q`) or `"t"`
            (`softmax(log Z_t)` at each example's time, normalised among examples that share one `t`).
        lambda_schedule: `GuidedGaussianPath`'s `schedule` for `"guided"` (`lambda_t = beta t` by default).
        gradient: `GuidedGaussianPath`'s `gradient` for `"guided"`: at the conditional mean or at the data.
        guided_group_size: with `guided_weight_at="t"`, examples come in groups of this size that share one time `t`,
            and the weights are normalised within each group.
        standardize: train on `(x - mean) / std` of the data (the energy is still called on `x`).
        solver: the default ODE solver of the returned model's `sample` and `log_prob`.
        sample_steps: the default number of solver steps of the returned model.
        log_every: steps per jitted chunk, and per progress-bar update.
        progress: show a progress bar.

    Returns:
        A `FlowModel` with `.sample(key, n)`, `.log_prob(x)` and `.loss_history`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = check_data(data)
    n, dim = x.shape
    beta = check_beta(beta)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    log_every = check_positive_int(log_every, "log_every")
    check_positive_int(guided_group_size, "guided_group_size")
    check_positive_int(sample_steps, "sample_steps")
    if energy is None and method != "plain":
        raise ValueError(f"method={method!r} needs an energy function; pass energy=None only with method='plain'")
    if energy is not None:
        check_energy(energy, x)
    if model is None:
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")

    if standardize:
        shift, scale = jnp.mean(x, axis=0), jnp.maximum(jnp.std(x, axis=0), 1e-6)
    else:
        shift, scale = jnp.zeros(dim), jnp.ones(dim)
    z_data = (x - shift[None, :]) / scale[None, :]

    def energy_z(z):
        return energy(z * scale + shift)

    energies = jax.vmap(energy)(x) if energy is not None else jnp.zeros(n)

    key, model_key = jax.random.split(key)
    if model is None:
        model = MLPVelocity(dim, width=width, depth=depth, key=model_key)
    scheduler = CondOTScheduler() if scheduler is None else scheduler
    group_size = min(guided_group_size, batch_size)
    if guided_weight_at not in ("t", "endpoint"):
        raise ValueError(f"guided_weight_at must be 't' or 'endpoint', got {guided_weight_at!r}")
    if method == "guided" and guided_weighted and guided_weight_at == "t" and batch_size % group_size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of guided_group_size ({group_size})")
    loss_fn = _make_loss(
        method, scheduler, beta, energy_z, guided_weighted, guided_weight_at, lambda_schedule, gradient, group_size
    )

    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1)
    optimiser = optax.adam(schedule)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimiser.init(params)

    def one_step(carry, step_key):
        params, opt_state = carry
        k_idx, k_loss = jax.random.split(step_key)
        idx = jax.random.randint(k_idx, (batch_size,), 0, n)

        def loss_of(p):
            return loss_fn(eqx.combine(p, static), z_data[idx], energies[idx], k_loss)

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @eqx.filter_jit
    def run_chunk(params, opt_state, chunk_key, length):
        keys = jax.random.split(chunk_key, length)
        (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state), keys)
        return params, opt_state, losses

    history = []
    done = 0
    bar = tqdm(total=steps, desc=f"fit[{method}]", disable=not progress, leave=False)
    while done < steps:
        length = min(log_every, steps - done)
        key, chunk_key = jax.random.split(key)
        params, opt_state, losses = run_chunk(params, opt_state, chunk_key, length)
        losses = np.asarray(losses)
        if not np.all(np.isfinite(losses)):
            bar.close()
            bad = done + int(np.argmin(np.isfinite(losses)))
            raise FloatingPointError(
                f"fit diverged: the loss became {losses[~np.isfinite(losses)][0]} at step {bad}; "
                "try a smaller learning_rate or beta"
            )
        history.append(losses)
        done += length
        bar.update(length)
        bar.set_postfix(loss=f"{losses.mean():.4f}")
    bar.close()

    return FlowModel(
        velocity=eqx.combine(params, static),
        shift=shift,
        scale=scale,
        loss_history=jnp.asarray(np.concatenate(history)),
        method=method,
        solver=solver,
        steps=sample_steps,
    )

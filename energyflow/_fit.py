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

from ._guidance import GradientAt
from ._guidance import sample_guided as _sample_guided
from ._losses import cfm_loss, energy_guided_loss, energy_weighted_loss
from ._nets import MLPVelocity
from ._paths import AffineProbPath, GuidedGaussianPath, LambdaSchedule
from ._schedulers import AbstractScheduler, CondOTScheduler
from ._solver import log_prob as _log_prob
from ._solver import sample as _sample
from ._solver import sample_with_log_prob as _sample_with_log_prob
from ._solver import _resolve_solver
from ._validate import check_beta, check_data, check_energy, check_key, check_positive_int, describe

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
        scheduler: the affine schedule the flow was trained on (used by `sample_guided`).
    """

    velocity: eqx.Module
    shift: Float[Array, " dim"]
    scale: Float[Array, " dim"]
    loss_history: Float[Array, " steps"]
    method: str = eqx.field(static=True)
    solver: str = eqx.field(static=True, default="midpoint")
    steps: int = eqx.field(static=True, default=32)
    scheduler: AbstractScheduler = CondOTScheduler()

    @property
    def dim(self) -> int:
        return self.shift.shape[0]

    def _to_x(self, z):
        return z * self.scale[None, :] + self.shift[None, :]

    def _solver_steps(self, solver, steps) -> tuple:
        """The solver and step count of a call: the model's own when `None`, else checked (`steps=0` is an error)."""
        return (
            self.solver if solver is None else solver,
            self.steps if steps is None else check_positive_int(steps, "steps"),
        )

    @typing.no_type_check  # validated by hand, so that users and tests see the same messages
    def sample(self, key: PRNGKeyArray, n: int, *, solver: str | None = None, steps: int | None = None) -> Float[Array, "n dim"]:
        """Draw `n` samples of the target by solving the flow ODE from noise.

        Raises:
            TypeError: a `key` that is not one PRNG key, or an `n` or `steps` that is not an int.
            ValueError: a non-positive `n` or `steps`, an unknown solver, or an `n` whose estimated memory exceeds
                the limit (the message gives the estimate and a chunk size).
        """
        key = check_key(key)
        n = check_positive_int(n, "n")
        solver, steps = self._solver_steps(solver, steps)
        z = _sample(self.velocity, key, n, dim=self.dim, solver=solver, steps=steps)
        return self._to_x(z)

    @typing.no_type_check
    def log_prob(self, x: Float[ArrayLike, "n dim"], *, solver: str | None = None, steps: int | None = None) -> Float[Array, " n"]:
        """The model's log-density at `x` (instantaneous change of variables, exact divergence).

        Raises:
            TypeError: `x` that is not an array of real numbers, or `steps` that is not an int.
            ValueError: `x` that is not `[n, dim]`, is empty (as in `energyflow.log_prob`, an empty batch is
                refused) or holds NaN/inf (the first bad row is named); a non-positive `steps`; an unknown solver.
        """
        x = check_data(x, "x")
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have {self.dim} columns like the training data, got shape {tuple(x.shape)}")
        solver, steps = self._solver_steps(solver, steps)
        z = (x - self.shift[None, :]) / self.scale[None, :]
        lp = _log_prob(self.velocity, z, solver=solver, steps=steps)
        return lp - jnp.sum(jnp.log(self.scale))

    @typing.no_type_check
    def sample_with_log_prob(
        self, key: PRNGKeyArray, n: int, *, solver: str | None = None, steps: int | None = None
    ) -> tuple[Float[Array, "n dim"], Float[Array, " n"]]:
        """Samples and their model log-density from one solve.

        Raises:
            TypeError, ValueError: as for `sample`.
        """
        key = check_key(key)
        n = check_positive_int(n, "n")
        solver, steps = self._solver_steps(solver, steps)
        z, lp = _sample_with_log_prob(self.velocity, key, n, dim=self.dim, solver=solver, steps=steps)
        return self._to_x(z), lp - jnp.sum(jnp.log(self.scale))

    @typing.no_type_check
    def sample_guided(
        self,
        key: PRNGKeyArray,
        n: int,
        energy: Callable[[Float[Array, " dim"]], Float[Array, ""]],
        *,
        beta: float,
        gradient_at: GradientAt = "x_t",
        lambda_schedule: LambdaSchedule = "linear",
        solver: str | None = None,
        steps: int | None = None,
    ) -> Float[Array, "n dim"]:
        """Draw `n` samples with energy guidance towards `q ∝ p_model exp(-beta E)` added at sampling time.

        Meant for a flow fitted with `method="plain"`: the velocity gets a `-grad E` term at every step (see
        `energyflow.sample_guided`; `energy` is a function of one point in the data's coordinates). Costs one energy
        gradient per sample and step on top of `sample`.

        Raises:
            TypeError, ValueError: as for `sample`, or a `gradient_at` or `lambda_schedule` that is not known.
        """
        key = check_key(key)
        n = check_positive_int(n, "n")
        beta = check_beta(beta)
        solver, steps = self._solver_steps(solver, steps)

        # A module rather than a closure, so that repeated calls with the same energy reuse the compiled solve.
        energy_z = _StandardisedEnergy(energy, self.shift, self.scale)
        z = _sample_guided(
            self.velocity, energy_z, key, n, beta=beta, scheduler=self.scheduler, lambda_schedule=lambda_schedule,
            gradient_at=gradient_at, dim=self.dim, solver=solver, steps=steps,
        )
        return self._to_x(z)


class _StandardisedEnergy(eqx.Module):
    """`E(z scale + shift)`: an energy of the data's coordinates, called on standardised points `z`."""

    energy: Callable
    shift: Float[Array, " dim"]
    scale: Float[Array, " dim"]

    def __call__(self, z: Float[Array, " dim"]) -> Float[Array, ""]:
        return self.energy(z * self.scale + self.shift)


TimeSampling = Literal["sqrt", "uniform"]
TIME_SAMPLINGS = ("sqrt", "uniform")


def _times(key: PRNGKeyArray, n: int, time_sampling: TimeSampling) -> Float[Array, " n"]:
    """`n` training times: `t = sqrt(u)` (density `2t`, more of them near the data) or `t = u`, `u ~ U[0, 1]`."""
    u = jax.random.uniform(key, (n,))
    return jnp.sqrt(u) if time_sampling == "sqrt" else u


def _group_times(key: PRNGKeyArray, groups: int, group_size: int, time_sampling: TimeSampling) -> Float[Array, " n"]:
    """One time per group, repeated over the group's `group_size` consecutive examples: `[t_1]*G + [t_2]*G + ...`."""
    return jnp.repeat(_times(key, groups, time_sampling), group_size)


def _make_loss(
    method, scheduler, beta, energy_z, guided_weighted, guided_weight_at, lambda_schedule, gradient, group_size,
    time_sampling,
):
    """`loss(model, x_1, energies, key)` for the chosen method, on standardised data."""

    def draws(key, n):
        k_t, k_0 = jax.random.split(key)
        return dict(t=_times(k_t, n, time_sampling), key=k_0)  # x_0 is drawn from `k_0` by the loss

    if method == "plain":
        path = AffineProbPath(scheduler)
        return lambda model, x_1, e, key: cfm_loss(model, path, x_1, **draws(key, x_1.shape[0]))
    if method == "weighted":
        path = AffineProbPath(scheduler)
        return lambda model, x_1, e, key: energy_weighted_loss(
            model, path, x_1, e, beta=beta, **draws(key, x_1.shape[0])
        )
    path = GuidedGaussianPath(scheduler, beta=beta, lambda_schedule=lambda_schedule, gradient=gradient)
    if not guided_weighted:
        return lambda model, x_1, e, key: energy_guided_loss(model, path, x_1, energy_z, **draws(key, x_1.shape[0]))
    if guided_weight_at == "endpoint":
        return lambda model, x_1, e, key: energy_guided_loss(
            model, path, x_1, energy_z, weighted=True, weight_at="endpoint", **draws(key, x_1.shape[0])
        )

    def guided_weighted_loss(model, x_1, e, key):
        # The weights softmax(log Z_t(x_1)) must be normalised among examples at the SAME time t (a softmax across
        # different times would also reweight time itself, starving small t at large beta), so the batch is cut into
        # groups that share one t, and each group is normalised on its own.
        k_t, k_loss = jax.random.split(key)
        t = _group_times(k_t, x_1.shape[0] // group_size, group_size, time_sampling)
        return energy_guided_loss(
            model, path, x_1, energy_z, key=k_loss, t=t, weighted=True, weight_at="t", group_size=group_size
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
    learning_rate: float = 4e-3,
    width: int = 256,
    depth: int = 3,
    model: eqx.Module | None = None,
    scheduler: AbstractScheduler | None = None,
    guided_weighted: bool = True,
    guided_weight_at: Literal["t", "endpoint"] = "endpoint",
    lambda_schedule: Literal["linear", "constant"] | Callable = "linear",
    gradient: Literal["mean", "data"] = "mean",
    guided_group_size: int = 128,
    time_sampling: TimeSampling = "sqrt",
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
        learning_rate: peak Adam learning rate (cosine decay to 10% of it); 4e-3 with `t = sqrt(u)` keeps the samples
            of weighted and guided fits on the modes (docs: "EFM vs the guided path", "Sample quality").
        width: the default `MLPVelocity`'s hidden width; ignored when `model` is given.
        depth: the default `MLPVelocity`'s number of hidden layers; ignored when `model` is given.
        model: your own velocity network, called as `model(z, t, None)` on standardised data `z`.
        scheduler: the affine schedule; default `CondOTScheduler()`.
        guided_weighted: with `"guided"`, weight examples by the guided path's normalisers `softmax(log Z_t)`
            (without them the path's end is `p`, not `q`; see the docs' comparison).
        guided_weight_at: `"endpoint"` (weights `softmax(log Z_1)`, constant in time: the flow ends at `q`) or `"t"`
            (`softmax(log Z_t)` at each example's time, normalised among examples that share one `t`).
        lambda_schedule: `GuidedGaussianPath`'s `lambda_schedule` for `"guided"` (`lambda_t = beta t` by default).
        gradient: `GuidedGaussianPath`'s `gradient` for `"guided"`: at the conditional mean or at the data.
        guided_group_size: with `guided_weight_at="t"`, examples come in groups of this size that share one time `t`,
            and the weights are normalised within each group.
        time_sampling: how training times are drawn: `"sqrt"` (`t = sqrt(u)`, density `2t`: more examples near the
            data end, where the velocity must resolve narrow modes; the default, measured to cut the samples that
            fall between modes: docs, "EFM vs the guided path", "Sample quality") or `"uniform"`. Any density
            that is positive on `(0, 1]` has the same minimiser; it only moves the effort.
        standardize: train on `(x - mean) / std` of the data (the energy is still called on `x`).
        solver: the default ODE solver of the returned model's `sample` and `log_prob`.
        sample_steps: the default number of solver steps of the returned model.
        log_every: steps per jitted chunk, and per progress-bar update.
        progress: show a progress bar.

    Returns:
        A `FlowModel` with `.sample(key, n)`, `.log_prob(x)` and `.loss_history`.

    Raises:
        TypeError: a `key` that is not one PRNG key (`jax.random.key(seed)` or a legacy `uint32[2]`), data that is
            not an array of real numbers, an energy that is not callable or fails on a point, a step count or size
            that is not an int, a solver that is neither a name nor a `diffrax.AbstractSolver`.
        ValueError: data that is not `[n, dim]`, is empty or holds NaN/inf; an energy that does not return one
            scalar per point or is NaN/inf at any data point (it is evaluated on every point, vectorised, and the
            first bad row is named); a negative `beta`; a non-positive step count; an unknown method or solver.
            All are raised before anything is compiled; the energy is evaluated last.
        FloatingPointError: the loss became NaN or inf during training.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {describe(method)}")
    x = check_data(data)
    n, dim = x.shape
    beta = check_beta(beta)
    key = check_key(key)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    log_every = check_positive_int(log_every, "log_every")
    check_positive_int(guided_group_size, "guided_group_size")
    check_positive_int(sample_steps, "sample_steps")
    _resolve_solver(solver)
    if not isinstance(guided_weight_at, str) or guided_weight_at not in ("t", "endpoint"):
        raise ValueError(f"guided_weight_at must be 't' or 'endpoint', got {describe(guided_weight_at)}")
    if not isinstance(time_sampling, str) or time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {describe(time_sampling)}")
    if model is None:
        check_positive_int(width, "width")
        check_positive_int(depth, "depth")
    if energy is None and method != "plain":
        raise ValueError(f"method={method!r} needs an energy function; pass energy=None only with method='plain'")
    # The energy on every data point, once: checked finite here and reused as the training energies.
    energies = None if energy is None else check_energy(energy, x)

    if standardize:
        shift, scale = jnp.mean(x, axis=0), jnp.maximum(jnp.std(x, axis=0), 1e-6)
    else:
        shift, scale = jnp.zeros(dim), jnp.ones(dim)
    z_data = (x - shift[None, :]) / scale[None, :]

    def energy_z(z):
        return energy(z * scale + shift)

    if energies is None:
        energies = jnp.zeros(n)

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
        method, scheduler, beta, energy_z, guided_weighted, guided_weight_at, lambda_schedule, gradient, group_size,
        time_sampling,
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
        scheduler=scheduler,
    )

"""Optimisation pieces the agents share: Adam, applying gradients, Polyak averaging, and stopping gradients.

Optimisers are pure `optax` transformations rebuilt from the config wherever they are needed (`init` and `update`);
only their states live in an agent's `State`.
"""

import equinox as eqx
import jax
import optax
from jaxtyping import PyTree

from .base import Scalar

__all__ = ["apply_gradients", "init_opt_state", "make_optimizer", "polyak_update", "stop_gradient"]


def make_optimizer(lr: Scalar, *, decay_steps: int = 0, max_grad_norm: float = 0.0) -> optax.GradientTransformation:
    """Adam with learning rate `lr`, cosine-decayed to 0 over `decay_steps` updates when `decay_steps > 0`.

    Args:
        lr: learning rate.
        decay_steps: length of the cosine decay; 0 keeps `lr` constant.
        max_grad_norm: clip the global gradient norm to this value first; 0 means no clipping.

    Returns:
        The optax transformation (pure: rebuild it from the same arguments inside `update`).
    """
    schedule = optax.cosine_decay_schedule(lr, decay_steps) if decay_steps > 0 else lr
    adam = optax.adam(schedule)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam) if max_grad_norm > 0 else adam


def init_opt_state(opt: optax.GradientTransformation, model: PyTree) -> PyTree:
    """The optimiser state for the trainable (inexact array) leaves of `model`."""
    return opt.init(eqx.filter(model, eqx.is_inexact_array))


def apply_gradients(
    model: PyTree, opt_state: PyTree, grads: PyTree, opt: optax.GradientTransformation
) -> tuple[PyTree, PyTree]:
    """One optimiser step on `model`; returns the new model and optimiser state."""
    updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
    return eqx.apply_updates(model, updates), opt_state


def stop_gradient(tree: PyTree) -> PyTree:
    """`jax.lax.stop_gradient` on every array leaf of a pytree (a network's activation functions pass through)."""
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


def polyak_update(target: PyTree, online: PyTree, tau: Scalar) -> PyTree:
    """`target <- (1 - tau) target + tau online` on the array leaves (other leaves are kept)."""

    def mix(t, o):
        return (1.0 - tau) * t + tau * o if eqx.is_inexact_array(t) else t

    return jax.tree.map(mix, target, online)

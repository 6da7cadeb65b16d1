"""QIPO's support pool: transitions kept with their drawn support sets between renewals (`rl.agents.qipo`).

Drawing `M` actions by ODE for every state of every batch costs `M x steps` policy evaluations
per state and update, far more than the loss itself on a CPU. QIPO re-draws support sets only every `K_renew`
updates, so we keep them: a pool of `pool_size` transitions, each stored with its support set (drawn at
`s`) and, for the softmax critic, its `M_critic` behaviour candidates at `s'`. Every update overwrites
`W = pool_size / renew_every` consecutive rows (round robin) with the first `W` transitions of the batch and freshly
drawn sets, so each row is renewed exactly every `renew_every` updates (rows `[b W, (b + 1) W)` at the updates
with `step % renew_every == b`), and the sampling cost per update is `W (M + M_critic) steps` network evaluations,
flat in time and falling as `1 / renew_every` at a fixed pool size. The policy-improvement minibatch and the softmax
critic's minibatch are drawn from the pool's filled rows; the IQL critic option trains on the batch itself.
Behaviour candidates never go stale (the behaviour flow is frozen after the warm-up); during the warm-up they come
from the flow being trained, which is why the critic's early targets are rough.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from energyflow import MLPVelocity
from rl.data import Transitions

from .policies import sample_action_sets

__all__ = ["Pool", "empty_pool", "pool_indices", "take_rows", "write_pool"]


class Pool(eqx.Module):
    """Transitions with their cached action sets (see the module docstring); `P` rows."""

    transitions: Transitions
    # M drawn actions at obs (policy draws, then behaviour draws), then the dataset action: [P, M + 1, act_dim]
    support: Float[Array, "P M1 act_dim"]
    # behaviour-flow candidates at next_obs for the softmax critic ([P, 0, act_dim] with the IQL critic)
    next_candidates: Float[Array, "P Mc act_dim"]


def empty_pool(size: int, support_size: int, num_candidates: int, *, obs_dim: int, act_dim: int) -> Pool:
    """A pool of `size` zero rows with support sets of `support_size + 1` actions and `num_candidates` candidates."""
    transitions = Transitions(
        obs=jnp.zeros((size, obs_dim)),
        action=jnp.zeros((size, act_dim)),
        reward=jnp.zeros((size,)),
        next_obs=jnp.zeros((size, obs_dim)),
        terminal=jnp.zeros((size,)),
    )
    return Pool(
        transitions=transitions,
        support=jnp.zeros((size, support_size + 1, act_dim)),
        next_candidates=jnp.zeros((size, num_candidates, act_dim)),
    )


def write_pool(
    pool: Pool,
    batch: Transitions,
    policy: MLPVelocity,
    behavior: MLPVelocity,
    step: Int[Array, ""],
    config: Any,
    *,
    key: PRNGKeyArray,
) -> Pool:
    """Overwrite rows `[b W, (b + 1) W)`, `b = step % renew_every`, with the batch's first `W` transitions.

    The support set of a row is `M - M_b` actions from `policy` and `M_b` from `behavior` at its state, then the
    dataset action; with the softmax critic the row also gets `critic_candidates` actions from `behavior` at its next
    state. `config` is QIPO's `Config` (`rl.agents.qipo`).
    """
    w = config.pool_writes
    ks, kc = jax.random.split(key)
    head = jax.tree.map(lambda x: x[:w], batch)
    obs, action = head.obs, head.action
    # support sets are first read at step warmup_steps, and every row is rewritten within the renew_every updates
    # before it, so earlier ones are never used: skip drawing them (a real branch: the trainer's step is unbatched)
    steps, solver = config.support_steps, config.policy.solver
    counts = ((policy, config.support_size - config.behavior_support), (behavior, config.behavior_support))

    def draw():
        keys = jax.random.split(ks)
        sets = [
            sample_action_sets(flow, obs, m, key=k, steps=steps, solver=solver)
            for (flow, m), k in zip(counts, keys, strict=True)
            if m
        ]
        return jnp.concatenate(sets, axis=1)

    drawn = jax.lax.cond(
        step >= config.warmup_steps - config.renew_every,
        draw,
        lambda: jnp.zeros((w, config.support_size, action.shape[-1]), action.dtype),
    )
    support = jnp.concatenate([drawn, action[:, None, :]], axis=1)
    if config.critic_loss == "softmax":
        m = config.critic_candidates
        candidates = sample_action_sets(behavior, head.next_obs, m, key=kc, steps=steps, solver=solver)
    else:
        candidates = pool.next_candidates[:w]
    rows = Pool(transitions=head, support=support, next_candidates=candidates)
    start = (step % config.renew_every) * w
    return jax.tree.map(
        lambda whole, part: jax.lax.dynamic_update_slice_in_dim(whole, part.astype(whole.dtype), start, axis=0),
        pool,
        rows,
    )


def take_rows(pool: Pool, index: Int[Array, " n"]) -> Pool:
    """The rows `index` of the pool."""
    return jax.tree.map(lambda x: x[index], pool)


def pool_indices(step: Int[Array, ""], count: int, config: Any, *, key: PRNGKeyArray) -> Int[Array, " count"]:
    """`count` uniform rows among those written so far (the pool fills during the first `renew_every` updates);
    `config` is QIPO's `Config`."""
    filled = jnp.minimum((step + 1) * config.pool_writes, config.pool_size)
    return jax.random.randint(key, (count,), 0, filled)

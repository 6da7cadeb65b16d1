"""The compiled unit of training: a *chunk* of updates of every seed, and the state it carries.

- The whole dataset lives on the device. A jitted chunk runs `length` updates with `lax.scan`; each update draws a
  batch of random indices inside `jit` and calls the agent's pure `update`. Python sees the loop once per chunk.
- Several seeds train together: `init` and the scanned chunk are `vmap`ped over seeds, so the seeds share one
  compiled program, each with its own RNG stream.
- With more than one device, training is data-parallel: a one-axis `Mesh`, each batch sharded along its leading
  axis, parameters and optimiser states replicated (the gradient mean becomes an all-reduce).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, Bool

from rl.data import Transitions

__all__ = ["Carry", "init_carry", "make_chunk_fn", "make_mesh", "nonfinite_leaves", "replicate", "seed_state"]


class Carry(eqx.Module):
    """What a chunk carries from update to update, for all seeds: agent states and RNG keys."""

    # the agent states, with a leading seed axis on every array
    agent: Any
    # one training PRNG key per seed, [seeds]
    key: Any


def init_carry(
    agent: types.ModuleType, config: Any, seeds: Sequence[int], *, obs_dim: int, act_dim: int
) -> Carry:
    """Initialise every seed's agent state and training key, stacked along a leading seed axis.

    Seed `s` starts from `jax.random.key(s)`, split into the agent's init key and the training stream, so a seed
    gets the same run whichever other seeds train beside it (up to floating-point reassociation under `vmap`).

    Each seed is initialised eagerly and the results are stacked: compiling an initialisation costs seconds, while
    its eager operations are compiled once per shape and shared by every seed and agent of the process.
    """
    carries = []
    for s in seeds:
        k_init, k_train = jax.random.split(jax.random.key(int(s)))
        carries.append(Carry(agent=agent.init(config, obs_dim=obs_dim, act_dim=act_dim, key=k_init), key=k_train))
    dynamic, static = eqx.partition(carries[0], eqx.is_array)
    leaves = [jax.tree.leaves(eqx.filter(c, eqx.is_array)) for c in carries]
    stacked = [jnp.stack(xs) for xs in zip(*leaves, strict=True)]
    return eqx.combine(jax.tree.unflatten(jax.tree.structure(dynamic), stacked), static)


def seed_state(state: Any, index: int) -> Any:
    """The agent state of the `index`-th seed of a stacked (vmapped) state."""
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, state)


def make_mesh(batch_size: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A one-axis (`"data"`) mesh over `devices` (default all), or None for a single device.

    Raises:
        ValueError: if `batch_size` does not split evenly over the devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the number of devices ({len(devices)}) for data-parallel "
            "training; change --train.batch_size or set --train.data_parallel=false."
        )
    return Mesh(np.asarray(devices), ("data",))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every array of `tree` replicated on `mesh` (unchanged without a mesh)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, tree)


@functools.lru_cache(maxsize=32)
def make_chunk_fn(
    agent: types.ModuleType, *, batch_size: int, mesh: Mesh | None = None
) -> Callable[[Carry, Transitions, int], tuple[Carry, dict[str, Array]]]:
    """The jitted chunk: `chunk(carry, data, length) -> (carry, infos)` runs `length` updates on every seed.

    Each update splits the seed's key into (next key, index key, update key), draws `batch_size` indices uniformly
    from the dataset, gathers the batch and calls `agent.update`. `infos` holds each diagnostic per seed and update,
    shape `[seeds, length]`. With a `mesh`, each batch is sharded over its `"data"` axis and the carry stays
    replicated; call it with a carry and data placed replicated on the mesh.

    One compiled program per distinct `length` (keep it fixed: `TrainConfig.updates_per_call`) and agent config;
    the function is cached, so later runs in the same process (same agent, batch size and mesh) reuse the programs.
    """
    batch_sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec("data"))
    replicated = None if mesh is None else NamedSharding(mesh, PartitionSpec())

    def run_seed(carry: Carry, step: Array, data: Transitions, length: int) -> tuple[Carry, dict[str, Array]]:
        # one step counter for all seeds, unbatched under `vmap`: a phase switch on it (`lax.cond`, as in QIPO's
        # warm-up) then runs only its taken branch, where a per-seed (batched) predicate would run both
        carry = eqx.tree_at(lambda c: c.agent.step, carry, step)
        n = data.reward.shape[0]
        dynamic, static = eqx.partition(carry, eqx.is_array)  # scan carries arrays only

        def body(dyn: Carry, _: None) -> tuple[Carry, dict[str, Array]]:
            c = eqx.combine(dyn, static)
            key, k_index, k_update = jax.random.split(c.key, 3)
            index = jax.random.randint(k_index, (batch_size,), 0, n)
            batch = jax.tree.map(lambda x: jnp.take(x, index, axis=0), data)
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            agent_state, info = agent.update(c.agent, batch, key=k_update)
            return eqx.filter(Carry(agent=agent_state, key=key), eqx.is_array), info

        dynamic, infos = jax.lax.scan(body, dynamic, None, length=length)
        return eqx.combine(dynamic, static), infos

    @eqx.filter_jit
    def chunk(carry: Carry, data: Transitions, length: int) -> tuple[Carry, dict[str, Array]]:
        # the seeds always train together, so they share one step (every agent state has one, see rl.agents.base;
        # `init_carry` stacks equal ones): take the first
        step = carry.agent.step[0]
        carry, infos = eqx.filter_vmap(run_seed, in_axes=(eqx.if_array(0), None, None, None))(
            carry, step, data, length
        )
        if replicated is not None:
            dynamic, static = eqx.partition(carry, eqx.is_array)
            dynamic = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, replicated), dynamic)
            carry = eqx.combine(dynamic, static)
        return carry, infos

    return chunk


@eqx.filter_jit
def _finite_per_leaf(state: Any) -> list[Bool[Array, " seeds"]]:
    floats = [x for x in jax.tree.leaves(eqx.filter(state, eqx.is_inexact_array))]
    return [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in floats]


def nonfinite_leaves(state: Any) -> list[tuple[int, str]]:
    """`(seed index, leaf path)` of every floating-point leaf of a stacked state holding a NaN or an infinity.

    One compiled reduction over the state (parameters, optimiser moments, target networks), run between chunks: a
    loss can stay finite while an Adam moment overflows, and the next update would then spread it.
    """
    flags = [np.asarray(f) for f in jax.device_get(_finite_per_leaf(state))]
    if all(f.all() for f in flags):
        return []
    paths = [
        jax.tree_util.keystr(p)
        for p, x in jax.tree_util.tree_leaves_with_path(eqx.filter(state, eqx.is_inexact_array))
        if x is not None
    ]
    return [(int(i), path) for path, f in zip(paths, flags, strict=True) for i in np.flatnonzero(~f)]

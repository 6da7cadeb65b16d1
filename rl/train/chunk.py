"""The compiled unit of training: a *chunk* of updates of every seed, and the state it carries.

- The whole dataset lives on the device. A jitted chunk runs `length` updates with `lax.scan`; each update draws a
  batch of random indices inside `jit` and calls the agent's pure `update`. Python sees the loop once per chunk.
- Several *members* train together (the seeds, times the values of a sweep: `rl.train.sweep`): `init` and the
  scanned chunk are `vmap`ped over members, so they share one compiled program, each with its own RNG stream. A
  sweep's values ride along as per-member arrays (`Carry.hparams`) that each update reads as traced numbers. A
  single member runs without the member axis (the same numbers; XLA's CPU kernels are faster without it).
- With more than one device, either the members are spread over the devices (`"members"` mesh: each device trains
  its share, no communication at all) or, for a single member, training is data-parallel (`"data"` mesh: each
  batch sharded along its leading axis, parameters and optimiser states replicated, the gradient mean becomes an
  all-reduce). `make_mesh` chooses.
"""

from __future__ import annotations

import dataclasses
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

from .sweep import Member, hparams_of, with_values

__all__ = [
    "Carry",
    "init_carry",
    "make_chunk_fn",
    "make_mesh",
    "member_state",
    "nonfinite_leaves",
    "place_carry",
    "replicate",
    "seed_state",
]


class Carry(eqx.Module):
    """What a chunk carries from update to update, for all members: agent states, RNG keys, swept values."""

    # the agent states, with a leading member axis on every array (the static config is the run's base config)
    agent: Any
    # one training PRNG key per member, [members]
    key: Any
    # the swept values, dotted agent field -> [members] float32 (empty outside a sweep)
    hparams: dict[str, Any] = eqx.field(default_factory=dict)


def init_carry(
    agent: types.ModuleType, config: Any, members: Sequence[Member] | Sequence[int], *, obs_dim: int, act_dim: int
) -> Carry:
    """Initialise every member's agent state and training key, stacked along a leading member axis.

    `members` are `rl.train.sweep.Member`s, or plain seeds (one member each, with `config`). Seed `s` starts from
    `jax.random.key(s)`, split into the agent's init key and the training stream, so a member gets the same run
    whichever other members train beside it (up to floating-point reassociation under `vmap`). Each member is
    initialised with its own config; its state then keeps the base `config` as its static part (equal for every
    member, so the states stack), and its swept values go to `Carry.hparams`.

    Each member is initialised eagerly and the results are stacked: compiling an initialisation costs seconds, while
    its eager operations are compiled once per shape and shared by every member and agent of the process.
    """
    members = [m if isinstance(m, Member) else Member(index=i, seed=int(m), values=(), config=config)
               for i, m in enumerate(members)]
    carries = []
    for m in members:
        k_init, k_train = jax.random.split(jax.random.key(m.seed))
        state = agent.init(m.config, obs_dim=obs_dim, act_dim=act_dim, key=k_init)
        if m.values:
            state = dataclasses.replace(state, config=config)
        carries.append(Carry(agent=state, key=k_train))
    dynamic, static = eqx.partition(carries[0], eqx.is_array)
    leaves = [jax.tree.leaves(eqx.filter(c, eqx.is_array)) for c in carries]
    stacked = [jnp.stack(xs) for xs in zip(*leaves, strict=True)]
    carry = eqx.combine(jax.tree.unflatten(jax.tree.structure(dynamic), stacked), static)
    return eqx.tree_at(lambda c: c.hparams, carry, hparams_of(members))


def seed_state(state: Any, index: int) -> Any:
    """The agent state of the `index`-th member of a stacked (vmapped) state."""
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, state)


def member_state(state: Any, member: Member) -> Any:
    """The agent state of one member, with that member's own config (what `act` and checkpoints of it need)."""
    one = seed_state(state, member.index)
    return dataclasses.replace(one, config=member.config) if member.values else one


def make_mesh(
    batch_size: int, devices: Sequence[jax.Device] | None = None, *, members: int = 1
) -> Mesh | None:
    """The mesh that spreads a run over `devices` (default the local ones), or None for a single device.

    With several members whose count is a multiple of the device count, a `"members"` mesh: each device trains
    `members / devices` of them, nothing is communicated. Otherwise a `"data"` mesh: every member's batch is split
    over the devices.

    Raises:
        ValueError: data parallelism is needed and `batch_size` does not split evenly over the devices.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    if members > 1 and members % len(devices) == 0:
        return Mesh(np.asarray(devices), ("members",))
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the number of devices ({len(devices)}) for data-parallel "
            f"training (the {members} member(s) do not split evenly over the devices either); change "
            "--train.batch_size or set --train.data_parallel=false."
        )
    return Mesh(np.asarray(devices), ("data",))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every array of `tree` replicated on `mesh` (unchanged without a mesh)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, tree)


def place_carry(carry: Carry, mesh: Mesh | None) -> Carry:
    """Place a carry on `mesh`: split along its member axis on a `"members"` mesh, replicated on a `"data"` one."""
    if mesh is None or "members" not in mesh.axis_names:
        return replicate(carry, mesh)
    sharding = NamedSharding(mesh, PartitionSpec("members"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, carry)


@functools.lru_cache(maxsize=32)
def make_chunk_fn(
    agent: types.ModuleType, *, batch_size: int, mesh: Mesh | None = None
) -> Callable[[Carry, Transitions, int], tuple[Carry, dict[str, Array]]]:
    """The jitted chunk: `chunk(carry, data, length) -> (carry, infos)` runs `length` updates on every member.

    Each update splits the member's key into (next key, index key, update key), draws `batch_size` indices uniformly
    from the dataset, gathers the batch and calls `agent.update` (in a sweep, on the state whose config holds the
    member's traced values). `infos` holds each diagnostic per member and update, shape `[members, length]`. With a
    `"data"` mesh each batch is sharded over the devices and the carry stays replicated; with a `"members"` mesh the
    carry stays split along its member axis and the data replicated. Place the carry with `place_carry` and the
    data with `replicate` on the same mesh.

    One compiled program per distinct `length` (keep it fixed: `TrainConfig.updates_per_call`) and agent config;
    the function is cached, so later runs in the same process (same agent, batch size and mesh) reuse the programs.
    """
    data_parallel = mesh is not None and "data" in mesh.axis_names
    batch_sharding = NamedSharding(mesh, PartitionSpec("data")) if data_parallel else None
    if mesh is None:
        carry_sharding = None
    else:
        carry_sharding = NamedSharding(mesh, PartitionSpec() if data_parallel else PartitionSpec("members"))

    def run_member(carry: Carry, step: Array, data: Transitions, length: int) -> tuple[Carry, dict[str, Array]]:
        # one step counter for all members, unbatched under `vmap`: a phase switch on it (`lax.cond`, as in QIPO's
        # warm-up) then runs only its taken branch, where a per-member (batched) predicate would run both
        carry = eqx.tree_at(lambda c: c.agent.step, carry, step)
        n = data.reward.shape[0]
        dynamic, static = eqx.partition(carry, eqx.is_array)  # scan carries arrays only
        base = carry.agent.config

        def body(dyn: Carry, _: None) -> tuple[Carry, dict[str, Array]]:
            c = eqx.combine(dyn, static)
            key, k_index, k_update = jax.random.split(c.key, 3)
            index = jax.random.randint(k_index, (batch_size,), 0, n)
            batch = jax.tree.map(lambda x: jnp.take(x, index, axis=0), data)
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            state = c.agent
            if c.hparams:  # a sweep: this member's values, traced, in place of the base config's
                state = dataclasses.replace(state, config=with_values(base, c.hparams))
            agent_state, info = agent.update(state, batch, key=k_update)
            if c.hparams:
                agent_state = dataclasses.replace(agent_state, config=base)
            return eqx.filter(Carry(agent=agent_state, key=key, hparams=c.hparams), eqx.is_array), info

        dynamic, infos = jax.lax.scan(body, dynamic, None, length=length)
        return eqx.combine(dynamic, static), infos

    @eqx.filter_jit
    def chunk(carry: Carry, data: Transitions, length: int) -> tuple[Carry, dict[str, Array]]:
        # the members always train together, so they share one step (every agent state has one, see
        # rl.agents.base; `init_carry` stacks equal ones): take the first
        step = carry.agent.step[0]
        if carry.key.shape[0] == 1:
            # one member: run it without the member axis, then put the axis back. A vmap of width one computes the
            # same numbers, but XLA's CPU kernels handle the extra batch dimension less well (weights copied to
            # feed batched products, reductions such as layer norm ~3x slower; `benchmarks/updates.py --sections 6`)
            one = jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, carry)
            one, infos = run_member(one, step, data, length)
            carry, infos = jax.tree.map(lambda x: x[None] if eqx.is_array(x) else x, (one, infos))
        else:
            carry, infos = eqx.filter_vmap(run_member, in_axes=(eqx.if_array(0), None, None, None))(
                carry, step, data, length
            )
        if carry_sharding is not None:
            dynamic, static = eqx.partition(carry, eqx.is_array)
            dynamic = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, carry_sharding), dynamic)
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

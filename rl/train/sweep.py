"""Sweeps: several values of the agent's hyper-parameters, times the seeds, trained as one compiled program.

A run trains *members*. A plain run has one member per seed; a sweep (`--sweep agent.beta=1,3,10`, repeatable: the
values of several fields combine as a product) has one member per combination of values and seed, values outermost,
seeds innermost. Every member is an independent training run with its own RNG stream, logs, evaluations and ledger
summary; all of them share one `vmap`ped, compiled chunk (`rl.train.chunk`).

How one program serves different values: the agent state keeps its config as a static field (the *base* config,
equal for every member), and the swept values travel beside it as per-member arrays (`Carry.hparams`, a leading
member axis). Inside the chunk, each member's update sees its base config with the swept fields replaced by its
(traced) values (`with_values`), so a value is data, never a constant baked into the program. Only `float` fields
can vary this way, and only those the agent uses as numbers: a field that picks a branch in Python or sets a size
cannot be traced and is refused with a message naming it (`check_sweep` traces one update to find out).

Evaluation, checkpoints of single members and summaries use each member's own concrete config (`Member.config`).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .fields import dotted_fields

__all__ = [
    "Member",
    "Sweep",
    "check_sweep",
    "member_config",
    "members_of",
    "parse_sweep",
    "sweepable_fields",
    "with_values",
]

Sweep = tuple[tuple[str, tuple[float, ...]], ...]
"""`((dotted agent field, values), ...)`: the fields a run sweeps, in the order given (an empty tuple: no sweep)."""


@dataclass(frozen=True)
class Member:
    """One independent run inside a process: a seed and, in a sweep, one value of each swept field."""

    # position on the member axis of the carry
    index: int
    # its training seed
    seed: int
    # `((field, value), ...)` of the swept fields (empty outside a sweep)
    values: tuple[tuple[str, float], ...]
    # its agent config (the base with its values)
    config: Any

    @property
    def label(self) -> str:
        """`seed 0`, or `beta=3 seed 0` in a sweep (messages, progress)."""
        return " ".join([*(f"{k}={_fmt(v)}" for k, v in self.values), f"seed {self.seed}"])

    @property
    def path(self) -> str:
        """Its directory inside the run directory: `seed_0`, or `beta=3/seed_0` in a sweep."""
        prefix = ",".join(f"{k}={_fmt(v)}" for k, v in self.values)
        return f"{prefix}/seed_{self.seed}" if prefix else f"seed_{self.seed}"

    @property
    def key(self) -> int | str:
        """How `TrainResult` indexes it: the seed in a plain run, `path` in a sweep."""
        return self.path if self.values else self.seed


def _fmt(value: float) -> str:
    return f"{value:g}"


def sweepable_fields(config: Any) -> dict[str, bool]:
    """Every dotted field of an agent config, and whether its type allows a sweep (only `float` fields do)."""
    out: dict[str, bool] = {}

    def walk(cfg: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(cfg))
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                walk(value, f"{prefix}{f.name}.")
            else:
                out[f"{prefix}{f.name}"] = hints.get(f.name) is float

    walk(config, "")
    return out


_SWEEP = re.compile(r"^agent\.([A-Za-z_][A-Za-z0-9_.]*)=(.+)$", re.DOTALL)


def parse_sweep(texts: Sequence[str], config: Any) -> Sweep:
    """`["agent.beta=1,3,10", ...]` as a `Sweep`, checked against the agent's config.

    Raises:
        ValueError: not of the form `agent.FIELD=V1,V2,...`; an unknown field; a field that is not a float (sizes,
            counts, switches and choices change the program, not just its numbers); a value that is not a number or
            that the config refuses; a field swept twice; fewer than two distinct values.
    """
    fields = sweepable_fields(config)
    sweep: list[tuple[str, tuple[float, ...]]] = []
    for text in texts:
        match = _SWEEP.match(text.strip())
        if match is None:
            raise ValueError(f"--sweep expects agent.FIELD=V1,V2,... (e.g. agent.beta=1,3,10), got {text!r}")
        name, values_text = match.group(1), match.group(2)
        if name not in fields:
            floats = ", ".join(k for k, ok in fields.items() if ok)
            raise ValueError(f"--sweep agent.{name}: no such field; the fields a sweep can vary are {floats}")
        if not fields[name]:
            kind = type(dotted_fields(config)[name]).__name__
            raise ValueError(
                f"--sweep agent.{name}: it is a {kind}, and only float fields can vary inside one compiled program "
                "(a size, count, switch or choice changes the program itself); run one run per value instead"
            )
        if name in dict(sweep):
            raise ValueError(f"--sweep agent.{name} is given twice")
        try:
            values = tuple(float(v) for v in values_text.split(","))
        except ValueError:
            raise ValueError(f"--sweep agent.{name}: values must be numbers separated by commas, got {values_text!r}")
        if not all(np.isfinite(values)):
            raise ValueError(f"--sweep agent.{name}: values must be finite, got {values_text!r}")
        if len(set(values)) != len(values) or len(values) < 2:
            raise ValueError(f"--sweep agent.{name}: give at least two distinct values, got {values_text!r}")
        for v in values:
            member_config(config, ((name, v),))  # each value passes the config's own validation
        sweep.append((name, values))
    return tuple(sweep)


def member_config(config: Any, values: Sequence[tuple[str, float]]) -> Any:
    """The config with the dotted fields of `values` replaced (validated by the config classes, like any config).

    Raises:
        ValueError: the config's validation refuses a value (the message names the field).
    """
    if not values:
        return config
    groups: dict[str, list[tuple[str, float]]] = {}
    changes: dict[str, Any] = {}
    for name, value in values:
        head, _, rest = name.partition(".")
        if rest:
            groups.setdefault(head, []).append((rest, value))
        else:
            changes[head] = value
    for head, sub in groups.items():
        changes[head] = member_config(getattr(config, head), sub)
    return dataclasses.replace(config, **changes)


def with_values(config: Any, values: Mapping[str, Any]) -> Any:
    """A copy of `config` whose dotted fields `values` hold the given (traced) scalars, without validation.

    Only for use inside the compiled update: the config classes validate Python numbers, and a traced value is
    checked where it comes from (`parse_sweep` validated every value).
    """
    if not values:
        return config
    # an agent may keep a hyper-parameter in a static field of a module it builds inside `update` (FlowQ's guided
    # path keeps `beta`); a traced value there is what a sweep intends, so Equinox's warning about it is noise
    warnings.filterwarnings("ignore", message="A JAX array is being set as static", category=UserWarning)
    out = copy.copy(config)
    groups: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        head, _, rest = name.partition(".")
        if rest:
            groups.setdefault(head, {})[rest] = value
        else:
            object.__setattr__(out, head, value)
    for head, sub in groups.items():
        object.__setattr__(out, head, with_values(getattr(config, head), sub))
    return out


def members_of(config: Any, seeds: Sequence[int], sweep: Sweep = ()) -> list[Member]:
    """The members of a run: every combination of the swept values (first field outermost), times the seeds."""
    names = [name for name, _ in sweep]
    combos = list(itertools.product(*(values for _, values in sweep))) if sweep else [()]
    out = []
    for combo in combos:
        values = tuple(zip(names, combo, strict=True))
        cfg = member_config(config, values)
        for s in seeds:
            out.append(Member(index=len(out), seed=int(s), values=values, config=cfg))
    return out


def hparams_of(members: Sequence[Member]) -> dict[str, jax.Array]:
    """The per-member swept values as float32 arrays `[members]` (an empty dict outside a sweep)."""
    if not members or not members[0].values:
        return {}
    names = [name for name, _ in members[0].values]
    return {name: jnp.asarray([dict(m.values)[name] for m in members], jnp.float32) for name in names}


_NOT_TRACEABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError, TypeError)


def check_sweep(agent: Any, config: Any, sweep: Sweep, *, obs_dim: int, act_dim: int, batch_size: int = 256) -> None:
    """Refuse swept fields the agent's `update` cannot take as traced values (Python branches, sizes).

    Traces one update (shapes only, nothing runs) per swept field, with that field traced.

    Raises:
        ValueError: naming each field that cannot vary inside one program, and why.
    """
    from rl.data import Transitions

    state = agent.init(config, obs_dim=obs_dim, act_dim=act_dim, key=jax.random.key(0))
    n = batch_size
    batch = Transitions(
        obs=jnp.zeros((n, obs_dim)), action=jnp.zeros((n, act_dim)), reward=jnp.zeros((n,)),
        next_obs=jnp.zeros((n, obs_dim)), terminal=jnp.zeros((n,)),
    )
    refused = []
    for name, _ in sweep:

        def one_update(value, state, batch, key, name=name):
            traced = dataclasses.replace(state, config=with_values(state.config, {name: value}))
            new, info = agent.update(traced, batch, key=key)
            return eqx.filter(dataclasses.replace(new, config=state.config), eqx.is_array), info

        try:
            eqx.filter_eval_shape(one_update, jnp.zeros(()), state, batch, jax.random.key(0))
        except _NOT_TRACEABLE as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            refused.append(f"agent.{name} ({type(e).__name__}: {first[:160]})")
    if refused:
        raise ValueError(
            "--sweep: the agent uses " + "; ".join(refused) + " as a Python value (a branch or a size), so it "
            "cannot vary inside one compiled program; run one run per value instead"
        )

"""The contract every agent module follows, and the checks every agent makes at its boundary.

An agent module (`rl/agents/<name>.py`) exposes:

- `Config`: a frozen dataclass; every field has a comment above it (the command line's help text) and a default
  (the defaults are the ones results are reported with). Parts shared between agents are nested frozen dataclasses,
  for example `critic: IQLCriticConfig` or `policy: FlowPolicyConfig`. `__post_init__` calls `validate`.
  `Config.tiny()` gives the small sizes of the demo and the tests (every MLP 64 wide with 2 hidden layers).
- `RENAMED`: old flat field name -> its new dotted path (`"polyak" -> "critic.tau"`), so that the command line can
  point an old `--agent.polyak` at `--agent.critic.tau`. Paths starting with `data.` left the agent for
  `rl.data.DataConfig`.
- `ADDED`: dotted path of a field added after runs were made without it -> the value that reproduces those runs
  (`"min_ess": None` for FlowQ's floor, whose default is 0.5). A run's saved config that lacks the field is read
  with this value, not today's default, so that resuming or re-evaluating an older run gets the agent it trained;
  the results ledger matches older runs to today's settings the same way.
- `State`: one `eqx.Module` pytree holding networks, optimiser states, target networks, the config as a static field
  (so `update`/`act` need nothing else) and `step`, an int32 scalar advanced by one per `update` (the trainer keeps
  it shared, unbatched, across vmapped seeds).
- `init(config, *, obs_dim, act_dim, key) -> State`.
- `update(state, batch, *, key) -> (State, dict[str, Array])`: one gradient update on a batch of
  `rl.data.Transitions` (observations normalised, rewards already transformed by the data layer); pure and jittable
  (the trainer scans it); the dict holds scalar diagnostics (losses, Q means, ...).
- `act(state, obs, *, key) -> actions`: batched actions `[n, act_dim]` in `[-1, 1]` for normalised observations
  `[n, obs_dim]`; pure and jittable.

Phases (for example QIPO's behaviour warm-up) are driven by `state.step` inside `update` with `lax.cond`/`jnp.where`,
never by Python control flow, so that a whole run is one compiled `update`.

Adding an agent is one new module following this contract and its name in `rl.agents.AGENTS`; the contract test
(`tests/rl/test_contract.py`) then runs it through init, update, act, checkpoint and resume.
"""

import dataclasses
import numbers
import typing
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = [
    "AgentModule",
    "AgentState",
    "Rule",
    "Scalar",
    "above",
    "at_least",
    "between",
    "check_init",
    "network_rules",
    "optional",
    "validate",
]

Scalar = float | Float[Array, ""]
"""A hyper-parameter as the update functions take it: a Python float, or a traced 0-d array when a sweep varies it
per member (`rl.train.sweep`)."""


@runtime_checkable
class AgentState(Protocol):
    """What every agent's `State` has (besides its own networks)."""

    step: Int[Array, ""]
    config: Any


class AgentModule(Protocol):
    """What `rl.agents.get_agent(name)` returns (a module object satisfying this protocol)."""

    Config: type
    State: type
    RENAMED: dict[str, str]
    ADDED: dict[str, Any]

    def init(self, config: Any, *, obs_dim: int, act_dim: int, key: PRNGKeyArray) -> AgentState: ...

    def update(self, state: Any, batch: Any, *, key: PRNGKeyArray) -> tuple[AgentState, dict[str, Array]]: ...

    def act(self, state: Any, obs: Float[Array, "n obs_dim"], *, key: PRNGKeyArray) -> Float[Array, "n act_dim"]: ...


# ----------------------------------------------------------------------------------------------------------------------
# Config validation

Rule = tuple[Callable[[Any], bool], str]
"""A value rule of a config field: `(ok(value), what was expected)`, e.g. `(lambda v: v > 0, "> 0")`."""


def between(lo: int | float, hi: int | float, *, open_lo: bool = False, open_hi: bool = False) -> Rule:
    """`lo <= v <= hi`, with either end open on request (written `in [lo, hi)`, ...)."""

    def ok(v: Any) -> bool:
        return (lo < v if open_lo else lo <= v) and (v < hi if open_hi else v <= hi)

    return ok, f"in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"


def at_least(lo: int | float) -> Rule:
    """`v >= lo`."""
    return (lambda v: v >= lo), f">= {lo:g}"


def above(lo: int | float) -> Rule:
    """`v > lo`."""
    return (lambda v: v > lo), f"> {lo:g}"


def optional(rule: Rule) -> Rule:
    """`None`, or a value that keeps `rule` (for a setting that `None` turns off)."""
    ok, expected = rule
    return (lambda v: v is None or ok(v)), f"None or {expected}"


def network_rules() -> dict[str, Rule]:
    """The rules of every network's `width`, `depth` and `lr` (a config adds its own after them)."""
    return {"width": at_least(1), "depth": at_least(1), "lr": above(0.0)}


def _coerce(value: Any, kind: Any) -> tuple[Any, str | None]:
    """`value` as the annotated type `kind` (ints become floats, numpy scalars Python ones), or why it cannot be."""
    if kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            return float(value), None
        return value, "a float"
    if kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
            return int(value), None
        return value, "an int"
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value), None
        return value, "a bool"
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value in choices:
            return value, None
        return value, "one of " + ", ".join(repr(c) for c in choices)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value, None
        return value, f"an instance of {kind.__module__}.{kind.__qualname__}"
    return value, None


def validate(config: Any, rules: dict[str, Rule] | None = None) -> None:
    """Check a config dataclass at the boundary; every agent's `Config.__post_init__` calls this.

    First every field is checked against its annotation: `float` fields accept any real number (an int becomes a
    float, so `--agent.beta=3` works), `int` fields any integer but not a bool, `bool` fields a bool, `Literal[...]`
    fields one of their choices, nested config dataclasses an instance of their class. Then each `rules` entry
    (`field -> (ok(value), expectation)`) is checked on the fields that have the right type. Problems are listed in
    the order of the fields.

    Args:
        config: a frozen dataclass instance (converted values are written back in place).
        rules: value rules by field name.

    Raises:
        ValueError: one error listing every field that is not what was expected, and what arrived.
    """
    hints = typing.get_type_hints(type(config))
    rules = rules or {}
    names = [f.name for f in dataclasses.fields(config)]
    unknown = set(rules) - set(names)
    if unknown:
        raise TypeError(f"rules for fields that {type(config).__name__} does not have: {sorted(unknown)}")
    mistyped = {}
    for name in names:
        value, expected = _coerce(getattr(config, name), hints.get(name))
        if expected is None:
            object.__setattr__(config, name, value)
        else:
            mistyped[name] = expected
    problems = []
    for name in names:  # in field order, after every conversion (a rule may read another field)
        value = getattr(config, name)
        if name in mistyped:
            problems.append(f"{name} must be {mistyped[name]}, got {value!r}")
        elif name in rules and not _holds(rules[name][0], value):
            problems.append(f"{name} must be {rules[name][1]}, got {value!r}")
    if problems:
        raise ValueError(f"invalid {type(config).__module__}.{type(config).__name__}: " + "; ".join(problems) + ".")


def _holds(ok: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(ok(value))
    except TypeError:  # the rule compares with another field that is itself mistyped
        return False


def check_init(config: Any, config_type: type, *, obs_dim: int, act_dim: int) -> None:
    """The checks at the top of every `init`: the agent's own `Config`, and positive sizes.

    Raises:
        TypeError: for a config of another class (another agent's, or a dict).
        ValueError: for `obs_dim` or `act_dim` below 1.
    """
    if not isinstance(config, config_type):
        raise TypeError(
            f"expected an {config_type.__module__}.{config_type.__qualname__}, got "
            f"{type(config).__module__}.{type(config).__qualname__}"
        )
    sizes = (obs_dim, act_dim)
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise ValueError(f"obs_dim and act_dim must be ints >= 1, got obs_dim={obs_dim!r}, act_dim={act_dim!r}")

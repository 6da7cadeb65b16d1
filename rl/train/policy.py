"""Using a finished (or running) run: act with its policy, or evaluate its checkpoint again. No dataset needed.

    import jax, numpy as np
    from rl.train import load_policy
    policy = load_policy("runs/flowq-hopper-...")                # raw observations in, actions in [-1, 1] out
    actions = policy(jax.random.key(0), np.zeros((4, policy.obs_dim)))
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from rl.agents import get_agent
from rl.data import Normalizer

from . import checkpoint as ckpt
from .chunk import Carry, member_state
from .distributed import share, state_dir, trained_by
from .config import load_run_config
from .fields import config_to_dict
from .evaluators import NORMALIZER_FILE, DatasetInfo, Policy, make_evaluator
from .checkpoint import shapes_of

__all__ = ["EVALUATIONS_FILE", "RunPolicy", "evaluate_run", "load_policy"]

EVALUATIONS_FILE = "evaluations.jsonl"
"""Where `evaluate_run` appends its results in the run directory (one JSON object per call)."""


class RunPolicy(eqx.Module):
    """A trained policy with the observation statistics it was trained with: `policy(key, obs) -> actions`.

    Takes raw (unnormalised) observations `[n, obs_dim]` or `[obs_dim]`, returns actions in `[-1, 1]` of the same
    leading shape.
    """

    # one seed's agent state
    state: Any
    # the statistics applied to observations before the agent sees them
    normalizer: Normalizer
    # the agent's `act`
    act: Any = eqx.field(static=True)

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return int(self.normalizer.obs_mean.shape[0])

    def __call__(self, key: PRNGKeyArray, obs: Float[ArrayLike, "*n obs_dim"]) -> Float[Array, "*n act_dim"]:
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"expected observations of shape [n, {self.obs_dim}] or [{self.obs_dim}], got {obs.shape}.")
        single = obs.ndim == 1
        actions = _act(self, key, obs[None] if single else obs)
        return actions[0] if single else actions


@eqx.filter_jit
def _act(policy: RunPolicy, key: PRNGKeyArray, obs: Float[Array, "n obs_dim"]) -> Float[Array, "n act_dim"]:
    return policy.act(policy.state, policy.normalizer.obs(obs), key=key)


def _load(run_dir: Path, agent_config: Any | None = None) -> tuple[Any, Any, DatasetInfo, Normalizer, Any]:
    config = load_run_config(run_dir)
    agent = get_agent(config.agent)
    if agent_config is None:
        agent_config = config.agent_config
    elif type(agent_config) is not type(config.agent_config):
        raise TypeError(
            f"the run {run_dir} trained {config.agent}: expected an rl.agents.{config.agent}.Config, "
            f"got {type(agent_config).__module__}.{type(agent_config).__qualname__}."
        )
    info = DatasetInfo.load(run_dir)
    normalizer = Normalizer.load(run_dir / NORMALIZER_FILE)
    try:
        loaded = _load_members(run_dir, config, agent_config, info)
    except ValueError as e:
        if agent_config == config.agent_config:
            raise
        raise ValueError(
            "the run's checkpoint does not fit the changed agent config: only settings that leave the networks' "
            "shapes alone (e.g. best_of_n, sample_steps, solver) can change at evaluation."
        ) from e
    return config, agent, info, normalizer, loaded


def _load_members(run_dir: Path, config: Any, agent_config: Any, info: DatasetInfo) -> ckpt.LoadedCheckpoint:
    """Every member's state, stacked in member order: the run's checkpoint, or its processes' joined."""
    count = trained_by(run_dir)
    members = config.members
    parts = []
    for index in range(count):
        directory = state_dir(run_dir, index, count)
        if not ckpt.has_checkpoint(directory):
            raise FileNotFoundError(f"{directory} has no checkpoint yet (the run stopped before its first one).")
        like = shapes_of(config.agent, agent_config, config.seeds, info, config.sweep,
                         members=share(members, index, count))
        parts.append(ckpt.load(directory, like))
    if len(parts) == 1:
        return parts[0]
    steps = sorted({p.step for p in parts})
    if len(steps) > 1:
        raise ValueError(f"the processes of {run_dir} saved their last checkpoints at different steps {steps}; resume "
                         "the run to bring them level.")
    agents = [p.carry.agent for p in parts]
    dynamic = [eqx.filter(a, eqx.is_array) for a in agents]
    joined = jax.tree.map(lambda *xs: jnp.concatenate(xs), *dynamic)
    agent = eqx.combine(joined, eqx.filter(agents[0], eqx.is_array, inverse=True))
    keys = jnp.concatenate([p.carry.key for p in parts])
    return dataclasses.replace(parts[0], carry=Carry(agent=agent, key=keys))


def load_policy(run_dir: str | os.PathLike, *, seed: int | None = None, member: str | None = None) -> RunPolicy:
    """The policy of a run's latest good checkpoint, ready to act on raw observations.

    Args:
        run_dir: a run directory written by `rl.train`.
        seed: which training seed (default the run's first).
        member: in a sweep, which member, by its directory (`"beta=3/seed_0"`; default the first member).

    Raises:
        FileNotFoundError: not a run, or no checkpoint yet.
        ValueError: `seed` is not one of the run's seeds, or `member` not one of its members.
    """
    run_dir = Path(run_dir)
    config, agent, _, normalizer, loaded = _load(run_dir)
    members = config.members
    if member is not None:
        found = [m for m in members if m.path == member]
        if not found:
            raise ValueError(f"member {member!r} is not one of the run's members {[m.path for m in members]}.")
        chosen = found[0]
    else:
        seed = config.seeds[0] if seed is None else seed
        if seed not in config.seeds:
            raise ValueError(f"seed {seed!r} is not one of the run's seeds {list(config.seeds)}.")
        chosen = next(m for m in members if m.seed == seed)
    return RunPolicy(state=member_state(loaded.carry.agent, chosen), normalizer=normalizer, act=agent.act)


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    agent_config: Any | None = None,
    episodes: int | None = None,
    record: bool = True,
) -> tuple[int, dict[int, dict[str, Any]]]:
    """Evaluate every seed of a run's checkpoint again, optionally with other action-time settings.

    The episodes start from the same states as the run's own evaluations (the same evaluation seeds), so a change of
    setting (`best_of_n`, `sample_steps`, `solver`, ...) is compared on the same episodes.

    Args:
        run_dir: a run directory written by `rl.train` (it needs a checkpoint).
        agent_config: the agent config to act with; default the run's own. Fields that shape the networks cannot
            change (the checkpoint would not fit them).
        episodes: episodes per seed; default the run's `eval_episodes`.
        record: append the result to `RUN_DIR/evaluations.jsonl`.

    Returns:
        `(step, {key: metrics})`: the checkpoint's step and each member's evaluation metrics (keyed by seed, or in a
        sweep by the member's directory, `"beta=3/seed_0"`).

    Raises:
        FileNotFoundError: no run or no checkpoint in `run_dir`.
        TypeError: `agent_config` is not the run agent's `Config`.
        ValueError: `episodes` is not positive, or the config changes the shapes of the networks.
    """
    run_dir = Path(run_dir)
    if episodes is not None and (isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1):
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}.")
    config, agent, info, normalizer, loaded = _load(run_dir, agent_config)
    agent_config = config.agent_config if agent_config is None else agent_config
    episodes = config.train.eval_episodes if episodes is None else episodes
    evaluator = make_evaluator(info, normalizer, episodes=episodes, samples=config.train.eval_samples)
    if evaluator is None:
        raise ValueError(f"the run's dataset {config.dataset!r} names no environment to evaluate in.")
    members = dataclasses.replace(config, agent_config=agent_config).members
    results = {m.key: evaluator(Policy(member_state(loaded.carry.agent, m), agent.act), m.seed) for m in members}
    if record:
        entry = {
            "time": round(time.time(), 3),
            "step": loaded.step,
            "episodes": episodes,
            "agent_config": config_to_dict(agent_config),
            "results": {str(s): r for s, r in results.items()},
        }
        with open(run_dir / EVALUATIONS_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")
    return loaded.step, results

